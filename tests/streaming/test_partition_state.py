"""Stage state per input partition, as versioned JSON: a run cut in two with
every partition's state moved through its JSON snapshot gives exactly what
one uninterrupted run gives; a snapshot of another version or stage is
refused with one warning and its partition starts fresh."""
from __future__ import annotations

import json
import logging
import pickle

import pytest

from support import FIXTURES, PROMPT_EVENT_TIME, SAMPLES, events_topic, raw_messages

from pipeline.settings import load
from pipeline.sinks.elasticsearch import ElasticsearchSink
from pipeline.streaming.stages import CorrelateStage, Output, ParseStage, RawMessage
from pipeline.streaming.stage import STATE_VERSION
from pipeline.streaming.changelog import CHUNK, Changelog, StateUnreadable, restore_partition

INPUTS = {"samples": SAMPLES, **{f"seed-{d.name}": d for d in sorted((FIXTURES / "seeds").iterdir())
                                 if d.is_dir()}}
RAW_PARTITIONS, EVENT_PARTITIONS = 3, 2
END = 1e12            # a wall clock long after the input: every window closes, every record completes


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5"})


@pytest.fixture
def prompt(tmp_path, monkeypatch):
    """Settings for tests about parsing: an event goes on once its own file passed it."""
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5", **PROMPT_EVENT_TIME})


@pytest.fixture
def sink(settings):
    return ElasticsearchSink(settings.elasticsearch, client=object())


def moved(stage, settings):
    """A new stage of the same kind holding ``stage``'s state, every partition
    through its JSON snapshot (which must come out the same when taken again)."""
    fresh = type(stage)(settings)
    for tp in stage.partitions():
        data = stage.snapshot(tp)
        doc = json.loads(data)
        assert (doc["format"], doc["version"], doc["stage"], doc["partition"]) == \
            ("osloscope-stage-state", STATE_VERSION, stage.name, tp)
        fresh.restore(tp, data, 0.0)
        assert fresh.snapshot(tp) == data, tp
    return fresh


def run(stage, settings, msgs, cut=None, **kw) -> Output:
    """``msgs`` through ``stage``, in one go or cut in two with the state moved between."""
    out = Output()
    halves = [msgs] if cut is None else [msgs[:cut], msgs[cut:]]
    for i, half in enumerate(halves):
        if i:
            stage = moved(stage, settings)
        out.extend(stage.process(half, 0.0, **kw))
    out.extend(stage.tick(END, **kw))
    return out


