"""Event time across hosts: whatever order a fleet's lines arrive in, the
stages give the incidents ``analyze`` gives on the same files (same ids,
types and counts), with a simulated wall clock, several raw and events
partitions and watermark markers between the stages.
(pipeline/streaming/eventtime.py; the same through real Kafka in
tests/integration/test_fleet_through_kafka.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

import fleet
from fleet import _ts, orders
from support import analyze_paths, engine as support_engine, events_topic, raw_messages

from pipeline.settings import load
from pipeline.streaming.eventtime import EventTimeConfig, Reorder, Sources
from pipeline.streaming.stage import RawMessage
from pipeline.streaming.stages import CorrelateStage, ParseStage

RAW_PARTITIONS, EVENT_PARTITIONS = 3, 2
BATCH, STEP = 40, 0.2           # messages per parse batch, wall seconds per batch


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    fleet.generate(root)
    return root


def _seen(d: dict) -> tuple:
    """What must match: type, count, and the hosts and services hit (the blast radius)."""
    return d["type"], d["count"], tuple(sorted(d["hosts"])), tuple(sorted(d["services"]))


# a learning period of ten minutes, so new_error judges within the fleet's forty
ENV = {"OSLOSCOPE_DETECTORS_NEW_ERROR_LEARN_SECONDS": "600",
       "OSLOSCOPE_DETECTORS_NEW_ERROR_LEARN_MIN_RECORDS": "20"}


@pytest.fixture(scope="module")
def expected(fleet_dir):
    from pipeline import signatures
    eng = signatures.engine("all", load(None, env=ENV), windows=False)
    return {d["id"]: _seen(d) for d in analyze_paths(fleet_dir, engine=eng)}


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env=ENV)


class Pipeline:
    """The two stages as the worker runs them: raw partitions -> parse ->
    events partitions (keyed by request id, with markers) -> correlate."""

    def __init__(self, settings, corr_batch: int | None = None) -> None:
        self.corr_batch = corr_batch          # events-topic messages per correlate batch (None: all)
        self.parse, self.corr = ParseStage(settings), CorrelateStage(settings)
        self.corr.upstreams = [f"raw/{n}" for n in range(RAW_PARTITIONS)]     # as the worker sets them
        self.offsets = [0] * EVENT_PARTITIONS
        self.incidents: dict[str, dict] = {}

    def _deliver(self, out, now: float, epoch: float) -> None:
        for d in out.incidents:
            self.incidents[d["id"]] = d
        ev = events_topic(out, EVENT_PARTITIONS)
        for m in ev:                                  # continue the events partitions' offsets
            m.offset = self.offsets[m.partition]
            self.offsets[m.partition] += 1
        step = self.corr_batch or max(1, len(ev))
        for i in range(0, len(ev), step):
            for d in self.corr.process(ev[i:i + step], now, epoch=epoch).incidents:
                self.incidents[d["id"]] = d

    def tick(self, now: float, epoch: float) -> None:
        self._deliver(self.parse.tick(now, epoch=epoch), now, epoch)
        for d in self.corr.tick(now, epoch=epoch).incidents:
            self.incidents[d["id"]] = d

    def run(self, msgs: list[RawMessage], live: bool) -> dict:
        """Ship ``msgs`` in batches, wall clock STEP s per batch, a tick every second;
        ``live``: the wall clock is the newest timestamp shipped (else today: a backfill)."""
        import time as _time

        now, next_tick, newest = 0.0, 1.0, 0.0
        today = _time.time()
        for i in range(0, len(msgs), BATCH):
            batch = msgs[i:i + BATCH]
            newest = max([newest] + [_ts(m) for m in batch])
            epoch = newest + 2.0 if live else today
            self._deliver(self.parse.process(batch, now, epoch=epoch), now, epoch)
            now += STEP
            if now >= next_tick:
                self.tick(now, epoch)
                next_tick += 1.0
        for _ in range(120):                        # the fleet goes quiet: two minutes of ticks
            now += 1.0
            epoch = (newest + 2.0 + now) if live else today
            self.tick(now, epoch)
        return {k: _seen(d) for k, d in self.incidents.items()}


def _raw(fleet_dir) -> list[RawMessage]:
    return raw_messages([fleet_dir], partitions=RAW_PARTITIONS, inode=True)


@pytest.mark.parametrize("order", ["one file after another", "reversed", "all hosts at once",
                                   "one host 30 min behind"])
def test_a_backfill_in_any_order_gives_what_analyze_gives(order, fleet_dir, expected, settings):
    assert {e[0] for e in expected.values()} >= {"request_stalled", "auth_failure", "known_issue",
                                                 "service_silent", "new_error"}
    msgs = orders(_raw(fleet_dir))[order]
    p = Pipeline(settings)
    assert p.run(_renumber(msgs), live=False) == expected
    stats = p.parse.eventtime_stats(), p.corr.eventtime_stats()
    assert all(s["late"] == 0 and s["held"] == 0 for s in stats), stats


@pytest.mark.parametrize("order", ["all hosts at once", "one host 30 min behind"])
def test_live_shipping_gives_what_analyze_gives(order, fleet_dir, expected, settings):
    msgs = orders(_raw(fleet_dir))[order]
    p = Pipeline(settings)
    assert p.run(_renumber(msgs), live=True) == expected
    assert p.parse.eventtime_stats()["late"] == 0 and p.corr.eventtime_stats()["late"] == 0


def test_without_event_time_the_lagging_host_breaks_absence(fleet_dir, expected, settings, monkeypatch):
    """The test above can fail: release events as they arrive (no waiting for the
    slowest source) and the host 30 minutes behind yields incidents analyze has not."""
    monkeypatch.setattr(Sources, "frontier", lambda self, wall, epoch: None)
    msgs = orders(_raw(fleet_dir))["one host 30 min behind"]
    assert Pipeline(settings).run(_renumber(msgs), live=True) != expected


def _renumber(msgs: list[RawMessage]) -> list[RawMessage]:
    """Offsets per partition in the new arrival order."""
    nxt = [0] * RAW_PARTITIONS
    out = []
    for m in msgs:
        out.append(RawMessage(m.topic, m.partition, nxt[m.partition], m.key, m.value, m.headers))
        nxt[m.partition] += 1
    return out


# -- the pieces ----------------------------------------------------------------------------
CFG = EventTimeConfig(idle_timeout=30.0, allowed_lateness=600.0, slack=0.0, warmup=5.0,
                      max_future=86400.0, max_buffered=5)


def test_the_frontier_is_the_slowest_active_source_and_an_idle_one_stops_holding():
    s = Sources(CFG)
    s.saw("a", 1000.0, 0.0)
    s.saw("b", 400.0, 0.0)
    assert s.frontier(1.0, 1000.0) == float("-inf")          # warming up
    assert s.frontier(6.0, 1000.0) == 400.0                  # live: the slowest source
    s.saw("a", 1100.0, 20.0)
    assert s.frontier(31.0, 1100.0) == 1100.0                # b idle for 31 s: no longer holds
    s.saw("b", 450.0, 40.0)                                  # b is back, 650 s behind: lateness bounds it
    assert s.frontier(41.0, 1100.0) == 500.0
    assert s.frontier(100.0, 1100.0) is None                 # everything idle: release all


def test_a_known_source_not_heard_from_yet_holds_until_the_idle_timeout():
    """The correlate stage knows every raw partition: one the worker has not reached yet
    must not be overtaken by the others (its events would all arrive late)."""
    s = Sources(CFG, backfill=False)
    s.expected = ("raw/0", "raw/1")
    s.saw("raw/0", 1000.0, 0.0)
    assert s.frontier(6.0, 1000.0) == float("-inf")          # raw/1 not heard from yet
    assert s.frontier(29.0, 1000.0) == float("-inf")
    assert s.frontier(31.0, 1000.0) is None                  # quiet for the idle timeout: no longer
    s2 = Sources(CFG, backfill=False)
    s2.expected = ("raw/0", "raw/1")
    s2.saw("raw/0", 1000.0, 0.0)
    s2.saw("raw/1", 900.0, 7.0)
    assert s2.frontier(8.0, 1000.0) == 900.0                 # heard from: the slowest holds


def test_a_known_source_that_says_it_is_empty_is_not_waited_for():
    """A raw partition with no host (nothing to read) says so in a marker: the correlate
    stage does not wait for it until the idle timeout after every start."""
    s = Sources(CFG, backfill=False)
    s.expected = ("raw/0", "raw/1")
    s.saw("raw/0", 1000.0, 0.0)
    s.done("raw/1", 1.0)
    assert s.frontier(11.0, 1000.0) == 1000.0                # past the warm-up, not the idle timeout


def test_the_parse_stage_speaks_for_its_empty_partitions(settings):
    """Assigned raw partitions with nothing to read and no state each send a marker, once, that
    they hold nothing back; a partition with state speaks for itself."""
    from pipeline.streaming.stage import read_marker

    p = ParseStage(settings)
    p.process(_raw_one("raw", 0), 0.0)
    out = p.idle_partitions(["raw/0", "raw/1", "raw/2"], 1.0)
    assert sorted(read_marker(v) for _tp, v in out.markers) == [("raw/1", None), ("raw/2", None)]
    assert not p.idle_partitions(["raw/1", "raw/2"], 60.0).markers        # once: no traffic while idle


def _raw_one(topic: str, partition: int) -> list[RawMessage]:
    line = (b"2017-06-06 08:12:41.201 2931 INFO nova.compute.manager "
            b"[req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10 - - - - -] ok")
    return [RawMessage(topic, partition, 0, b"h", line, {"host": b"h", "path": b"/var/log/nova/nova-compute.log",
                                                         "offset": b"0"})]


def test_an_upstream_that_said_it_holds_is_waited_for_through_a_failover():
    """A raw partition that announced a frontier and went silent has lost its worker
    (SIGKILL): its new owner restores its state after the session timeout and goes on.
    The correlate stage waits upstream_timeout for it, not the idle timeout of a quiet
    file; one that said "everything released" holds nothing back at once."""
    s = Sources(CFG, backfill=False, silent_timeout=120.0)
    s.saw("raw/0", 1800.0, 0.0)
    s.saw("raw/1", 1900.0, 0.0)
    s.saw("raw/1", 2000.0, 50.0)
    assert s.frontier(60.0, 2000.0) == 1800.0                # raw/0 silent 60 s: still waited for
    assert s.frontier(121.0, 2000.0) == 2000.0               # past upstream_timeout: no longer
    s.done("raw/1", 122.0)
    assert s.frontier(122.0, 2000.0) is None


def test_a_backfill_waits_for_the_allowed_lateness_or_for_quiet():
    s = Sources(CFG)
    s.saw("a", 1000.0, 0.0)
    assert s.frontier(6.0, 10_000_000.0) == 400.0            # 600 s behind its own newest record
    assert s.frontier(31.0, 10_000_000.0) is None


def test_late_future_and_overflow_are_counted_never_dropped():
    r = Reorder(CFG)
    assert r.push(10.0, ("f",), "a", 1000.0) == []
    assert r.release(10.0) == ["a"]
    assert r.push(5.0, ("f",), "late", 1000.0) == ["late"]
    assert r.push(1e12, ("f",), "future", 1000.0) == ["future"]
    assert r.push(None, ("f",), "untimed", 1000.0) == ["untimed"]
    for i in range(6):
        forced = r.push(20.0 + i, ("f",), f"e{i}", 1000.0)
    assert forced == ["e0"]
    assert r.stats == {"late": 1, "late_max_seconds": 5.0, "future": 1, "forced": 1}
    assert r.release(None) == ["e1", "e2", "e3", "e4", "e5"]


def test_a_year_9999_line_does_not_switch_absence_off(settings):
    """One far-future record neither moves a source nor the engine's event time."""
    from support import engine
    from datetime import datetime

    eng = engine(windows=True)
    eng.limit_future(datetime(2026, 1, 1).timestamp())
    from pipeline.parsing.parser import Parser
    from pipeline.parsing.extract import Source

    p = Parser("UTC")
    src = Source("h", "nova-compute", "/var/log/nova/nova-compute.log")
    evs = [*p.feed(b"9999-12-31 23:59:59.000 1 ERROR nova.compute.manager [-] boom\n", src, 0),
           *p.feed(b"2025-12-31 10:00:00.000 1 INFO nova.compute.manager [-] fine\n", src, 60),
           *p.flush()]
    for ev in evs:
        eng.feed(ev)
    assert eng.future == 1
    assert eng.watermark is not None and eng.watermark < datetime(2026, 1, 2).timestamp()


