"""The engine: runs a set of detectors over a stream of events.

It keeps the event-time watermark (the highest event timestamp seen) and
calls ``advance`` on every detector when the watermark moves on by at least
``advance_every`` seconds, so quiet incidents resolve during a replay exactly
as they would live. A streaming runtime calls ``advance(now)`` from a timer
when no events arrive. Output is a list of incident documents (upserts).
"""
from __future__ import annotations

from typing import Iterable

from .auth_failures import AuthFailures
from .base import Detector
from .disk_full import DiskFull
from .model import Event
from .retry_exhaustion import RetryExhaustion


def default_detectors(*, auth_threshold: int = 10, auth_window: float = 300.0) -> list[Detector]:
    return [RetryExhaustion(), AuthFailures(threshold=auth_threshold, window=auth_window), DiskFull()]


class Engine:
    def __init__(self, detectors: Iterable[Detector] | None = None, *, advance_every: float = 10.0) -> None:
        self.detectors = list(detectors) if detectors is not None else default_detectors()
        self.advance_every = advance_every
        self.watermark: float | None = None
        self._last_advance: float | None = None

    def feed(self, ev: Event) -> list[dict]:
        out: list[dict] = []
        ts = ev.ts
        if ts is not None and (self.watermark is None or ts > self.watermark):
            self.watermark = ts
            if self._last_advance is None:
                self._last_advance = ts
            elif ts - self._last_advance >= self.advance_every:
                out.extend(self.advance(ts))
        for det in self.detectors:
            found = det.feed(ev)
            if found:
                out.extend(found)
        return out

    def advance(self, now: float) -> list[dict]:
        self._last_advance = now
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        out: list[dict] = []
        for det in self.detectors:
            out.extend(det.advance(now))
        return out

    def snapshot(self) -> dict:
        return {
            "watermark": self.watermark,
            "last_advance": self._last_advance,
            "detectors": {d.name: d.snapshot() for d in self.detectors},
        }

    def restore(self, state: dict) -> None:
        self.watermark = state.get("watermark")
        self._last_advance = state.get("last_advance")
        for d in self.detectors:
            if d.name in state.get("detectors", {}):
                d.restore(state["detectors"][d.name])