def cuts(n: int) -> list[int]:
    return sorted({1, n // 3, n // 2, 2 * n // 3, n - 1} - {0, n})


def parsed(name: str, settings) -> tuple[list[RawMessage], Output]:
    raw = raw_messages([INPUTS[name]], partitions=RAW_PARTITIONS, inode=True)
    return raw, run(ParseStage(settings), settings, raw)


@pytest.mark.parametrize("name", list(INPUTS))
def test_parse_state_moved_through_json_mid_stream_changes_nothing(name, settings):
    raw, whole = parsed(name, settings)
    assert whole.events or whole.deadletters
    for cut in cuts(len(raw)):
        got = run(ParseStage(settings), settings, raw, cut)
        # watermark markers say where the partition stood at each delivery: they follow the cut
        assert (got.events, got.incidents, got.deadletters) == \
            (whole.events, whole.incidents, whole.deadletters), f"cut at {cut}"


@pytest.mark.parametrize("name", INPUTS)
def test_correlate_state_moved_through_json_mid_stream_changes_nothing(name, settings, sink):
    events = events_topic(parsed(name, settings)[1], EVENT_PARTITIONS)
    whole = run(CorrelateStage(settings), settings, events, sink=sink)
    for cut in cuts(len(events)):
        got = run(CorrelateStage(settings), settings, events, cut, sink=sink)
        assert (got.incidents, got.deadletters) == (whole.incidents, whole.deadletters), f"cut at {cut}"
        assert got.es_actions == whole.es_actions, f"cut at {cut}"


def test_the_samples_use_every_partition_and_find_their_incidents(settings, sink):
    """The round trip above is not vacuous: open records, several partitions,
    incidents of both stages, request summaries."""
    raw = raw_messages([SAMPLES], partitions=RAW_PARTITIONS)
    parse = ParseStage(settings)
    parse.process(raw[: len(raw) // 2], 0.0)
    assert len(parse.partitions()) == RAW_PARTITIONS
    states = [json.loads(parse.snapshot(tp)) for tp in parse.partitions()]
    assert any(st["open"] for s in states for p in s["parsers"] for st in
               (x["folder"] for x in p["streams"]))
    out = run(ParseStage(settings), settings, raw)
    corr = run(CorrelateStage(settings), settings, events_topic(out, EVENT_PARTITIONS), sink=sink)
    types = {d["type"] for d in out.incidents + corr.incidents}
    assert {"disk_full", "auth_failure", "retry_exhausted"} <= types
    assert any(a["_index"] == settings.elasticsearch.requests_index for a in corr.es_actions)


def test_partitions_are_independent(settings):
    """A partition's snapshot restores that partition only, with its own offset."""
    raw = raw_messages([SAMPLES], partitions=RAW_PARTITIONS)
    parse = ParseStage(settings)
    parse.process(raw, 0.0)
    assert parse.dirty() == ["raw/0", "raw/1", "raw/2"]
    parse.saved("raw/1")
    assert parse.dirty() == ["raw/0", "raw/2"]
    one = ParseStage(settings)
    one.restore("raw/1", parse.snapshot("raw/1"), 0.0)
    assert one.partitions() == ["raw/1"] and one.offsets == {"raw/1": parse.offsets["raw/1"]}
    out = one.process(raw, 0.0)              # raw/1 is replayed input; the others are new
    assert one.stats["skipped_replay"] == sum(1 for m in raw if m.partition == 1)
    out.extend(one.tick(END))
    assert {json.loads(v)["host"]["name"] for _k, v, up in out.events if up != "raw/1"} == \
        {m.headers["host"].decode() for m in raw if m.partition != 1}
    with pytest.raises(ValueError, match="partition 'raw/1'"):
        one.restore("raw/2", parse.snapshot("raw/1"), 0.0)


def test_an_open_record_restored_completes_when_its_stream_is_idle(prompt):
    settings = prompt
    line = (b"2017-06-06 08:12:41.201 2931 ERROR nova.compute.manager "
            b"[req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10 - - - - -] boom")
    msgs = [RawMessage("raw", part, 0, b"h|/var/log/nova/nova-compute.log", line,
                       {"host": f"h{part}".encode(), "path": b"/var/log/nova/nova-compute.log",
                        "offset": b"0"}) for part in (0, 1)]
    p = ParseStage(settings)
    assert not p.process(msgs, 100.0).events
    p2 = ParseStage(settings)
    for tp in p.partitions():
        p2.restore(tp, p.snapshot(tp), 200.0)        # idle timers restart at the restore
    assert not p2.tick(204.0).events
    out = p2.tick(205.0)
    assert sorted(json.loads(v)["host"]["name"] for _k, v, _up in out.events) == ["h0", "h1"]
    assert p2.dirty() == ["raw/0", "raw/1"]


# -- the changelog records --------------------------------------------------------------
def test_changelog_chunks_alternate_generations_and_delete_leftovers(settings):
    log = Changelog(settings, "parse")
    big = bytes(range(256)) * (3 * CHUNK // 256 + 10)          # four chunks
    first = log.writes("raw/5", big)
    assert [k for k, _v, _n in first] == [b"raw/5#0.0", b"raw/5#0.1", b"raw/5#0.2", b"raw/5#0.3", b"raw/5"]
    assert {n for _k, _v, n in first} == {5} and all(len(v) <= CHUNK for _k, v, _n in first)
    log.written("raw/5", first)
    second = log.writes("raw/5", b"small")                      # the other generation: 0 stays whole
    assert [k for k, _v, _n in second] == [b"raw/5#1.0", b"raw/5"]
    log.written("raw/5", second)
    third = log.writes("raw/5", b"tiny")                        # back to 0: its three extra chunks go
    assert [(k, v) for k, v, _n in third[1:4]] == [(b"raw/5#0.1", None), (b"raw/5#0.2", None),
                                                  (b"raw/5#0.3", None)]


def _replay(records):
    """What a compacted topic answers: the records in order (tombstones included)."""
    return [(k, v) for k, v, _n in records]


def test_changelog_reads_back_the_last_complete_generation(settings, monkeypatch):
    import pipeline.streaming.kafka_clients as kc

    log = Changelog(settings, "correlate")
    topic = []
    a = log.writes("events/2", b"A" * (CHUNK + 5))
    log.written("events/2", a)
    b = log.writes("events/2", b"B" * 10)
    topic += _replay(a) + _replay(b)[:-1]        # a crash before the second manifest
    monkeypatch.setattr(kc, "read_partition", lambda *_a, **_k: list(topic))
    assert Changelog(settings, "correlate").read("events/2") == b"A" * (CHUNK + 5)
    topic.append(_replay(b)[-1])
    assert Changelog(settings, "correlate").read("events/2") == b"B" * 10
    assert Changelog(settings, "correlate").read("events/3") is None
    topic[1] = (b"events/2#0.1", b"damaged")
    topic.append(_replay(log.writes("events/2", b"C"))[0])
    topic.append((b"events/2", topic[2][1]))       # manifest of generation 0 again, its chunk damaged
    with pytest.raises(StateUnreadable):
        Changelog(settings, "correlate").read("events/2")


def _stage_with_state(settings):
    raw = raw_messages([SAMPLES], partitions=RAW_PARTITIONS)
    stage = ParseStage(settings)
    stage.process(raw, 0.0)
    return stage, raw


@pytest.mark.parametrize("foreign", ["other version", "other stage", "pickle", "garbage"])
def test_foreign_state_is_refused_with_one_warning_and_the_partition_starts_fresh(
        foreign, settings, monkeypatch, caplog):
    import pipeline.streaming.kafka_clients as kc

    stage, raw = _stage_with_state(settings)
    data = stage.snapshot("raw/2")
    if foreign == "other version":
        doc = json.loads(data)
        doc["version"] = 1
        data = json.dumps(doc).encode()
    elif foreign == "other stage":
        data = data.replace(b'"stage":"parse"', b'"stage":"correlate"', 1)
    elif foreign == "pickle":
        data = pickle.dumps({"version": 1, "stage": "parse"})
    else:
        data = data[: len(data) // 2]
    log = Changelog(settings, "parse")
    monkeypatch.setattr(kc, "read_partition", lambda *_a, **_k: _replay(log.writes("raw/2", data)))
    fresh = ParseStage(settings)
    with caplog.at_level(logging.WARNING, logger="osloscope.worker"):
        assert restore_partition(fresh, Changelog(settings, "parse"), "raw/2", 0.0) is False
    [warning] = [r.getMessage() for r in caplog.records]
    assert "raw/2" in warning and "starts fresh" in warning
    fresh.process(raw, 0.0)            # all of raw/2 is processed again
    assert fresh.stats["records_in"] == len(raw)
