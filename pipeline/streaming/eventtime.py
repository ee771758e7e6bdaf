"""Event time across many sources: per-source positions, the frontier they
allow, and the buffer that hands events to the detectors in timestamp order.

Why. ``osloscope analyze`` merges its files by timestamp, so its detectors
see one ordered stream. A worker reads whatever the shippers sent, in
whatever order: one host's shipper hours behind another, one file sent
after another, a source that goes quiet. Fed in arrival order, absence
detectors judged against a clock that ran ahead of the slowest host, and
the worker's incidents differed from ``analyze``'s on the same logs.

How. Each stage partition keeps, per *source*, the highest event time it
has delivered (``Sources``). The partition's *frontier* is the event time
up to which every source that still holds it back has delivered:

* parse stage: the sources are the files (host + path) in the raw
  partition. Their position is their highest timestamp minus ``slack``
  (lines of one file may be a little out of order).
* correlate stage: the sources are the upstream raw partitions; each tells
  its frontier in *watermark markers* it sends to every events partition.

The frontier is the minimum over the sources that hold it back:

* a source with nothing new for ``idle_timeout`` wall-clock seconds stops
  holding it back (a quiet API log must not stall the fleet); when it
  sends again, what it sends is late (see below). An upstream raw partition
  says itself when it holds nothing back (a marker "everything released"):
  one that said it holds and went silent has lost its worker, and is waited
  for ``upstream_timeout`` (longer than a failover: its new owner restores
  its state and goes on where it stopped);
* after a start (or a restore) nothing is released for ``warmup`` seconds,
  so sources that start a moment later are waited for;
* sources known to exist (``expected``: for the correlate stage, every raw
  partition) hold everything back until they are heard from, or for
  ``idle_timeout`` after the start if they stay quiet: a raw partition the
  worker has not reached yet must not be overtaken by the others;
* ``allowed_lateness`` bounds the wait in event time. While the input is
  live (its newest record is at most ``allowed_lateness`` old by the wall
  clock) the frontier never trails the newest record by more than that. A
  backfill (older logs, sent in any order: file after file, host after
  host) is held until it is ``allowed_lateness`` of event time behind the
  newest record or until every source went idle -- latency does not matter
  there, order does;
* when no source holds it back, everything buffered is released.

``Reorder`` holds events until the frontier passes them and releases them
sorted by (timestamp, file, host), the order ``analyze`` merges its files
in. An event older than the frontier already released is *late*: it is
passed on at once (it still counts: counts, evidence, a resolve), counted
with its lateness; never dropped. Past ``max_buffered`` events the oldest
are released early (counted). An event whose timestamp is more than
``max_future`` seconds ahead of the wall clock never moves a source's
position (one line from the year 9999 must not switch the absence
detectors off): it is passed on at once and counted.
"""
from __future__ import annotations

import heapq

from pipeline.streaming.journal import Journal
from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True)
class EventTimeConfig:
    idle_timeout: float = 30.0         # wall-clock seconds after which a quiet source stops holding
    upstream_timeout: float = 120.0    # ... an upstream partition that said it holds (a failover)
    allowed_lateness: float = 7200.0   # event-time seconds the frontier may trail the newest record
    slack: float = 10.0                # event-time seconds a file's lines may be out of order
    warmup: float = 10.0               # wall-clock seconds nothing is released after a start
    max_future: float = 86400.0        # seconds ahead of the wall clock a timestamp may be
    max_buffered: int = 200_000        # events held per partition at most

    @classmethod
    def of(cls, worker) -> "EventTimeConfig":
        """From the ``[worker]`` settings."""
        return cls(idle_timeout=worker.source_idle_timeout, upstream_timeout=worker.upstream_timeout,
                   allowed_lateness=worker.allowed_lateness,
                   slack=worker.source_slack, warmup=worker.source_warmup,
                   max_future=worker.max_future, max_buffered=worker.max_buffered)