def test_a_shared_cause_is_one_incident_across_partitions(fleet_dir, expected, settings):
    """The broker outage hits eight services on seven hosts, spread over every raw
    partition: one incident with all of them (the blast radius), as analyze finds it."""
    broker = [e for e in expected.values() if e[0] == "known_issue" and "nova-conductor" in e[3]]
    assert len(broker) == 1 and len(broker[0][2]) == 7, expected
    hosts_by_partition = {}
    for m in _raw(fleet_dir):
        hosts_by_partition.setdefault(m.partition, set()).add(m.headers["host"].decode())
    assert len(hosts_by_partition) == RAW_PARTITIONS
    msgs = orders(_raw(fleet_dir))["all hosts at once"]
    assert Pipeline(settings).run(_renumber(msgs), live=False) == expected


def test_without_fleet_routing_a_shared_cause_splits_by_partition(fleet_dir, expected, settings,
                                                                  monkeypatch):
    """The test above can fail: judge the fleet-wide signatures next to each host's
    records (no routing by cause) and the outage becomes one incident per partition."""
    from detectors import registry
    monkeypatch.setattr(registry, "split_signatures", lambda docs: (list(docs), []))
    msgs = orders(_raw(fleet_dir))["all hosts at once"]
    got = Pipeline(settings).run(_renumber(msgs), live=False)
    assert got != expected
    assert len([e for e in got.values() if e[0] == "known_issue" and "nova-conductor" in e[3]]) > 1


