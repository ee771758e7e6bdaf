"""The detector contract and the bounded incident book every detector uses.

A detector is a synchronous state machine (see ../shared/DESIGN.md):

* ``feed(event) -> list[dict]``   incident documents opened or updated by it;
* ``advance(now) -> list[dict]``  time passed (event watermark or timer):
  incidents quiet for their type's period resolve, keyed state expires;
* ``flush() -> list[dict]``       end of input: what the end means to the
  detector (nothing is judged absent because a file ends);
* ``snapshot() -> dict`` / ``restore(dict)``  JSON-safe state.

Time arrives only as an argument. Outputs are returned, never stored for
someone to drain.
"""
from __future__ import annotations

from typing import Callable

from .incident import Incident
from .model import Event
from .store import KeyedStore, TrackedStore


class IncidentBook:
    """Open incidents by key, bounded, resolved after a quiet period.

    An incident whose last occurrence is older than ``quiet_period`` seconds
    resolves on the next ``advance``; the same key occurring later opens a new
    incident (new window start, so a new id). Past ``max_open`` incidents the
    least recently touched one is forgotten, never reported "resolved": its
    last version (open) stands; ``open.evicted`` counts them.
    """

    def __init__(self, quiet_period: float, max_open: int = 10_000) -> None:
        self.quiet_period = quiet_period
        self.max_open = max_open
        self.open: KeyedStore[tuple, Incident] = KeyedStore(max_open)

    def get(self, key: tuple, ts: float | None = None) -> Incident | None:
        inc = self.open.get(key)
        if inc is not None and ts is not None and ts - inc.last_ts > self.quiet_period:
            return None
        return inc

    def touch(self, key: tuple, ts: float, factory: Callable[[], Incident],
              out: list[dict]) -> Incident:
        """The open incident for ``key``; a new one if none or gone quiet.

        A stale incident (quiet longer than its period) is resolved into
        ``out`` first, so a recurrence always opens a fresh incident.
        """
        inc = self.open.get(key)
        if inc is not None and ts - inc.last_ts > self.quiet_period:
            out.append(self._resolve(key))
            inc = None
        if inc is None:
            inc = factory()
            self.open.put(key, inc)          # past max_open the least recent is forgotten
        else:
            self.open.touch(key)
        return inc

    def rekey(self, old: tuple, new: tuple, out: list[dict]) -> Incident:
        """The open incident of ``old`` goes on under ``new`` (its id unchanged);
        an incident of ``new`` that is still in the book (gone quiet, not yet
        resolved) is resolved into ``out`` first."""
        if new in self.open:
            out.append(self._resolve(new))
        inc = self.open.pop(old)
        inc.key = new
        self.open.put(new, inc)
        return inc

    def _resolve(self, key: tuple) -> dict:
        inc = self.open.pop(key)
        inc.status = "resolved"
        return inc.to_doc()

    def advance(self, now: float) -> list[dict]:
        stale = [k for k, inc in self.open.items() if now - inc.last_ts > self.quiet_period]
        return [self._resolve(k) for k in stale]

    def tracked(self) -> TrackedStore:
        """The open incidents saved one by one from now on (``snapshot`` is empty then)."""
        self.open = TrackedStore.of(self.open, Incident.to_state, Incident.from_state, check=True)
        return self.open

    def snapshot(self) -> list[dict]:
        return [st for _k, st in self.open.snapshot(Incident.to_state)]

    def restore(self, states: list[dict]) -> None:
        self.open.restore([(st["key"], st) for st in states], Incident.from_state)


class Detector:
    """Base class: subclasses implement ``feed`` and may extend the rest."""

    name = "detector"
    quiet_period = 1800.0

    def __init__(self) -> None:
        self.book = IncidentBook(self.quiet_period)

    def feed(self, ev: Event) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def advance(self, now: float) -> list[dict]:
        return self.book.advance(now)

    def flush(self) -> list[dict]:
        """End of input: open incidents stay open (a log that ends proves nothing)."""
        return []

    def snapshot(self) -> dict:
        return {"incidents": self.book.snapshot()}

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))

    def tracked_stores(self) -> dict[str, TrackedStore]:
        """The stores to save one entry at a time rather than in ``snapshot()`` (they
        leave it from now on), by name: those whose state grows with the traffic and
        can be read back alone (nothing else is derived from them in ``restore``)."""
        return {"incidents": self.book.tracked()}


class FleetDetector(Detector):
    """A detector whose state is keyed by a fleet-wide key -- a shared cause
    (a database server, a broker, a keystone URL), a new error template --
    that no host and no request owns. Its events come only through
    ``feed_keyed``, chosen by the ``Router`` of the same ``name`` (see
    detectors/engine.py); ``feed`` takes nothing. State per key must not
    depend on other keys: the worker spreads the keys over partitions."""

    def feed(self, ev: Event) -> list[dict]:
        return []

    def feed_keyed(self, ev: Event, key: str) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError


class Router:
    """Says which keys of the fleet detector ``name`` an event goes to. Runs
    where the host's records are, in their order: it may keep per-host state
    (``snapshot``/``restore``, JSON-safe) and learn from every record."""

    name = "router"

    def route(self, ev: Event) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def advance(self, now: float) -> None:
        """Event time passed (expire what a bounded router keeps)."""

    def snapshot(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass
