"""The engine: runs detectors, request windows and root causes over a
stream of events.

It keeps the event-time watermark (the highest event timestamp seen) and
calls ``advance`` on every detector when the watermark moves on by at least
``advance_every`` seconds, so quiet incidents resolve during a replay exactly
as they would live. A streaming runtime calls ``advance(now)`` from a timer
when no events arrive; ``flush()`` is the end of input.

With request windows (``windows``), every event also goes into its request's
session window; a closed window yields a request summary, and the root
causes those summaries name are joined into the incidents whose evidence
carries their request ids (``detectors.rootcause``).

A timestamp beyond ``horizon`` (set by the caller: the wall clock plus a
margin; None: no limit) is implausible -- a line from the year 9999 --
and must not move event time: such an event reaches the detectors with
no timestamp, and ``future`` counts it.

Fleet-keyed detectors (``FleetDetector``: a shared cause, a new error
template) keep state under a key no single host or request owns. Their
*routers* run next to the host's records (they may learn, like the new-error
template learner) and say which keys an event goes to; ``feed`` hands the
event to the fleet detector of each key when this engine has it, and returns
the other routes in ``Emitted.routed``: the worker's parse stage sends such
an event to the events topic once more, keyed by the fleet key, and the
correlate stage that owns the key calls ``feed_keyed``. ``analyze`` runs
routers and fleet detectors in one engine: same detectors, same order.

Every call returns what it produced (``Emitted``): incident documents
(upserts: the latest version of an id wins), request summaries and the
routes no local fleet detector took.
"""
from __future__ import annotations

import copy
from typing import Iterable, NamedTuple

from .base import Detector, FleetDetector, Router
from .model import Event
from .request_windows import RequestWindows
from .rootcause import RootCauses
from .store import TrackedStore


class Emitted(NamedTuple):
    incidents: list[dict]
    requests: list[dict]
    routed: tuple = ()          # (fleet detector name, key) this engine has no detector for


NOTHING = Emitted([], [])