def test_an_auth_burst_spread_over_two_keystones_is_one_burst(fleet_dir, expected, settings,
                                                              monkeypatch):
    """The burst's 14 failures land on both controllers (7 each, below the threshold
    of 10 on either), which sit in different raw partitions: counted by source address
    across the fleet, they are one burst, as analyze finds. Counted next to each
    host's records (the rates not routed), the burst is missed."""
    bursts = [e for e in expected.values() if e[0] == "auth_failure"]
    assert len(bursts) == 1 and bursts[0][1] == 14 and bursts[0][2] == ("controller-1", "controller-2")
    from detectors import registry
    from detectors.auth_failures import AuthFailures
    host_only = tuple(
        registry.Entry(e.type, e.scope, e.fires_on, lambda c, s: AuthFailures(c.auth_failures))
        if e.type == "auth_failure" and e.scope == "host" else e
        for e in registry.ENTRIES if not (e.type == "auth_failure" and e.scope == "fleet"))
    monkeypatch.setattr(registry, "ENTRIES", host_only)
    msgs = orders(_raw(fleet_dir))["all hosts at once"]
    got = Pipeline(settings).run(_renumber(msgs), live=False)
    assert not [e for e in got.values() if e[0] == "auth_failure"]


def test_a_new_error_on_two_hosts_is_one_incident_and_a_learned_one_none(expected):
    """compute-4's resource-audit error was logged while learning: known. The image
    cache error never seen before, on compute-1 and compute-2: one incident for both."""
    new = [e for e in expected.values() if e[0] == "new_error"]
    assert new == [("new_error", 6, ("compute-1", "compute-2"), ("nova-compute",))]


def test_a_delivery_cut_into_small_correlate_batches_changes_nothing(fleet_dir, expected, settings):
    """Kafka hands the correlate stage what it has: one parse delivery's events and routed
    copies may be cut into many batches. Only the watermark markers (sent after all of
    them) may move an upstream's position, or a routed copy behind an event of the same
    delivery arrives late and the shared-cause incidents change."""
    msgs = orders(_raw(fleet_dir))["all hosts at once"]
    p = Pipeline(settings, corr_batch=7)
    assert p.run(_renumber(msgs), live=False) == expected
    assert p.corr.eventtime_stats()["late"] == 0
