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
from pipeline.streaming.changelog import CHUNK, SEARCH, Changelog, StateUnreadable, restore_partition

from changelog_support import MemoryTopic, entries, held, save

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


def moved(stage, settings, topic: MemoryTopic | None = None, changelog: Changelog | None = None):
    """A new stage of the same kind holding ``stage``'s state, every partition through
    its changelog records (``topic``, written by ``changelog``: saved now if not yet),
    read back as a new worker reads them; the new stage's head and held events are the
    old ones."""
    if topic is None:
        topic = MemoryTopic()
        save(stage, topic.changelog(settings, stage.name), topic)
    elif changelog is not None:
        save(stage, changelog, topic)
    fresh = type(stage)(settings)
    log = topic.changelog(settings, stage.name)
    for tp in stage.partitions():
        data = stage.snapshot(tp)
        doc = json.loads(data)
        assert (doc["format"], doc["version"], doc["stage"], doc["partition"]) == \
            ("osloscope-stage-state", STATE_VERSION, stage.name, tp)
        assert restore_partition(fresh, log, tp, 0.0), tp
        assert fresh.snapshot(tp) == data, tp
        assert held(fresh, tp) == held(stage, tp), tp
        assert entries(fresh, tp) == entries(stage, tp), tp
    return fresh


BATCH = 25          # messages per batch; the state is saved after each, as the worker does


def run(stage, settings, msgs, cut=None, deliveries: list | None = None, move: bool = True,
        **kw) -> Output:
    """``msgs`` through ``stage`` in batches, the state saved to a changelog after each,
    in one go or cut in two with the state moved (read back from the changelog) between
    (``move``: else the batches start again at the cut, the state stays).
    ``deliveries`` gets the output of each batch (and of the last tick) apart."""
    out = Output()
    deliveries = [] if deliveries is None else deliveries
    topic, log = MemoryTopic(), None
    halves = [msgs] if cut is None else [msgs[:cut], msgs[cut:]]
    for i, half in enumerate(halves):
        if i and move:
            stage = moved(stage, settings, topic)
            log = topic.changelog(settings, stage.name)      # a new worker, a changelog of its own
            for tp in stage.partitions():                    # it knows what it read
                log.read(tp)
        elif not i:
            log = topic.changelog(settings, stage.name)
        for b in range(0, len(half), BATCH):
            deliveries.append(stage.process(half[b:b + BATCH], 0.0, **kw))
            out.extend(deliveries[-1])
            save(stage, log, topic)
    deliveries.append(stage.tick(END, **kw))
    out.extend(deliveries[-1])
    return out


