"""service_silent (seed 001 step 6, S15): a steady stream fell silent.

A (host, service) stream that logged steadily stops for longer than
``factor`` times its usual gap (the 90th percentile of its recent gaps
between bursts -- records less than ``burst_gap`` apart form one burst, and
a stream that never pauses records a gap of ``burst_gap`` per ten
``burst_gap`` of activity -- at least ``floor`` seconds), while the rest of
the fleet keeps logging. It resolves when the stream speaks again.

The absence rule: only the event watermark (the highest timestamp of the
events fed) moves the absence clock; ``advance(now)`` never moves it beyond
that, and a fleet-wide gap in the events (every stream quiet for longer than
``floor``) restarts every silence clock. At end of input nothing is judged.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from . import texts
from .base import Detector
from .incident import Incident, evidence_of
from .model import Event
from .store import KeyedStore


TEXTS = texts.load("service_silent")   # detectors/texts/service_silent.toml


class _Stream:
    __slots__ = ("last_ts", "last", "gaps", "n", "mark")

    def __init__(self, ts: float, ev) -> None:
        self.last_ts = ts
        self.last = ev               # Event (hot path) or its evidence dict (after restore)
        self.gaps: deque = deque(maxlen=32)
        self.n = 0                   # gaps recorded (history length)
        self.mark = ts               # when the last gap was recorded


def _evidence(last) -> dict:
    return last if isinstance(last, dict) else evidence_of(last)


@dataclass(frozen=True)
class ServiceSilentConfig:
    factor: float = 5.0          # silent for this many times the stream's usual gap ...
    floor: float = 300.0         # ... and at least this many seconds
    min_history: int = 20        # gaps a stream must have shown before its silence is judged
    burst_gap: float = 1.0       # records closer than this form one burst
    check_every: float = 10.0    # seconds of event time between checks
    forget_after: float = 7 * 86400.0   # a stream gone this long is forgotten
    max_streams: int = 20_000    # (host, service) streams followed at once


class ServiceSilent(Detector):
    """service_silent: a steady (host, service) stream fell silent. See the
    module docstring for the absence rule (event watermark only; a
    fleet-wide gap restarts the clocks; nothing at end of input)."""

    name = "service_silent"
    quiet_period = float("inf")          # resolves when the stream speaks, not by time

    def __init__(self, config: ServiceSilentConfig = ServiceSilentConfig()) -> None:
        super().__init__()
        self.config = config
        self.factor = config.factor
        self.floor = config.floor
        self.min_history = config.min_history
        self.burst_gap = config.burst_gap
        self.check_every = config.check_every
        self.forget_after = config.forget_after
        self.max_streams = config.max_streams
        self.streams: KeyedStore[tuple, _Stream] = KeyedStore(self.max_streams)
        self.wm: float | None = None
        self.wm_time: str | None = None
        self.resume_ts: float | None = None     # first event after a fleet-wide gap
        self.last_check: float | None = None

    def usual_gap(self, s: _Stream) -> float:
        if not s.gaps:
            return 0.0
        g = sorted(s.gaps)
        return g[int(0.9 * (len(g) - 1))]

    def threshold(self, s: _Stream) -> float:
        return max(self.factor * self.usual_gap(s), self.floor)

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
                gap = ts - s.last_ts
                inc = self.book.open.get(key)
                if inc is not None:
                    self._resolve(key, inc, ev, gap, out)
                elif gap >= self.burst_gap:
                    s.gaps.append(gap)
                    s.n += 1
                    s.mark = ts
                elif ts - s.mark >= 10 * self.burst_gap:     # logs without pause: that is its rhythm
                    s.gaps.append(self.burst_gap)
                    s.n += 1
                    s.mark = ts
                s.last_ts = ts
                s.last = ev
        if self.wm is None or ts > self.wm:
            if self.wm is not None and ts - self.wm > self.floor:
                self.resume_ts = ts          # the whole fleet was quiet: no evidence for that time
            self.wm, self.wm_time = ts, ev.timestamp
            if self.last_check is None or ts - self.last_check >= self.check_every:
                self._check(ts, out)
        return out

    def _check(self, now: float, out: list[dict]) -> None:
        self.last_check = now
        resume = self.resume_ts if self.resume_ts is not None else float("-inf")
        stale = []
        for key, s in self.streams.items():
            if now - s.last_ts > self.forget_after:
                stale.append(key)
                continue
            if s.n < self.min_history or key in self.book.open:
                continue
            silent = now - max(s.last_ts, resume)
            if silent > self.threshold(s):
                self._fire(key, s, now, out)
        for key in stale:
            self._forget(key)

    def _fire(self, key: tuple, s: _Stream, now: float, out: list[dict]) -> None:
        host, service = key
        item = _evidence(s.last)
        usual = self.usual_gap(s)
        inc = Incident(rule="service_silent.stream", type="service_silent", key=key,
                       window_start=s.last_ts, severity="error",
                       title=f"{service} on {host} fell silent while the fleet keeps logging",
                       probable_cause=TEXTS["probable_cause"].format(host=host, service=service),
                       remediation=TEXTS["remediation"].format(host=host, service=service))
        inc.add_item(item, s.last_ts)
        inc.details.update(
            last_record_at=item["@timestamp"], detected_at=self.wm_time,
            silent_seconds=round(now - s.last_ts, 3), threshold_seconds=round(self.threshold(s), 3),
            usual_gap_seconds=round(usual, 3), history_gaps=s.n)
        inc.summary = (f"no record from {service} on {host} since {item['@timestamp']} "
                       f"({now - s.last_ts:.0f} s; usual gap {usual:.0f} s, threshold "
                       f"{self.threshold(s):.0f} s) while other streams kept logging")
        self.book.open.put(key, inc)
        out.append(inc.to_doc())

    def _resolve(self, key: tuple, inc: Incident, ev: Event, gap: float, out: list[dict]) -> None:
        del self.book.open[key]
        inc.add(ev, count=False)
        inc.status = "resolved"
        inc.details["silent_seconds"] = round(gap, 3)
        inc.details["resumed_at"] = ev.timestamp
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
            "streams": [[list(k), s.last_ts, _evidence(s.last), list(s.gaps), s.n, s.mark]
                        for k, s in self.streams.items()],
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.wm, self.wm_time = state.get("wm"), state.get("wm_time")
        self.resume_ts, self.last_check = state.get("resume_ts"), state.get("last_check")
        self.streams.clear()
        for key, last_ts, last, gaps, n, mark in state.get("streams", []):
            s = _Stream(last_ts, last)
            s.gaps.extend(gaps)
            s.n, s.mark = n, mark
            self.streams.put(tuple(key), s)
