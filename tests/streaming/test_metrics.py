"""Worker self-metrics (pipeline/streaming/metrics.py): open incidents as Prometheus gauges by
type, severity and host, from the incident documents the worker produces."""
from __future__ import annotations

import re

import pytest

from pipeline.streaming import metrics as M
from pipeline.streaming.metrics import Metrics

_SAMPLE = re.compile(r'osloscope_open_incidents\{type="((?:[^"\\]|\\.)*)",severity="((?:[^"\\]|\\.)*)",'
                     r'host="((?:[^"\\]|\\.)*)"\} (\d+)\Z')
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
_LINE = re.compile(rf'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{{_PAIR}(?:,{_PAIR})*\}})? -?[0-9][0-9.e+-]*\Z')


def doc(n: int, *, status="open", type_="disk_full", severity="critical", host="compute-2",
        seen="2024-05-01T10:00:00.000+00:00", count=1) -> dict:
    return {"id": f"{n:024x}", "type": type_, "severity": severity, "status": status, "host": host,
            "hosts": [host] if host else [], "last_seen": seen, "count": count}


def gauges(m: Metrics) -> dict[tuple[str, str, str], int]:
    text = m.prometheus()
    assert "# HELP osloscope_open_incidents " in text
    assert "# TYPE osloscope_open_incidents gauge" in text
    out = {}
    for line in text.splitlines():
        if line.startswith("osloscope_open_incidents{"):
            hit = _SAMPLE.match(line)
            assert hit, line
            out[hit.groups()[:3]] = int(hit.group(4))
    return out


def test_open_incidents_by_type_severity_and_host():
    m = Metrics()
    assert gauges(m) == {}
    m.incidents([doc(1), doc(2), doc(3, host="compute-3"),
                 doc(4, type_="auth_failure", severity="warning", host="controller-1")])
    assert gauges(m) == {("disk_full", "critical", "compute-2"): 2,
                         ("disk_full", "critical", "compute-3"): 1,
                         ("auth_failure", "warning", "controller-1"): 1}
    # an update, a resolve, an escalation; the series that went to 0 stays, at 0
    m.incidents([doc(1, count=5, seen="2024-05-01T10:01:00+00:00"),
                 doc(3, status="resolved", seen="2024-05-01T10:05:00+00:00"),
                 doc(4, type_="auth_failure", severity="error", host="controller-1", count=60,
                     seen="2024-05-01T10:02:00+00:00")])
    assert gauges(m) == {("disk_full", "critical", "compute-2"): 2,
                         ("disk_full", "critical", "compute-3"): 0,
                         ("auth_failure", "warning", "controller-1"): 0,
                         ("auth_failure", "error", "controller-1"): 1}
    assert "osloscope_open_incidents_dropped_total 0" in m.prometheus()


def test_latest_version_wins_whatever_the_order():
    m = Metrics()
    late_open = doc(1, seen="2024-05-01T10:00:00+00:00")
    m.incidents([doc(1, status="resolved", seen="2024-05-01T10:09:00+00:00"), late_open])
    assert gauges(m) == {}                                   # the resolve is newer: stays resolved
    m.incidents([doc(2, count=3), doc(2, count=2)])         # a replayed older version changes nothing
    assert m.open_incidents[doc(2)["id"]][0][2] == 3
    m.incidents([doc(2, status="resolved", count=3)])       # same time and count: resolved wins
    assert gauges(m) == {("disk_full", "critical", "compute-2"): 0}
    m.incidents([{"no": "id"}, "not a dict", doc(5, host=None)])
    assert gauges(m)[("disk_full", "critical", "")] == 1


def test_label_values_are_escaped():
    m = Metrics()
    m.incidents([doc(1, host='we"ird\\host\nx')])
    line = next(x for x in m.prometheus().splitlines() if x.startswith("osloscope_open_incidents{"))
    assert line == ('osloscope_open_incidents{type="disk_full",severity="critical",'
                    'host="we\\"ird\\\\host\\nx"} 1')


def test_bounded(monkeypatch):
    monkeypatch.setattr(M, "MAX_TRACKED_INCIDENTS", 5)
    monkeypatch.setattr(M, "MAX_RESOLVED_REMEMBERED", 3)
    monkeypatch.setattr(M, "MAX_INCIDENT_SERIES", 4)
    m = Metrics()
    m.incidents([doc(i, host=f"compute-{i}") for i in range(8)])
    assert len(m.open_incidents) == 5 and m.incidents_dropped == 3
    assert sum(gauges(m).values()) == 5 and len(gauges(m)) <= 5
    assert "osloscope_open_incidents_dropped_total 3" in m.prometheus()
    m.incidents([doc(i, host=f"compute-{i}", status="resolved") for i in range(8)])
    assert not m.open_incidents and len(m.resolved_incidents) == 3
    assert len(m.incident_series) == 4 and set(gauges(m).values()) == {0}


@pytest.mark.parametrize("n", [1, 1000])
def test_exposition_stays_parseable(n):
    m = Metrics()
    m.add("parse", "records_in", 3)
    m.incidents([doc(i, host=f"h{i % 7}") for i in range(n)])
    text = m.prometheus()
    assert text.endswith("\n")
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        hit = _LINE.match(line)
        assert hit, line
        assert hit.group(1) in typed, f"{line}: no # TYPE line before it"
    assert sum(gauges(m).values()) == n