class Engine:
    def __init__(self, detectors: Iterable[Detector], *, windows: RequestWindows | None = None,
                 routers: Iterable[Router] = (), advance_every: float = 10.0) -> None:
        self.detectors = list(detectors)
        self.routers = list(routers)
        self.keyed = {d.name: d for d in self.detectors if isinstance(d, FleetDetector)}
        self.windows = windows
        self.causes = RootCauses() if windows is not None else None
        self.advance_every = advance_every
        self.watermark: float | None = None
        self._last_advance: float | None = None
        self.horizon: float | None = None
        self.future = 0

    def limit_future(self, epoch: float, margin: float = 86400.0) -> None:
        """Timestamps more than ``margin`` seconds past ``epoch`` (the wall
        clock, Unix time) are implausible from now on."""
        self.horizon = epoch + margin

    # -- the contract ---------------------------------------------------------------
    def _clock(self, ev: Event, incidents: list[dict]) -> Event:
        """Event time from ``ev`` (an implausible timestamp is taken away from
        it); detectors advance when it moved on by ``advance_every``."""
        ts = ev.ts
        if ts is not None and self.horizon is not None and ts > self.horizon:
            self.future += 1
            ev = copy.copy(ev)
            ev.ts = ts = None
        if ts is not None and (self.watermark is None or ts > self.watermark):
            self.watermark = ts
            if self._last_advance is None:
                self._last_advance = ts
            elif ts - self._last_advance >= self.advance_every:
                self._last_advance = ts
                for det in self.detectors:
                    incidents.extend(det.advance(ts))
                for router in self.routers:
                    router.advance(ts)
        return ev

    def feed(self, ev: Event) -> Emitted:
        incidents: list[dict] = []
        ev = self._clock(ev, incidents)
        for det in self.detectors:
            found = det.feed(ev)
            if found:
                incidents.extend(found)
        routed: list[tuple[str, str]] = []
        for router in self.routers:
            keys = router.route(ev)
            if keys:
                det = self.keyed.get(router.name)
                for key in keys:
                    if det is None:
                        routed.append((router.name, key))
                    else:
                        incidents.extend(det.feed_keyed(ev, key))
        if self.windows is None:
            return Emitted(incidents, [], tuple(routed)) if incidents or routed else NOTHING
        causes = self.causes
        if incidents:
            incidents = causes.track(incidents)
        closed = self.windows.feed(ev)
        if closed:
            incidents.extend(causes.learn(closed))
            return Emitted(incidents, closed, tuple(routed))
        return Emitted(incidents, [], tuple(routed)) if incidents or routed else NOTHING

    def feed_keyed(self, name: str, ev: Event, key: str) -> Emitted:
        """``ev`` routed to the fleet detector ``name`` under ``key`` (by a router
        in another engine: the worker's parse stage). Not a request's record here:
        it moves event time but goes into no request window."""
        incidents: list[dict] = []
        ev = self._clock(ev, incidents)
        det = self.keyed.get(name)
        if det is None:
            raise KeyError(f"no fleet detector {name!r} in this engine")
        incidents.extend(det.feed_keyed(ev, key))
        if incidents and self.causes is not None:
            incidents = self.causes.track(incidents)
        return Emitted(incidents, []) if incidents else NOTHING

    def advance(self, now: float) -> Emitted:
        """Time passed without events: windows close (their causes first),
        then detectors resolve quiet incidents and judge absences."""
        self._last_advance = now
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        closed: list[dict] = []
        incidents: list[dict] = []
        if self.windows is not None:
            closed = self.windows.advance(now)
            if closed:
                incidents.extend(self.causes.learn(closed))
        found: list[dict] = []
        for det in self.detectors:
            found.extend(det.advance(now))
        for router in self.routers:
            router.advance(now)
        if found:
            incidents.extend(self.causes.track(found) if self.causes is not None else found)
        return Emitted(incidents, closed)

    def flush(self) -> Emitted:
        """End of input: every window closes, and each detector says what
        the end means to it (an absence is never judged on it)."""
        incidents: list[dict] = []
        for det in self.detectors:
            incidents.extend(det.flush())
        closed: list[dict] = []
        if self.windows is not None:
            if incidents:
                incidents = self.causes.track(incidents)
            closed = self.windows.flush()
            if closed:
                incidents.extend(self.causes.learn(closed))
        return Emitted(incidents, closed)

    # -- state ----------------------------------------------------------------------
    def tracked_stores(self) -> dict[str, TrackedStore]:
        """The stores to save entry by entry rather than in ``snapshot()`` (their
        state grows with the traffic, not with what changes between two saves): the
        detectors' (``Detector.tracked_stores``), the request windows and link indexes,
        the root causes. By name."""
        stores: dict[str, TrackedStore] = {}
        for det in self.detectors:
            stores.update((f"{det.name}.{k}", v) for k, v in det.tracked_stores().items())
        if self.windows is not None:
            stores.update((f"windows.{k}", v) for k, v in self.windows.tracked_stores().items())
            stores.update((f"causes.{k}", v) for k, v in self.causes.tracked_stores().items())
        return stores

    def snapshot(self) -> dict:
        state = {
            "watermark": self.watermark,
            "last_advance": self._last_advance,
            "detectors": {d.name: d.snapshot() for d in self.detectors},
        }
        if self.routers:
            state["routers"] = {r.name: r.snapshot() for r in self.routers}
        if self.windows is not None:
            state["windows"] = self.windows.snapshot()
            state["causes"] = self.causes.snapshot()
        return state

    def restore(self, state: dict) -> None:
        self.watermark = state.get("watermark")
        self._last_advance = state.get("last_advance")
        for d in self.detectors:
            if d.name in state.get("detectors", {}):
                d.restore(state["detectors"][d.name])
        for r in self.routers:
            r.restore(state.get("routers", {}).get(r.name) or {})
        if self.windows is not None:
            if "windows" in state:
                self.windows.restore(state["windows"])
            if "causes" in state:
                self.causes.restore(state["causes"])
