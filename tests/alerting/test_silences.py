"""Silences (pipeline/alerting/silences.py): matchers, durations, the file, and the notifier
leaving silenced incidents out until the silence ends."""
from __future__ import annotations

import pytest

from notify_support import T0, incident, notifier, receiver
from pipeline.alerting.grouping import labels_of
from pipeline.alerting.silences import Matcher, SilenceError, parse_duration, store_for


def test_silenced_incidents_are_not_sent_until_the_silence_expires(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    cli_side = store_for(tmp_path / "notify")                 # what `osloscope silence` uses
    s = cli_side.add([Matcher.parse("type=disk_full"), Matcher.parse("host=~compute-[0-9]+")],
                     now=T0, duration=parse_duration("2h"), created_by="ops", comment="new disk")
    n.handle(incident(1), T0)
    n.handle(incident(2, host="controller-1"), T0)            # not matched: sent
    n.tick(T0 + 30)
    assert [r["status"] for r in hook.requests] == [200]
    assert hook.json()["group_labels"]["host"] == "controller-1"
    n.tick(T0 + 330)
    assert len(hook.requests) == 1
    cli_side.expire(s.id[:8], now=T0 + 400)                   # a prefix is enough
    n.tick(T0 + 630)
    assert len(hook.requests) == 2
    assert hook.json()["group_labels"] == {"type": "disk_full", "host": "compute-2"}
    n.close()


def test_silence_runs_out_by_itself(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    store_for(tmp_path / "notify").add([Matcher.parse("incident_id=" + incident(1)["id"])],
                                       now=T0, duration=600)
    n.handle(incident(1), T0)
    n.tick(T0 + 30)
    n.tick(T0 + 330)
    assert hook.requests == []
    n.tick(T0 + 630)                                         # the silence ended at T0 + 600
    assert len(hook.requests) == 1
    n.close()


def test_matchers_and_durations():
    labels = labels_of(incident(1))
    assert labels["alertname"] == labels["type"] == "disk_full" and labels["severity"] == "critical"
    assert Matcher.parse("host=compute-2").matches(labels)
    assert Matcher.parse('host="compute-2"').matches(labels)
    assert Matcher.parse("host!=compute-2").matches(labels) is False
    assert Matcher.parse("host=~compute-.*").matches(labels)
    assert Matcher.parse("host=~compute").matches(labels) is False          # anchored
    assert Matcher.parse("severity!~warn.*").matches(labels)
    assert Matcher.parse("service=").matches({"type": "x"})                 # missing = ""
    for bad in ("hostname=x", "host", "host=~(", "=x"):
        with pytest.raises(SilenceError):
            Matcher.parse(bad)
    assert parse_duration("1h30m") == 5400 and parse_duration("2d") == 172800
    for bad in ("", "2", "1x", "0m"):
        with pytest.raises(SilenceError):
            parse_duration(bad)


def test_broken_silences_file_keeps_the_last_good_set(tmp_path, hooks):
    store = store_for(tmp_path)
    store.add([Matcher.parse("host=compute-2")], now=T0, duration=3600)
    assert store.muting(labels_of(incident(1)), T0 + 1)
    store.path.write_text("{ not json")
    assert store.muting(labels_of(incident(1)), T0 + 2)        # logged, still silenced