def cuts(n: int) -> list[int]:
    return sorted({1, n // 3, n // 2, 2 * n // 3, n - 1} - {0, n})


def parsed(name: str, settings, deliveries: list | None = None) -> tuple[list[RawMessage], Output]:
    raw = raw_messages([INPUTS[name]], partitions=RAW_PARTITIONS, inode=True)
    return raw, run(ParseStage(settings), settings, raw, deliveries=deliveries)


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
    deliveries: list[Output] = []
    parsed(name, settings, deliveries)
    # each delivery's events, then its markers: the correlate stage releases events (and opens
    # request windows) as the deliveries come, so a cut moves windows, not held events only
    events = events_topic(deliveries, EVENT_PARTITIONS)
    whole = run(CorrelateStage(settings), settings, events, sink=sink)
    for cut in cuts(len(events)):
        got = run(CorrelateStage(settings), settings, events, cut, sink=sink)
        assert (got.incidents, got.deadletters) == (whole.incidents, whole.deadletters), f"cut at {cut}"
        assert got.es_actions == whole.es_actions, f"cut at {cut}"


def test_correlate_state_with_open_request_windows_moved_mid_stream_changes_nothing(prompt):
    """Events released as they come (no warm-up, no slack): cuts fall among open request
    windows, link indexes and root causes, each saved as an entry of its own and read back
    in its order of use."""
    sink = ElasticsearchSink(prompt.elasticsearch, client=object())
    deliveries: list[Output] = []
    parsed("samples", prompt, deliveries)
    events = events_topic(deliveries, EVENT_PARTITIONS)
    whole = run(CorrelateStage(prompt), settings=prompt, msgs=events, sink=sink)
    assert any(a["_index"] == prompt.elasticsearch.requests_index for a in whole.es_actions)
    stage = CorrelateStage(prompt)
    stage.process(events[: len(events) // 2], 0.0, sink=sink)
    assert sum(len(p.stores["windows.open"]) for p in stage.parts.values()) >= 4

    def final(out: Output):
        """The last version of each incident and document: batches cut elsewhere release
        at other times, so the interleaving (not the content) may differ."""
        return ({d["id"]: d for d in out.incidents},
                {(a["_index"], a["_id"]): a for a in out.es_actions}, out.deadletters)

    for cut in range(1, len(events), 7):
        # the same batches as the run cut here without a move (event time is prompt: where
        # batches end says when events are released, hence the order of some evidence)
        same = run(CorrelateStage(prompt), prompt, events, cut, sink=sink, move=False)
        got = run(CorrelateStage(prompt), prompt, events, cut, sink=sink)
        assert final(got) == final(same), f"cut at {cut}"


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
def _save_raw(log: Changelog, topic: MemoryTopic, tp: str, head: bytes, fresh=(), gone=(),
              manifest: bool = True):
    """``log``'s records saving ``head`` (and held events) into ``topic``, as the worker sends them."""
    sv = log.writes(tp, head, list(fresh), list(gone))
    sv.offsets = topic.partition(int(tp.rpartition("/")[2])).append(sv.first)
    if manifest:
        topic.partition(int(tp.rpartition("/")[2])).append([log.manifest(sv)])
        log.written(sv)
    return sv


def test_changelog_head_chunks_alternate_generations_and_delete_leftovers(settings):
    topic, log = MemoryTopic(), Changelog(settings, "parse")
    big = bytes(range(256)) * (3 * CHUNK // 256 + 10)          # four chunks
    first = _save_raw(log, topic, "raw/5", big)
    assert [k for k, _v, _n in first.first] == [b"raw/5#0.0", b"raw/5#0.1", b"raw/5#0.2", b"raw/5#0.3"]
    assert {n for _k, _v, n in first.first} == {5} and all(len(v) <= CHUNK for _k, v, _n in first.first)
    second = _save_raw(log, topic, "raw/5", b"small")          # the other generation: 0 stays whole
    assert [k for k, _v, _n in second.first] == [b"raw/5#1.0"]
    third = _save_raw(log, topic, "raw/5", b"tiny")            # back to 0: its three extra chunks go
    assert [(k, v) for k, v, _n in third.first[1:]] == [(b"raw/5#0.1", None), (b"raw/5#0.2", None),
                                                       (b"raw/5#0.3", None)]
    assert [k for k, _v, _n in topic.partition(5).records[-1:]] == [None] or \
        topic.partition(5).records[-1][1] == b"raw/5"           # the manifest comes last
    assert topic.changelog(settings, "parse").read("raw/5").head == b"tiny"


def test_changelog_reads_back_the_last_complete_save(settings):
    topic, log = MemoryTopic(), Changelog(settings, "correlate")
    _save_raw(log, topic, "events/2", b"A" * (CHUNK + 5), fresh=[(0, b"e0"), (1, b"e1")])
    _save_raw(log, topic, "events/2", b"B" * 10, fresh=[(2, b"e2")], gone=[0], manifest=False)  # a crash
    got = topic.changelog(settings, "correlate").read("events/2")
    assert (got.head, got.items, got.next_seq) == (b"A" * (CHUNK + 5), {0: b"e0", 1: b"e1"}, 3)
    assert topic.changelog(settings, "correlate").read("events/3") is None
    part = topic.partition(2)
    kept = list(part.records)
    part.records = [r for r in kept if r[1] != b"events/2@1.0"]
    with pytest.raises(StateUnreadable, match="record 1 missing"):
        topic.changelog(settings, "correlate").read("events/2")
    part.records = [(o, k, b"damaged" if k == b"events/2#0.1" else v) for o, k, v in kept]
    with pytest.raises(StateUnreadable, match="digest"):
        topic.changelog(settings, "correlate").read("events/2")


def test_changelog_the_list_of_many_scattered_records_is_not_limited_to_one_message(settings):
    """A correlate partition at its stores' capacities holds about 150,000 entries, each
    rewritten under a new seq when it changes: their seqs are scattered. The list of the
    records a state includes goes in the head's chunks, not in the manifest (one Kafka
    message, 1 MiB by default), and is compact."""
    topic, log = MemoryTopic(), Changelog(settings, "correlate")
    fresh = [(seq, b"r") for seq in range(0, 600_000, 4)] + [(600_001, b"p" * (CHUNK + 1))]
    sv = _save_raw(log, topic, "events/1", b"head", fresh=fresh)
    manifest = topic.partition(1).records[-1]
    assert manifest[1] == b"events/1" and len(manifest[2]) < 400, len(manifest[2])
    assert len(sv.index) < 20_000, len(sv.index)                   # 150,001 seqs, bits not numbers
    gone = list(range(0, 600_000, 8))                                # every other one changed
    _save_raw(log, topic, "events/1", b"head 2", fresh=[(700_000 + i, b"s") for i in range(0, 75_000)],
              gone=gone)
    got = topic.changelog(settings, "correlate").read("events/1")
    want = {seq: b"r" for seq in range(4, 600_000, 8)}
    want[600_001] = b"p" * (CHUNK + 1)
    want.update({700_000 + i: b"s" for i in range(75_000)})
    assert got.head == b"head 2" and got.items == want and got.next_seq == 775_000


def test_changelog_manifest_never_points_at_a_deleted_event(settings):
    """An event released is deleted by the save after the one that stops listing it: a
    crash between the two leaves the manifest's events all there."""
    topic, log = MemoryTopic(), Changelog(settings, "parse")
    _save_raw(log, topic, "raw/1", b"h1", fresh=[(0, b"e0"), (1, b"e1"), (2, b"e2")])
    sv = _save_raw(log, topic, "raw/1", b"h2", gone=[0, 2])
    assert not any(v is None for _k, v, _n in sv.first)        # no deletion before its manifest
    _save_raw(log, topic, "raw/1", b"h3", fresh=[(3, b"e3")], manifest=False)   # deletes 0 and 2: crash
    got = topic.changelog(settings, "parse").read("raw/1")
    assert (got.head, got.items) == (b"h2", {1: b"e1"})
    assert got.next_seq == 4                                   # seq 3 is on the log: never reused


def test_changelog_a_save_writes_what_changed_not_what_is_held(settings):
    """Held events are written once, when first saved, and deleted once: a save costs the
    head plus its new events, whatever the partition holds."""
    topic, log = MemoryTopic(), Changelog(settings, "parse")
    event = b"x" * 1000
    first = _save_raw(log, topic, "raw/0", b"head", fresh=[(i, event) for i in range(1000)])
    later = [_save_raw(log, topic, "raw/0", b"head", fresh=[(1000 + i, event)], gone=[i]) for i in range(50)]
    assert first.bytes > 1_000_000
    assert all(sv.bytes < 3000 for sv in later), [sv.bytes for sv in later]
    writes = {}
    for _off, key, value in topic.partition(0).records:
        writes.setdefault(key, []).append(value is None)
    assert all(marks in ([False], [False, True]) for key, marks in writes.items() if b"@" in key)
    got = topic.changelog(settings, "parse").read("raw/0")
    assert sorted(got.items) == list(range(50, 1050))


def test_changelog_restore_reads_from_the_manifests_oldest_record_only(settings):
    """Not the whole history: a partition saved 2000 times, each save releasing what the one
    before held, is read back from its last saves' records, before and after compaction."""
    topic, log = MemoryTopic(), Changelog(settings, "correlate")
    for i in range(2000):
        _save_raw(log, topic, "events/0", b"head %d" % i, fresh=[(i, b"e%d" % i)], gone=[i - 1] if i else [])
    part = topic.partition(0)
    got = topic.changelog(settings, "correlate").read("events/0")
    assert (got.head, got.items) == (b"head 1999", {1999: b"e1999"})
    assert len(part.records) > 7000
    assert part.reads < SEARCH + 20, part.reads     # one window back to the manifest, then its records
    part.compact()
    part.reads = 0
    again = topic.changelog(settings, "correlate").read("events/0")
    assert (again.head, again.items) == (got.head, got.items) and part.reads < 20, part.reads


def test_changelog_records_left_by_a_crashed_save_are_deleted_after_the_restore(settings):
    topic, log = MemoryTopic(), Changelog(settings, "parse")
    _save_raw(log, topic, "raw/3", b"h1", fresh=[(0, b"e0")])
    _save_raw(log, topic, "raw/3", b"h2", fresh=[(1, b"e1"), (2, b"e2")], manifest=False)   # crash
    new = topic.changelog(settings, "parse")
    got = new.read("raw/3")
    assert got.items == {0: b"e0"} and got.next_seq == 3
    sv = _save_raw(new, topic, "raw/3", b"h3", fresh=[(3, b"e3")])
    assert {k for k, v, _n in sv.first if v is None} == {b"raw/3@1.0", b"raw/3@2.0"}
    assert topic.changelog(settings, "parse").read("raw/3").items == {0: b"e0", 3: b"e3"}


def test_changelog_an_event_larger_than_a_record_is_saved_in_pieces(settings):
    topic, log = MemoryTopic(), Changelog(settings, "parse")
    huge = bytes(range(256)) * (2 * CHUNK // 256 + 7)
    sv = _save_raw(log, topic, "raw/4", b"h", fresh=[(0, huge), (1, b"small")])
    assert all(len(v) <= CHUNK for _k, v, _n in sv.first)
    assert [k for k, _v, _n in sv.first if b"@0." in k] == [b"raw/4@0.0", b"raw/4@0.1", b"raw/4@0.2"]
    assert topic.changelog(settings, "parse").read("raw/4").items == {0: huge, 1: b"small"}
    sv = _save_raw(log, topic, "raw/4", b"h", gone=[0])
    sv = _save_raw(log, topic, "raw/4", b"h")                  # deletes every piece of event 0
    assert {k for k, v, _n in sv.first if v is None} == {b"raw/4@0.0", b"raw/4@0.1", b"raw/4@0.2"}


def test_a_stage_saves_each_held_event_once(settings):
    """Through a real stage: a batch that holds its events writes them; the next batches
    write only theirs, and the state read back holds every one of them."""
    raw = raw_messages([SAMPLES], partitions=1)
    stage, topic = ParseStage(settings), MemoryTopic()
    log = topic.changelog(settings, "parse")
    written = heads = 0
    for b in range(0, len(raw), BATCH):
        stage.process(raw[b:b + BATCH], 0.0)                   # the warm-up holds everything
        heads += len(stage.snapshot("raw/0")) + 200            # the head, the manifest
        written += save(stage, log, topic)
    keys = [k for _o, k, v in topic.partition(0).records if k and b"@" in k and v is not None]
    assert len(keys) == len(set(keys)) == len(stage.parts["raw/0"].held) > 50
    events = sum(len(r) for _ts, _o, r in held(stage, "raw/0"))
    assert written <= heads + events, (written, heads, events)  # no save rewrites what is held
    assert moved(stage, settings, topic)


def _stage_with_state(settings):
    raw = raw_messages([SAMPLES], partitions=RAW_PARTITIONS)
    stage = ParseStage(settings)
    stage.process(raw, 0.0)
    return stage, raw


@pytest.mark.parametrize("foreign", ["other version", "other stage", "pickle", "garbage"])
def test_foreign_state_is_refused_with_one_warning_and_the_partition_starts_fresh(
        foreign, settings, monkeypatch, caplog):

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
    topic = MemoryTopic()
    _save_raw(Changelog(settings, "parse"), topic, "raw/2", data, fresh=[(0, b"[1, [], []]")])
    fresh = ParseStage(settings)
    log = topic.changelog(settings, "parse")
    with caplog.at_level(logging.WARNING, logger="osloscope.worker"):
        assert restore_partition(fresh, log, "raw/2", 0.0) is False
    [warning] = [r.getMessage() for r in caplog.records]
    assert "raw/2" in warning and "starts fresh" in warning
    fresh.process(raw, 0.0)            # all of raw/2 is processed again
    assert fresh.stats["records_in"] == len(raw)
    # the refused state's events are deleted by the next save; the new ones never reuse their seqs
    sv = log.writes("raw/2", fresh.snapshot("raw/2"), *fresh.changes("raw/2"))
    assert [k for k, v, _n in sv.first if v is None] == [b"raw/2@0.0"]
    assert b"raw/2@0.0" not in {k for k, v, _n in sv.first if v is not None}