def test_event_time_counters_of_each_stage_are_exposed(tmp_path, monkeypatch):
    """Late and far-future records are never dropped silently: the stages count them and
    /metrics shows the counts (and how late the latest was)."""
    from support import raw_messages  # noqa: F401  (tests/ on the path)

    from pipeline.settings import load
    from pipeline.streaming.stages import ParseStage, RawMessage

    monkeypatch.chdir(tmp_path)
    stage = ParseStage(load(None, env={"OSLOSCOPE_WORKER_SOURCE_WARMUP": "0",
                                       "OSLOSCOPE_WORKER_SOURCE_SLACK": "0",
                                       "OSLOSCOPE_WORKER_ALLOWED_LATENESS": "0"}))
    h = {"host": b"h", "path": b"/var/log/nova/nova-compute.log"}
    lines = [b"2024-05-01 10:00:00.000 1 INFO nova.compute.manager [-] a",
             b"2024-05-01 10:05:00.000 1 INFO nova.compute.manager [-] b",
             b"9999-12-31 23:59:59.000 1 INFO nova.compute.manager [-] from the future",
             b"2024-05-01 10:01:00.000 1 INFO nova.compute.manager [-] late by four minutes",
             b"2024-05-01 10:06:00.000 1 INFO nova.compute.manager [-] c"]
    for i, line in enumerate(lines):
        stage.process([RawMessage("raw", 0, i, b"h", line, h)], float(i), epoch=1.8e9)
    m = Metrics()
    m.observe_event_time("parse", stage.eventtime_stats())
    text = m.prometheus()
    assert 'osloscope_event_time{stage="parse",kind="late"} 1' in text
    assert 'osloscope_event_time{stage="parse",kind="future"} 1' in text
    assert 'osloscope_event_time{stage="parse",kind="late_max_seconds"} 240.0' in text


class _TP:
    def __init__(self, topic, partition):
        self.topic, self.partition = topic, partition

    def __hash__(self):
        return hash((self.topic, self.partition))

    def __eq__(self, other):
        return (self.topic, self.partition) == (other.topic, other.partition)


class _Consumer:
    """What consumer_lag reads of faust's consumer: the assignment, the high watermarks of
    the last fetch and the committed offsets it keeps per assigned partition."""

    def __init__(self, assigned: dict, committed: dict):
        self.assigned = {_TP(*k): v for k, v in assigned.items()}
        self._committed_offset = {_TP(*k): v for k, v in committed.items()}

    def assignment(self):
        return set(self.assigned)

    def highwater(self, tp):
        return self.assigned[tp]


def test_lag_counts_from_the_committed_offsets_of_the_partitions_assigned_now():
    m = Metrics()

    class App:
        consumer = _Consumer({("raw", 0): 500, ("raw", 1): 40, ("raw", 2): None},
                             {("raw", 0): 500, ("raw", 1): 10})
    m.update_lag(App)
    # drained (committed = high watermark): 0, not the whole partition; never fetched: unknown
    assert m.lag == {("raw", 0): 0, ("raw", 1): 40 - 10}
    App.consumer = _Consumer({("raw", 1): 45}, {("raw", 1): 45})     # raw/0 was revoked
    m.update_lag(App)
    assert m.lag == {("raw", 1): 0}
    text = m.prometheus()
    assert 'osloscope_consumer_lag{topic="raw",partition="1"} 0' in text
    assert 'partition="0"' not in text
    App.consumer = _Consumer({("raw", 3): 7}, {})                     # the group never committed
    m.update_lag(App)
    assert m.lag == {("raw", 3): 7}


def test_timers_and_sink_latency_are_exposed_and_parseable():
    from pipeline.sinks.elasticsearch import Latency

    m = Metrics()
    m.tick("parse", 100.0)
    m.tick("parse", 101.0)
    lat = Latency(slow_after=5.0)
    done = lat.start(10, now=0.0)
    lat.request(done, "ok", 0.2)
    assert lat.finish(done, now=0.2) == (0.2, 1)
    lat.start(20, now=1.0)                            # still in flight
    assert lat.overdue(now=3.0) == []
    assert lat.overdue(now=7.0) == [(6.0, 20, True)]
    assert lat.overdue(now=8.0) == []                 # reported: not again for a while
    assert lat.overdue(now=37.5) == [(36.5, 20, False)]
    m.observe_sink(lat.snapshot(now=8.0))
    text = m.prometheus()
    assert 'osloscope_timer_runs_total{timer="parse"} 2' in text
    assert 'osloscope_sink_inflight_seconds{sink="elasticsearch"} 7.000' in text
    assert 'osloscope_sink_inflight_requests{sink="elasticsearch"} 1' in text
    assert 'osloscope_sink_requests_total{sink="elasticsearch",outcome="ok"} 1' in text
    assert 'osloscope_sink_slow_requests_total{sink="elasticsearch"} 1' in text
    assert 'osloscope_sink_request_seconds_bucket{sink="elasticsearch",le="0.1"} 0' in text
    assert 'osloscope_sink_request_seconds_bucket{sink="elasticsearch",le="0.25"} 1' in text
    assert 'osloscope_sink_request_seconds_count{sink="elasticsearch"} 1' in text
    typed = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        elif not line.startswith("#"):
            hit = _LINE.match(line)
            assert hit, line
            name = hit.group(1)
            base = name.rsplit("_", 1)[0] if name.endswith(("_bucket", "_sum", "_count")) else name
            assert name in typed or typed.get(base) == "histogram", line
    assert "es_inflight_s=7.0" in m.summary()
