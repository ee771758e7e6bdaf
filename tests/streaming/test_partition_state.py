"""Stage state per input partition, as versioned JSON: a run cut in two with
every partition's state moved through its JSON snapshot gives exactly what
one uninterrupted run gives; a snapshot of another version or stage is
refused with one warning and its partition starts fresh."""
from __future__ import annotations

import json
import logging
import pickle
import zlib

import pytest

from support import FIXTURES, SAMPLES, raw_messages

from pipeline.settings import load
from pipeline.sinks.elasticsearch import ElasticsearchSink
from pipeline.streaming.stages import CorrelateStage, Output, ParseStage, RawMessage
from pipeline.streaming.state import StateStore, restore_stage

INPUTS = {"samples": SAMPLES, **{f"seed-{d.name}": d for d in sorted((FIXTURES / "seeds").iterdir())
                                 if d.is_dir()}}
RAW_PARTITIONS, EVENT_PARTITIONS = 3, 2
END = 1e12            # a wall clock long after the input: every window closes, every record completes


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5"})


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
            ("osloscope-stage-state", 2, stage.name, tp)
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


def event_messages(events) -> list[RawMessage]:
    """The parse stage's events as the events topic holds them: partitioned by key."""
    offsets = [0] * EVENT_PARTITIONS
    msgs = []
    for key, value in events:
        part = zlib.crc32(key) % EVENT_PARTITIONS
        msgs.append(RawMessage("events", part, offsets[part], key, value))
        offsets[part] += 1
    return msgs


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
        assert run(ParseStage(settings), settings, raw, cut) == whole, f"cut at {cut}"


@pytest.mark.parametrize("name", INPUTS)
def test_correlate_state_moved_through_json_mid_stream_changes_nothing(name, settings, sink):
    events = event_messages(parsed(name, settings)[1].events)
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
    corr = run(CorrelateStage(settings), settings, event_messages(out.events), sink=sink)
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
    assert {json.loads(v)["host"]["name"] for _k, v in out.events} == \
        {m.headers["host"].decode() for m in raw if m.partition != 1}
    with pytest.raises(ValueError, match="partition 'raw/1'"):
        one.restore("raw/2", parse.snapshot("raw/1"), 0.0)


def test_an_open_record_restored_completes_when_its_stream_is_idle(settings):
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
    assert sorted(json.loads(v)["host"]["name"] for _k, v in out.events) == ["h0", "h1"]
    assert p2.dirty() == ["raw/0", "raw/1"]


# -- the state files -------------------------------------------------------------------
def saved(settings, tmp_path) -> tuple[StateStore, list[RawMessage]]:
    raw = raw_messages([SAMPLES], partitions=RAW_PARTITIONS)
    stage = ParseStage(settings)
    stage.process(raw, 0.0)
    store = StateStore(tmp_path / "state", "app")
    for tp in stage.dirty():
        store.save("parse", tp, stage.snapshot(tp))
    return store, raw


def test_a_snapshot_of_another_version_is_refused_with_one_warning(settings, tmp_path, caplog):
    store, raw = saved(settings, tmp_path)
    doc = json.loads(store.load("parse", "raw/0"))
    doc["version"] = 1
    store.save("parse", "raw/0", json.dumps(doc).encode())
    stage = ParseStage(settings)
    with caplog.at_level(logging.INFO, logger="osloscope.worker"):
        restored = restore_stage(stage, store, 0.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(store.path("parse", "raw/0")) in warnings[0] and "raw/0" in warnings[0]
    assert "version 1" in warnings[0] and "expected 'osloscope-stage-state' version 2" in warnings[0]
    assert restored == ["raw/1", "raw/2"] and stage.partitions() == ["raw/1", "raw/2"]
    # the refused partition starts fresh: all its input is processed again
    stage.process(raw, 0.0)
    assert stage.stats["records_in"] == sum(1 for m in raw if m.partition == 0)


@pytest.mark.parametrize("foreign", ["other stage", "pickle", "garbage"])
def test_foreign_snapshots_are_refused_too(foreign, settings, tmp_path, caplog):
    store, _raw = saved(settings, tmp_path)
    data = store.load("parse", "raw/2")
    if foreign == "other stage":
        data = data.replace(b'"stage":"parse"', b'"stage":"correlate"', 1)
    elif foreign == "pickle":
        data = pickle.dumps({"version": 1, "stage": "parse"})
    else:
        data = data[: len(data) // 2]
    store.save("parse", "raw/2", data)
    stage = ParseStage(settings)
    with caplog.at_level(logging.WARNING, logger="osloscope.worker"):
        assert restore_stage(stage, store, 0.0) == ["raw/0", "raw/1"]
    [warning] = [r.getMessage() for r in caplog.records]
    assert "refused" in warning and "raw/2" in warning


def test_a_version_1_state_file_is_ignored_with_one_warning(settings, tmp_path, caplog):
    store = StateStore(tmp_path, "app")
    (store.dir / "parse.state").write_bytes(pickle.dumps({"version": 1, "stage": "parse"}))
    with caplog.at_level(logging.WARNING, logger="osloscope.worker"):
        assert restore_stage(ParseStage(settings), store, 0.0) == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert "parse.state" in warning and "version 1" in warning


def test_store_writes_one_file_per_stage_and_partition_atomically(tmp_path):
    store = StateStore(tmp_path, "app")
    store.save("parse", "osloscope.raw/0", b"{}")
    store.save("parse", "osloscope.raw-x/12", b"[]")
    store.save("correlate", "osloscope.events.by-request/3", b"{}")
    assert store.partitions("parse") == ["osloscope.raw/0", "osloscope.raw-x/12"]
    assert store.partitions("correlate") == ["osloscope.events.by-request/3"]
    assert store.path("parse", "osloscope.raw/0") == tmp_path / "app" / "parse" / "osloscope.raw-0.json"
    assert store.load("parse", "osloscope.raw-x/12") == b"[]" and store.load("parse", "other/1") is None
    with pytest.raises(TypeError):
        store.save("parse", "osloscope.raw/0", "not bytes")       # the write fails half-way
    assert store.load("parse", "osloscope.raw/0") == b"{}"
    assert sorted(p.name for p in (tmp_path / "app" / "parse").iterdir()) == \
        ["osloscope.raw-0.json", "osloscope.raw-x-12.json"]
