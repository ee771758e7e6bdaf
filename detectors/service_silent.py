"""service_silent (seed 001 step 6, S15): a stream that logs on a schedule fell silent.

Silence is a fault only for a stream that logs on a schedule by design; an
API that logs only when it is called (an image API polled every ten minutes,
a volume API whose only client stopped) is quiet whenever nobody calls it.
So the detector learns which (host, service) streams have a schedule, from
their **periodic records** (``PERIODIC``): oslo.service's ``Running periodic
task ...`` (DEBUG), nova-compute's resource audit (``Auditing locally
available compute resources``, ``Final resource view``, ``Compute_service
record updated``), the neutron agents' state reports and ``rpc_loop``
iterations, cinder-volume's capability reports (``Updating volume stats``,
``Notifying Schedulers of capabilities``).

**Learning.** Periodic records less than ``tick_gap`` seconds after the
first record of a run belong to that run (one *tick*: a periodic-task run
logs several records within seconds). The intervals between ticks are the
stream's schedule: the last 32 are kept, their median is the learned
interval. A stream is *scheduled* once it has shown ``min_intervals``
intervals and at least half of its recent intervals lie within a factor two
of that median (roughly regular). Until then -- the learning period,
``min_intervals`` + 1 ticks: about eleven minutes for nova-compute's
60-second periodic tasks -- its silence is never judged, however long; a
stream without periodic records (API services at INFO) is never watched.

**Judging.** A scheduled stream is silent when no record at all (periodic or
not) arrived for longer than ``max(factor * interval, floor)`` while the
rest of the fleet kept logging. It resolves when the stream speaks again;
the interval that spans the silence (or a fleet-wide gap) is not learned.

The absence rule: only the event watermark (the highest timestamp of the
events fed) moves the absence clock; ``advance(now)`` never moves it beyond
that, and a fleet-wide gap in the events (every stream quiet for longer than
``floor``) restarts every silence clock. At end of input nothing is judged.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from . import texts
from .base import Detector
from .incident import Incident, evidence_of
from .model import Event
from .store import KeyedStore


TEXTS = texts.load("service_silent")   # detectors/texts/service_silent.toml

# Records a service writes on a schedule, matched at the start of the message. The templates
# are those of oslo_service/periodic_task.py (and the older *.openstack.common copies),
# nova/compute/resource_tracker.py, nova/scheduler/client/report.py, neutron/agent/l3/agent.py,
# neutron/agent/dhcp/agent.py, neutron/agent/linux/external_process.py,
# neutron/plugins/ml2/drivers/openvswitch/agent/ovs_neutron_agent.py, cinder/volume/driver.py and
# cinder/manager.py; real samples in tests/fixtures/corpus/{idle-controller,compute-stops}.
PERIODIC = re.compile(
    r"Running periodic task "                       # oslo.service periodic_task (and *.openstack.common)
    r"|Dynamic looping call .{0,80}periodic_tasks"  # Juno/Kilo loopingcall running the periodic tasks
    r"|Auditing locally available compute resources"  # nova ResourceTracker.update_available_resource
    r"|Final resource view: |Hypervisor/Node resource view: |Total usable vcpus: "
    r"|Compute_service record updated for "         # nova resource tracker / scheduler report client
    r"|Report state task (?:started|successfully completed)"   # neutron agents _report_state (<= Liberty)
    r"|(?:\S+ )?Agent has just been revived"        # neutron agents' report_state after a revival
    r"|Agent rpc_loop - iteration:"                 # neutron OVS / SR-IOV agents' polling loop
    r'|Lock "_check_child_processes" (?:acquired|released)'   # neutron ProcessMonitor, every 60 s
    r"|Updating volume stats"                       # cinder volume drivers' _update_volume_stats
    r"|Notifying Schedulers of capabilities")       # cinder SchedulerDependentManager


def is_periodic(ev: Event) -> bool:
    """Whether ``ev`` is a record its service writes on a schedule."""
    msg = ev.message
    return bool(msg) and PERIODIC.match(msg) is not None


class _Stream:
    __slots__ = ("last_ts", "last", "tick", "gaps", "n", "interval", "regular")

    def __init__(self, ts: float, ev) -> None:
        self.last_ts = ts
        self.last = ev               # Event (hot path) or its evidence dict (after restore)
        self.tick: float | None = None   # start of the last periodic tick
        self.gaps: deque = deque(maxlen=32)   # recent intervals between ticks
        self.n = 0                   # intervals learned (history length)
        self.interval = 0.0          # median of ``gaps``
        self.regular = False         # at least half of ``gaps`` within x2 of the median

    def learn(self, gap: float) -> None:
        self.gaps.append(gap)
        self.n += 1
        self._derive()

    def _derive(self) -> None:
        g = sorted(self.gaps)
        if not g:
            self.interval, self.regular = 0.0, False
            return
        median = g[(len(g) - 1) // 2]
        self.interval = median
        near = sum(1 for x in g if median / 2 <= x <= 2 * median)
        self.regular = 2 * near >= len(g)


def _evidence(last) -> dict:
    return last if isinstance(last, dict) else evidence_of(last)


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s"


@dataclass(frozen=True)
class ServiceSilentConfig:
    factor: float = 5.0          # silent for this many times the learned interval ...
    floor: float = 300.0         # ... and at least this many seconds
    min_intervals: int = 10      # intervals between periodic ticks learned before a stream is watched
    tick_gap: float = 20.0       # periodic records this close to a tick's first record are that tick
    check_every: float = 10.0    # seconds of event time between checks
    forget_after: float = 7 * 86400.0   # a stream gone this long is forgotten
    max_streams: int = 20_000    # (host, service) streams followed at once


class ServiceSilent(Detector):
    """service_silent: a (host, service) stream with a learned schedule fell
    silent. See the module docstring for how schedules are learned and for
    the absence rule (event watermark only; a fleet-wide gap restarts the
    clocks; nothing at end of input)."""

    name = "service_silent"
    quiet_period = float("inf")          # resolves when the stream speaks, not by time

    def __init__(self, config: ServiceSilentConfig = ServiceSilentConfig()) -> None:
        super().__init__()
        self.config = config
        self.factor = config.factor
        self.floor = config.floor
        self.min_intervals = config.min_intervals
        self.tick_gap = config.tick_gap
        self.check_every = config.check_every
        self.forget_after = config.forget_after
        self.max_streams = config.max_streams
        self.streams: KeyedStore[tuple, _Stream] = KeyedStore(self.max_streams)
        self.wm: float | None = None
        self.wm_time: str | None = None
        self.resume_ts: float | None = None     # first event after a fleet-wide gap
        self.last_check: float | None = None

    def scheduled(self, s: _Stream) -> bool:
        """Whether ``s`` has a learned schedule (is watched)."""
        return s.n >= self.min_intervals and s.regular

    def usual_gap(self, s: _Stream) -> float:
        return s.interval

    def threshold(self, s: _Stream) -> float:
        return max(self.factor * s.interval, self.floor)

    # -- feeding ---------------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        ts = ev.ts
        if ev.kind == "unparsed" or ts is None:
            return []
        out: list[dict] = []
        key = (ev.host or "unknown", ev.service or "unknown")
        s = self.streams.get(key)
        if s is None:
            s = _Stream(ts, ev)
            for gone, _ in self.streams.put(key, s):
                self.book.open.pop(gone, None)
        else:
            self.streams.touch(key)
            if ts > s.last_ts:
                inc = self.book.open.get(key)
                if inc is not None:
                    self._resolve(key, inc, ev, ts - s.last_ts, out)
                    s.tick = None            # the interval across the silence is not learned
                s.last_ts = ts
                s.last = ev
        moved = self.wm is None or ts > self.wm
        if moved:
            if self.wm is not None and ts - self.wm > self.floor:
                self.resume_ts = ts          # the whole fleet was quiet: no evidence for that time
            self.wm, self.wm_time = ts, ev.timestamp
        if is_periodic(ev):
            self._tick(s, ts)
        if moved and (self.last_check is None or ts - self.last_check >= self.check_every):
            self._check(ts, out)
        return out

    def _tick(self, s: _Stream, ts: float) -> None:
        """A periodic record: a new tick when ``tick_gap`` after the last one's start."""
        if s.tick is None:
            s.tick = ts
            return
        gap = ts - s.tick
        if gap < self.tick_gap:
            return                           # same run (or out of order)
        if self.resume_ts is None or s.tick >= self.resume_ts:
            s.learn(gap)                     # not across a fleet-wide gap
        s.tick = ts

    def _check(self, now: float, out: list[dict]) -> None:
        self.last_check = now
        resume = self.resume_ts if self.resume_ts is not None else float("-inf")
        stale = []
        for key, s in self.streams.items():
            if now - s.last_ts > self.forget_after:
                stale.append(key)
                continue
            if not self.scheduled(s) or key in self.book.open:
                continue
            silent = now - max(s.last_ts, resume)
            if silent > self.threshold(s):
                self._fire(key, s, now, out)
        for key in stale:
            self._forget(key)

    def _fire(self, key: tuple, s: _Stream, now: float, out: list[dict]) -> None:
        host, service = key
        item = _evidence(s.last)
        usual = s.interval
        threshold = self.threshold(s)
        fill = {"host": host, "service": service, "interval": _fmt(usual)}
        inc = Incident(rule="service_silent.stream", type="service_silent", key=key,
                       window_start=s.last_ts, severity="error",
                       title=f"{service} on {host} fell silent while the fleet keeps logging",
                       probable_cause=TEXTS["probable_cause"].format(**fill),
                       remediation=TEXTS["remediation"].format(**fill))
        inc.add_item(item, s.last_ts)
        inc.details.update(
            last_record_at=item["@timestamp"], detected_at=self.wm_time,
            silent_seconds=round(now - s.last_ts, 3), threshold_seconds=round(threshold, 3),
            usual_gap_seconds=round(usual, 3), history_gaps=s.n)
        inc.summary = (f"no record from {service} on {host} since {item['@timestamp']} "
                       f"({now - s.last_ts:.0f} s) while other streams kept logging; it logs on a "
                       f"schedule (periodic records every {usual:.0f} s, learned from {s.n} "
                       f"intervals; threshold {threshold:.0f} s)")
        self.book.open.put(key, inc)
        out.append(inc.to_doc())

    def _resolve(self, key: tuple, inc: Incident, ev: Event, gap: float, out: list[dict]) -> None:
        del self.book.open[key]
        inc.add(ev, count=False)
        inc.status = "resolved"
        inc.details["silent_seconds"] = round(gap, 3)
        inc.details["resumed_at"] = ev.timestamp
        threshold = inc.details.get("threshold_seconds")
        if threshold is not None and gap <= threshold:
            # a record that arrived late (its host's logs lagged) shows the stream was not
            # silent for the threshold: the absence was judged too early -- say so, claim nothing
            inc.details["judged_early"] = True
            inc.title = f"{inc.service} on {inc.host} was not silent: its records arrived late"
            inc.summary = (f"withdrawn: a late record shows {inc.service} on {inc.host} logging at "
                           f"{ev.timestamp}, {gap:.0f} s after {inc.details['last_record_at']} "
                           f"(threshold {threshold:.0f} s); its records arrived after the silence "
                           f"was judged")
        else:
            inc.summary = (f"{inc.service} on {inc.host} was silent for {gap:.0f} s "
                           f"({inc.details['last_record_at']} .. {ev.timestamp}); it logs again")
        out.append(inc.to_doc())

    def _forget(self, key: tuple) -> None:
        """Drop a stream gone for ``forget_after`` (or the least recent one
        when too many): its open incident is dropped without a new version."""
        self.streams.pop(key, None)
        self.book.open.pop(key, None)

    # -- time --------------------------------------------------------------------
    def advance(self, now: float) -> list[dict]:
        """Checks up to the event watermark only: ``now`` beyond it is no
        evidence that the fleet kept logging."""
        out: list[dict] = []
        if self.wm is not None:
            self._check(min(now, self.wm), out)
        return out

    def flush(self) -> list[dict]:
        """End of input: no absence is judged."""
        return []

    # -- state -------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "incidents": self.book.snapshot(), "wm": self.wm, "wm_time": self.wm_time,
            "resume_ts": self.resume_ts, "last_check": self.last_check,
            "streams": [{"key": list(k), "last_ts": s.last_ts, "last": _evidence(s.last),
                         "tick": s.tick, "gaps": list(s.gaps), "n": s.n}
                        for k, s in self.streams.items()],
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.wm, self.wm_time = state.get("wm"), state.get("wm_time")
        self.resume_ts, self.last_check = state.get("resume_ts"), state.get("last_check")
        self.streams.clear()
        for entry in state.get("streams", []):
            if isinstance(entry, dict):
                s = _Stream(entry["last_ts"], entry["last"])
                s.tick = entry.get("tick")
                s.gaps.extend(entry.get("gaps", ()))
                s.n = entry.get("n", len(s.gaps))
                s._derive()
                key = entry["key"]
            else:       # the format before schedules: its gaps were not periodic ticks, learn afresh
                key, last_ts, last = entry[0], entry[1], entry[2]
                s = _Stream(last_ts, last)
            self.streams.put(tuple(key), s)
