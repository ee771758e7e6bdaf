"""The records of a partition's state saved one by one (pipeline/streaming/journal.py):
numbers never reused, a record written once and deleted once, and the correlate stage's
window of recent event ids kept as one record per save instead of rewritten with each."""
from __future__ import annotations

import json

import pytest

from changelog_support import MemoryTopic, save
from support import SAMPLES, events_topic, raw_messages

from pipeline.settings import load
from pipeline.streaming.changelog import restore_partition
from pipeline.streaming.journal import Journal, SeenWindow
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