class Sources:
    """Per-source positions and the frontier they allow (see the module docstring).

    ``saw(key, position, wall)`` records a source's new position (its highest
    timestamp, or for an upstream partition the frontier it announced);
    ``done(key, wall)`` says the source has nothing left to hold back (an
    upstream that released everything). Wall-clock times restart on restore.
    """

    def __init__(self, config: EventTimeConfig, *, slack: float = 0.0, backfill: bool = True,
                 silent_timeout: float | None = None) -> None:
        self.config = config
        self.slack = slack
        self.backfill = backfill
        # how long a source heard from holds back once silent (default: idle_timeout)
        self.silent_timeout = config.idle_timeout if silent_timeout is None else silent_timeout
        self.pos: dict[str, float] = {}        # source -> position (event time)
        self.wall: dict[str, float] = {}       # source -> wall clock of its last news
        self.idle: set[str] = set()            # sources that stopped holding
        self.started: float | None = None
        self.expected: tuple[str, ...] = ()    # sources that hold back before they are heard from

    def saw(self, key: str, position: float, wall: float) -> None:
        if self.started is None:
            self.started = wall
        old = self.pos.get(key)
        if old is None or position > old:
            self.pos[key] = position
        if wall >= self.wall.get(key, wall):
            self.wall[key] = wall
            self.idle.discard(key)

    def heard(self, key: str, wall: float) -> None:
        """The source is alive (it sent something) but says nothing of its position:
        one never placed holds everything back until it is (``saw``)."""
        if self.started is None:
            self.started = wall
        if key not in self.pos:
            self.pos[key] = -INF
        if wall >= self.wall.get(key, wall):
            self.wall[key] = wall
            self.idle.discard(key)

    def done(self, key: str, wall: float) -> None:
        """The source holds nothing back (an upstream that released everything, or one
        with nothing to read): an ``expected`` one no longer needs to be waited for."""
        if self.started is None:
            self.started = wall
        if key not in self.pos:
            self.pos[key] = -INF
        self.wall[key] = wall
        self.idle.add(key)

    def frontier(self, wall: float, epoch: float) -> float | None:
        """Event time up to which everything may be released; None: everything
        (no source holds back). ``wall`` is the monotonic clock of ``saw``,
        ``epoch`` the wall clock as Unix time (to tell live input from a backfill)."""
        if self.started is None:
            return None
        if wall - self.started < self.config.warmup:
            return -INF
        timeout = self.config.idle_timeout
        if wall - self.started < timeout and any(k not in self.pos for k in self.expected):
            return -INF                                  # a known source not heard from yet
        silent = self.silent_timeout
        holding = [p for k, p in self.pos.items()
                   if k not in self.idle and wall - self.wall.get(k, wall) < silent]
        if not holding:
            return None
        low = min(holding) - self.slack
        newest = max(holding)
        lateness = self.config.allowed_lateness
        if newest >= epoch - lateness or not self.backfill:
            return max(low, newest - lateness)           # live: never wait more than that
        return min(low, newest - lateness)               # backfill: order matters, not latency

    def snapshot(self) -> dict:
        return {"pos": {k: (None if v == -INF else v) for k, v in self.pos.items()},
                "idle": sorted(self.idle)}

    def restore(self, state: dict, wall: float) -> None:
        self.pos = {k: (-INF if v is None else float(v)) for k, v in state.get("pos", {}).items()}
        self.idle = set(state.get("idle", ())) & set(self.pos)
        self.wall = dict.fromkeys(self.pos, wall)
        self.started = wall if self.pos else None


class Reorder:
    """Events held until the frontier passes them (see the module docstring).

    Items are opaque to the buffer: ``push(ts, order, item)`` with ``order``
    the tie-break (file, host); ``release(frontier)`` returns the items due,
    in order. ``stats``: late, late_max_seconds, future, forced.

    Every item held is a record of the partition's journal (journal.py): the
    worker writes it to the changelog once, at the first save while it is held,
    and deletes it once after it is released; a save costs what changed, not
    what is held.
    """

    def __init__(self, config: EventTimeConfig, journal: Journal | None = None) -> None:
        self.config = config
        self.journal = journal or Journal()
        self.heap: list = []                       # (ts, order, seq, item)
        self.released = -INF                       # highest frontier released so far
        self.stats = {"late": 0, "late_max_seconds": 0.0, "future": 0, "forced": 0}

    def __len__(self) -> int:
        return len(self.heap)

    def _out(self, entry: tuple):
        """``entry`` leaves the buffer (and the journal); its item."""
        self.journal.drop(entry[2])
        return entry[3]

    def push(self, ts: float | None, order: tuple, item, epoch: float) -> list:
        """Hold ``item``; returns what must go on at once (itself if late,
        untimed or from the far future, the oldest held if over the cap)."""
        if ts is None:
            return [item]
        if ts > epoch + self.config.max_future:
            self.stats["future"] += 1
            return [item]
        if ts < self.released:
            self.stats["late"] += 1
            lag = self.released - ts
            if lag > self.stats["late_max_seconds"]:
                self.stats["late_max_seconds"] = round(lag, 3)
            return [item]
        heapq.heappush(self.heap, (ts, order, self.journal.add(Held(ts, order, item)), item))
        out = []
        while len(self.heap) > self.config.max_buffered:
            first = heapq.heappop(self.heap)
            self.stats["forced"] += 1
            self.released = max(self.released, first[0])
            out.append(self._out(first))
        return out

    def release(self, frontier: float | None) -> list:
        """The held items at or before ``frontier`` (all of them for None), in order."""
        heap = self.heap
        out = []
        if frontier is None:
            while heap:
                entry = heapq.heappop(heap)
                self.released = max(self.released, entry[0])
                out.append(self._out(entry))
            return out
        while heap and heap[0][0] <= frontier:
            out.append(self._out(heapq.heappop(heap)))
        if frontier > self.released:
            self.released = frontier
        return out

    def items(self) -> list:
        """(ts, order, item) of what is held, in order."""
        return [(ts, order, item) for ts, order, _s, item in sorted(self.heap)]

    def restore(self, items: list) -> None:
        """Back to a saved buffer (``released`` set first): (seq, ts, order, item) of the
        items held (the journal is restored by its owner)."""
        self.heap = [(ts, tuple(order), seq, item) for seq, ts, order, item in items]
        heapq.heapify(self.heap)


class Held(tuple):
    """A journal record of a held event: (ts, order, item)."""

    def __new__(cls, ts, order, item):
        return super().__new__(cls, (ts, order, item))
