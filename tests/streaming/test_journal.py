"""The records of a partition's state saved one by one (pipeline/streaming/journal.py):
numbers never reused, a record written once and deleted once, and the correlate stage's
window of recent event ids kept as one record per save instead of rewritten with each."""
from __future__ import annotations

import json

import pytest

from changelog_support import MemoryTopic, save
from support import PROMPT_EVENT_TIME, SAMPLES, events_topic, raw_messages

from pipeline.settings import load
from pipeline.streaming.changelog import SEARCH, restore_partition
from pipeline.streaming.journal import Journal, SeenWindow
from pipeline.streaming.stage import REFRESH_MIN
from pipeline.streaming.stages import CorrelateStage, ParseStage, RawMessage


def test_journal_says_what_changed_since_the_last_save():
    j = Journal()
    a, b, c = j.add("a"), j.add("b"), j.add("c")
    j.drop(b)                                   # never saved: nothing to delete
    assert j.changes() == ([(a, "a"), (c, "c")], [])
    j.saved()
    d = j.add("d")
    j.drop(a)
    assert j.changes() == ([(d, "d")], [a])
    j.saved()
    assert j.changes() == ([], [])
    k = Journal()
    k.restored([c, d], 0)
    assert k.add("e") == d + 1                  # never reused, whatever the head said


def test_seen_window_keeps_at_least_its_size_and_drops_old_segments():
    j = Journal()
    w = SeenWindow(10, j)
    for batch in range(6):
        assert all(w.is_new(f"id{batch}.{i}") for i in range(4))
        w.seal()
        j.saved()
    assert sum(len(ids) for _s, ids in w.segments) >= 10
    assert len(w.segments) == 3                 # 12 ids: the older segments went
    assert not w.is_new("id5.3") and not w.is_new("id3.2") and w.is_new("id0.0")   # the last 10 ids
    again = SeenWindow(10, Journal())
    again.restore([(seq, list(ids)) for seq, ids in w.segments])
    assert not again.is_new("id4.1") and list(again.ids)[-1] == "id5.3"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None)


def test_correlate_writes_each_event_id_once_however_many_saves(settings):
    """Each id is written once in the window's records (and once in its held event), not
    with every save as when the window was part of the head."""
    parse = ParseStage(settings)
    out = parse.process(raw_messages([SAMPLES]), 0.0)
    out.extend(parse.tick(1e12))
    events = events_topic(out, 1)
    corr, topic = CorrelateStage(settings), MemoryTopic()
    log = topic.changelog(settings, "correlate")
    for b in range(0, len(events), 10):
        corr.process(events[b:b + 10], 0.0)
        save(corr, log, topic)
    values = [v for _o, _k, v in topic.partition(0).records if v]
    ids = [json.loads(m.value)["_id"] for m in events if not m.headers.get("osloscope-marker")]
    assert len(ids) > 50
    for eid in ids:
        n = sum(v.count(eid.encode()) for v in values)
        assert 1 <= n <= 2, (eid, n)


def test_a_duplicate_after_a_move_is_still_dropped(settings):
    parse = ParseStage(settings)
    out = parse.process(raw_messages([SAMPLES]), 0.0)
    out.extend(parse.tick(1e12))
    events = [m for m in events_topic(out, 1) if not m.headers.get("osloscope-marker")]
    c1, topic = CorrelateStage(settings), MemoryTopic()
    log = topic.changelog(settings, "correlate")
    for b in range(0, 60, 20):                  # three saves: three segments of the window
        c1.process(events[b:b + 20], 0.0)
        save(c1, log, topic)
    c2 = CorrelateStage(settings)
    assert restore_partition(c2, topic.changelog(settings, "correlate"), "events/0", 0.0)
    again = [RawMessage("events", 0, 5000 + i, m.key, m.value, m.headers) for i, m in enumerate(events[:60])]
    c2.process(again, 0.0)
    assert c2.stats["duplicates"] == 60


def _written(topic: MemoryTopic, since: int) -> list[dict]:
    """The tracked-store entries written to partition 0 from offset ``since`` on."""
    out = []
    for off, key, value in topic.partition(0).records:
        if off >= since and value and b"@" in key:
            doc = json.loads(value)
            if isinstance(doc, dict) and "entry" in doc:
                out.append(doc)
    return out


def test_a_save_rewrites_the_request_windows_that_changed_only(tmp_path, monkeypatch):
    """An open window idle until its gap ends is not written again with every save; a
    window that got events since the last save is, with what it holds now."""
    monkeypatch.chdir(tmp_path)
    prompt = load(None, env=PROMPT_EVENT_TIME)
    parse, raw = ParseStage(prompt), raw_messages([SAMPLES])
    deliveries = [parse.process(raw[b:b + 10], 0.0) for b in range(0, len(raw), 10)]
    events = events_topic(deliveries, 1)
    corr, topic = CorrelateStage(prompt), MemoryTopic()
    log = topic.changelog(prompt, "correlate")
    idle_kept = written = 0
    for b in range(0, len(events), 8):
        part = corr.parts.get("events/0")
        before = {k: (w.events, w.last_ts) for k, w in part.stores["windows.open"].items()} if part else {}
        corr.process(events[b:b + 8], 0.0)
        since = topic.partition(0).end
        save(corr, log, topic)
        now = {k: (w.events, w.last_ts) for k, w in corr.parts["events/0"].stores["windows.open"].items()}
        got = {d["e"][0]: d["e"][2] for d in _written(topic, since) if d["entry"] == "windows.open"}
        assert set(got) == {k for k, v in now.items() if before.get(k) != v}, f"batch at {b}"
        for key, state in got.items():
            assert state["events"] == now[key][0]
        idle_kept += sum(1 for k in now if before.get(k) == now[k])
        written += len(got)
    assert written >= 3 and idle_kept >= 10, (written, idle_kept)


def test_an_entry_that_never_changes_is_written_again_so_a_restore_reads_little(settings):
    """A restore reads the changelog from the oldest record the state needs: an entry left
    alone (a link kept for an hour, a cause never asked for) is written again after REFRESH
    times the entries' number of records, so it does not make a restore read all history."""
    stage, topic = CorrelateStage(settings), MemoryTopic()
    log = topic.changelog(settings, "correlate")
    tp = "events/0"
    part = stage.partition(tp)
    part.stores["causes.incidents"].put("quiet", {"id": "quiet", "details": {}})
    churn = part.stores["windows.closed"]
    for i in range(3000):                          # 3,000 saves of one new link each (10 kept)
        churn.put(f"req-{i}", {"key": f"req-{i}", "last_ts": float(i)})
        if len(churn) > 10:
            churn.pop_oldest()
        stage._dirty.add(tp)
        save(stage, log, topic)
    rewrites = [d for d in _written(topic, 0) if d["e"][0] == "quiet"]
    assert 2 <= len(rewrites) <= 3000 // REFRESH_MIN + 1, len(rewrites)
    fresh = CorrelateStage(settings)
    reads = topic.partition(0).reads
    assert restore_partition(fresh, topic.changelog(settings, "correlate"), tp, 0.0)
    read = topic.partition(0).reads - reads
    # the last manifest's search window, then at most REFRESH_MIN records of entries and the
    # heads, tombstones and manifests of the saves they span (4 records per save here)
    assert read <= SEARCH + 4 * REFRESH_MIN, read
    assert list(fresh.parts[tp].stores["causes.incidents"]) == ["quiet"]
    assert list(fresh.parts[tp].stores["windows.closed"]) == list(churn)


def test_entries_of_a_store_the_detectors_no_longer_have_are_dropped_not_the_state(settings, caplog):
    """A signature retired since the save: its incidents are dropped with a warning and
    deleted by the next save; the rest of the partition's state is restored."""
    from detectors.store import TrackedStore

    stage, topic = CorrelateStage(settings), MemoryTopic()
    log = topic.changelog(settings, "correlate")
    part = stage.partition("events/0")
    part.stores["known_issue.books.retired-signature"] = retired = TrackedStore(10)
    retired.put(("h",), {"id": "x"})
    part.stores["windows.closed"].put("req-1", {"key": "req-1", "last_ts": 1.0})
    stage._dirty.add("events/0")
    save(stage, log, topic)
    fresh, log2 = CorrelateStage(settings), topic.changelog(settings, "correlate")
    with caplog.at_level("WARNING"):
        assert restore_partition(fresh, log2, "events/0", 0.0)
    assert "known_issue.books.retired-signature (1 entries) dropped" in caplog.text
    assert list(fresh.parts["events/0"].stores["windows.closed"]) == ["req-1"]
    since = topic.partition(0).end
    for _ in range(2):          # the manifest that stops listing it, then the deletion
        fresh._dirty.add("events/0")
        save(fresh, log2, topic)
    deleted = [k for off, k, v in topic.partition(0).records if off >= since and v is None]
    assert any(k.startswith(b"events/0@") for k in deleted), deleted
