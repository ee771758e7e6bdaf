"""What the worker's stages share: their input and output records, where a
raw record comes from, and state kept per input partition.

A stage keeps one independent state per input partition ("topic/partition"),
created on the partition's first message: parsers, detector engine, the last
processed offset, the positions of its sources and the events held for
their turn (eventtime.py). ``snapshot(partition)`` is that state as
versioned JSON (``pipeline.codec.state``); ``restore(partition, data, now)``
brings it back, and ``process()`` then skips input at or below the
restored offset, so a restart neither loses nor double-counts. ``dirty()``
names the partitions changed since they were last ``saved()``: the worker
writes those to the stage's changelog topic (changelog.py) before it acks,
and reads a partition's state back when the partition is assigned to it.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from detectors.store import key_from_json
from pipeline import codec
from pipeline.parsing.extract import Source
from pipeline.parsing.naming import service_from_path
from pipeline.streaming.eventtime import EventTimeConfig, Held, Reorder, Sources
from pipeline.streaming.journal import Entry, Journal

# 1 was one pickle per stage; 2 had no event-time state; 3 no fleet routing; 4 held events in the head;
# 5 request windows and root causes in the head; 6 the detectors' incidents and keyed stores
STATE_VERSION = 7
# a tracked store's entry is written again once this many times the number of entries were
# written after it (at least REFRESH_MIN): a restore reads the changelog from the oldest record
# the state needs, so no record may stay needed for ever (a quiet link index entry would)
REFRESH = 4
REFRESH_MIN = 1024
log = logging.getLogger("osloscope.worker")

MARKER_EVERY = 5.0         # seconds between repeated watermark markers of an unchanged frontier


@dataclass
class RawMessage:
    """One record of an input topic, whoever wrote it."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


# headers of the events topic: the raw partition an event came from, watermark markers,
# and the fleet detector a routed copy of an event is for (its Kafka key is the fleet key)
UPSTREAM_HEADER = "osloscope-upstream"
MARKER_HEADER = "osloscope-marker"
FLEET_HEADER = "osloscope-fleet"


def fleet_record_key(name: str, key: str) -> bytes:
    """The events-topic key of an event routed to fleet detector ``name`` under ``key``."""
    return f"{name}\x1f{key}".encode("utf-8", "surrogatepass")


def fleet_key_of(record_key: bytes) -> tuple[str, str]:
    """(fleet detector name, key) of ``fleet_record_key``; ValueError if not one."""
    name, sep, key = record_key.decode("utf-8", "surrogatepass").partition("\x1f")
    if not sep:
        raise ValueError("a routed event's key must be '<detector>\\x1f<key>'")
    return name, key


@dataclass
class Output:
    events: list[tuple[bytes, bytes, str]] = field(default_factory=list)   # (key, json, upstream)
    incidents: list[dict] = field(default_factory=list)
    deadletters: list[dict] = field(default_factory=list)
    es_actions: list[dict] = field(default_factory=list)
    # (upstream partition, marker JSON): to every events partition, after the events
    markers: list[tuple[str, bytes]] = field(default_factory=list)
    # events routed to a fleet detector: (fleet record key, json, upstream, detector name)
    fleet: list[tuple[bytes, bytes, str, str]] = field(default_factory=list)

    def extend(self, other: "Output") -> None:
        self.events.extend(other.events)
        self.fleet.extend(other.fleet)
        self.incidents.extend(other.incidents)
        self.deadletters.extend(other.deadletters)
        self.es_actions.extend(other.es_actions)
        self.markers.extend(other.markers)

    def __bool__(self) -> bool:
        return bool(self.events or self.incidents or self.deadletters or self.es_actions
                    or self.markers or self.fleet)


def marker(upstream: str, frontier: float | None) -> bytes:
    """A watermark marker: ``upstream`` released every event up to ``frontier``
    (None: it holds nothing back; -inf travels as ``"holding": true`` alone)."""
    if frontier is None:
        return codec.dumps({"marker": "watermark", "upstream": upstream, "holding": False})
    if frontier == float("-inf"):
        return codec.dumps({"marker": "watermark", "upstream": upstream, "holding": True})
    return codec.dumps({"marker": "watermark", "upstream": upstream, "holding": True,
                        "frontier": frontier})


def read_marker(value: bytes) -> tuple[str, float | None]:
    """(upstream, frontier) of a marker; frontier None: holds nothing back. ValueError if not one."""
    doc = codec.loads(value)
    if not isinstance(doc, dict) or doc.get("marker") != "watermark" or not isinstance(doc.get("upstream"), str):
        raise ValueError("not a watermark marker")
    if not doc.get("holding"):
        return doc["upstream"], None
    f = doc.get("frontier")
    return doc["upstream"], float(f) if isinstance(f, (int, float)) else float("-inf")


def partition_of(msg: RawMessage) -> str:
    return f"{msg.topic}/{msg.partition}"


@lru_cache(maxsize=4096)
def _header_source(host: bytes, path: bytes, service: bytes) -> Source:
    """The Source of ``osloscope ship`` headers (a few files send most lines)."""
    h = host.decode("utf-8", "replace") or None
    p = path.decode("utf-8", "replace") or None
    svc = service.decode("utf-8", "replace") or (service_from_path(p) if p else None)
    return Source(h, svc, p)


def source_of(msg: RawMessage) -> tuple[Source, int | None]:
    """Host, service, file and byte offset of a raw record.

    ``osloscope ship`` sets headers; other shippers send a JSON envelope (the
    parser unwraps it) or a bare line, keyed by host, ``host|path`` or not at all.
    """
    h = msg.headers
    if "host" in h or "path" in h:
        try:
            offset = int(h["offset"]) if "offset" in h else None
        except ValueError:
            offset = None
        return _header_source(h.get("host", b""), h.get("path", b""), h.get("service", b"")), offset
    if msg.key:
        key = msg.key.decode("utf-8", "replace")
        host, sep, path = key.partition("|")
        if sep:
            return Source(host or None, service_from_path(path) if path else None, path or None), None
        return Source(host or None, None, f"kafka:{msg.topic}/{msg.partition}"), None
    return Source(None, None, f"kafka:{msg.topic}/{msg.partition}"), None


class IdleClock:
    """Event time from the wall clock while no events arrive.

    While events flow, time is their watermark. After ``IDLE_AFTER`` seconds
    without any, time moves on as watermark + wall-clock seconds since the
    last event, so quiet incidents still resolve and windows still close on
    a stream that has gone silent -- but never jumps ahead of a backlog being
    replayed (events keep arriving then). Only the event time is state: the
    wall clock restarts when a snapshot is restored.
    """

    IDLE_AFTER = 5.0

    def __init__(self, event_ts: float | None = None, wall: float | None = None) -> None:
        self.event_ts = event_ts
        self.wall = wall if event_ts is not None else None

    def saw(self, wall: float, ts: float) -> None:
        self.wall = wall
        if self.event_ts is None or ts > self.event_ts:
            self.event_ts = ts

    def virtual_now(self, wall: float, watermark: float | None) -> float | None:
        if self.wall is None or self.event_ts is None or wall - self.wall < self.IDLE_AFTER:
            return None
        virtual = self.event_ts + (wall - self.wall)
        if watermark is not None and virtual <= watermark:
            return None
        return virtual


class PartitionState:
    """What a stage keeps for every input partition: its detector engine, the
    idle clock's event time, the last offset processed, the positions of its
    sources and the events held until they pass (eventtime.py); subclasses add theirs."""

    def __init__(self, engine, config: EventTimeConfig, *, slack: float, backfill: bool,
                 silent_timeout: float | None = None) -> None:
        self.engine = engine
        self.idle = IdleClock()
        self.offset = -1
        self.sources = Sources(config, slack=slack, backfill=backfill, silent_timeout=silent_timeout)
        self.journal = Journal()                     # what is saved record by record (journal.py)
        self.held = Reorder(config, self.journal)
        self.stores = engine.tracked_stores()        # the engine's stores saved entry by entry
        self.entries: OrderedDict[Entry, int] = OrderedDict()   # entry -> seq of its record, oldest first
        self.last_marker: tuple | None = None        # (frontier sent, monotonic time sent)

    def item_state(self, item):  # pragma: no cover - abstract
        raise NotImplementedError

    def item_from_state(self, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_state(self) -> dict:
        """The head of the state: all of it but the journal's records (saved one by one)."""
        released = self.held.released
        return {"offset": self.offset, "idle_event_ts": self.idle.event_ts,
                "engine": self.engine.snapshot(), "sources": self.sources.snapshot(),
                "released": None if released == float("-inf") else released,
                "next_seq": self.journal.next_seq}

    def before_save(self) -> None:
        """Put what changed since the last save into the journal: each entry of a tracked
        store changed (or gone) since replaces its record; the entries whose record is older
        than REFRESH times their number of records are written again. Subclasses add theirs."""
        entries, journal = self.entries, self.journal
        for name, store in self.stores.items():
            for key in store.changes():
                entry = Entry(name, key)
                seq = entries.pop(entry, None)
                if seq is not None:
                    journal.drop(seq)
                if key in store:
                    entries[entry] = journal.add(entry)
        floor = journal.next_seq - max(REFRESH_MIN, REFRESH * len(entries))
        while entries:
            entry, seq = next(iter(entries.items()))
            if seq >= floor:
                break
            del entries[entry]
            journal.drop(seq)
            entries[entry] = journal.add(entry)

    def record(self, obj) -> bytes:
        """A journal record as saved: a held event as JSON [ts, order, item state], an entry
        of a tracked store as {"entry": store, "e": [key, when last used, value]}."""
        if isinstance(obj, Held):
            ts, order, item = obj
            return codec.dumps([ts, list(order), self.item_state(item)])
        if isinstance(obj, Entry):
            return codec.dumps({"entry": obj.store, "e": self.stores[obj.store].entry(obj.key)})
        raise TypeError(f"no journal record of type {type(obj).__name__}")

    def restore_records(self, docs: list[tuple[int, object]]) -> list[int]:
        """The journal's records read back, (seq, decoded JSON) in seq order: held events
        and tracked stores' entries here; subclasses take theirs out first. The seqs of
        entries of stores this engine no longer has (a signature retired since): to delete."""
        items, loads = [], {name: [] for name in self.stores}
        retired: dict[str, list[int]] = {}
        for seq, doc in docs:
            if isinstance(doc, dict):
                name = doc["entry"]
                if name not in loads:
                    retired.setdefault(name, []).append(seq)
                    continue
                loads[name].append(doc["e"])
                self.entries[Entry(name, key_from_json(doc["e"][0]))] = seq
            else:
                ts, order, it = doc
                items.append((seq, ts, order, self.item_from_state(it)))
        for name, entries in loads.items():
            self.stores[name].load(entries)
        self.held.restore(items)
        for name, seqs in retired.items():
            log.warning("saved state of %s (%d entries) dropped: the detectors have no such store now "
                        "(a signature retired or renamed since)", name, len(seqs))
        return [seq for seqs in retired.values() for seq in seqs]

    def restore(self, state: dict, now: float, records: dict[int, bytes], next_seq: int = 0) -> None:
        """Back to ``to_state``'s state and its journal ``records`` (seq -> ``record``);
        ``now`` restarts the idle clock, ``next_seq``: the first seq never used."""
        self.offset = state["offset"]
        self.idle = IdleClock(state["idle_event_ts"], now)
        self.engine.restore(state["engine"])
        self.sources.restore(state.get("sources", {}), now)
        released = state.get("released")
        self.held.released = float("-inf") if released is None else released
        retired = self.restore_records([(seq, codec.loads(data)) for seq, data in sorted(records.items())])
        self.journal.restored(records, max(next_seq, state.get("next_seq", 0)))
        for seq in retired:
            self.journal.drop(seq)              # deleted by the next save


class Stage:
    """Per-partition state, replay skipping and snapshots; subclasses say
    what a partition's state is (``new_partition``: a PartitionState)."""

    name = "stage"

    def __init__(self, settings) -> None:
        self.settings = settings
        self.parts: dict[str, PartitionState] = {}      # "topic/partition" -> its state
        self._dirty: set[str] = set()
        self.stats: dict[str, int] = {"records_in": 0, "skipped_replay": 0, "incidents_out": 0}
        self.eventtime = EventTimeConfig.of(settings.worker)

    # -- partitions --------------------------------------------------------------
    def new_partition(self) -> PartitionState:  # pragma: no cover - abstract
        raise NotImplementedError


    def partitions(self) -> list[str]:
        """The input partitions this stage holds state for."""
        return list(self.parts)

    def partition(self, tp: str) -> PartitionState:
        """The state of partition ``tp`` ("topic/partition"), fresh if it has none yet."""
        part = self.parts.get(tp)
        if part is None:
            part = self.parts[tp] = self.new_partition()
        return part

    @property
    def offsets(self) -> dict[str, int]:
        return {tp: part.offset for tp, part in self.parts.items()}

    def drop(self, tp: str) -> None:
        """Forget partition ``tp`` (it went to another worker, or its state is
        reloaded): the next message of it starts from fresh or restored state."""
        self.parts.pop(tp, None)
        self._dirty.discard(tp)

    def dirty(self) -> list[str]:
        """The partitions changed since they were last ``saved`` (to save before acking)."""
        return sorted(self._dirty)

    def saved(self, tp: str) -> None:
        """Partition ``tp``'s head and ``changes`` were written."""
        self._dirty.discard(tp)
        part = self.parts.get(tp)
        if part is not None:
            part.journal.saved()

    def _fresh(self, msg: RawMessage) -> PartitionState | None:
        """The message's partition state if it is new input, None if already processed."""
        tp = partition_of(msg)
        part = self.partition(tp)
        if msg.offset <= part.offset:
            self.stats["skipped_replay"] += 1
            return None
        part.offset = msg.offset
        self._dirty.add(tp)
        self.stats["records_in"] += 1
        return part

    def _new_messages(self, messages: list[RawMessage], epoch: float, touched: dict):
        """(partition, its state, message) of each message not processed yet;
        ``touched`` collects the partitions seen, whose engines now know the wall
        clock (``epoch``) beyond which a timestamp is implausible."""
        for msg in messages:
            part = self._fresh(msg)
            if part is None:
                continue
            tp = partition_of(msg)
            if tp not in touched:
                touched[tp] = part
                part.engine.limit_future(epoch, self.eventtime.max_future)
            yield tp, part, msg

    # -- state -------------------------------------------------------------------
    def snapshot(self, tp: str) -> bytes:
        """Partition ``tp``'s state but its held events, as versioned JSON."""
        return codec.pack_state(self.name, STATE_VERSION, tp, self.parts[tp].to_state())

    def changes(self, tp: str) -> tuple[list[tuple[int, bytes]], list[int]]:
        """Partition ``tp``'s journal since it was last ``saved``: (seq, record) of the
        records added since (held events, seen ids), and the seqs of saved ones gone since."""
        part = self.parts[tp]
        part.before_save()
        fresh, gone = part.journal.changes()
        return [(seq, part.record(obj)) for seq, obj in fresh], gone

    def restore(self, tp: str, data: bytes, now: float, records: dict[int, bytes] | None = None,
                next_seq: int = 0) -> None:
        """Partition ``tp``'s state from ``snapshot``'s bytes and its journal records (seq ->
        bytes, from ``changes``); ``now`` restarts the idle timers. StateRefused for another
        format, version, stage or partition (the partition then stays as it was)."""
        state = codec.unpack_state(data, self.name, STATE_VERSION, tp)
        part = self.new_partition()
        part.restore(state, now, records or {}, next_seq)
        self.parts[tp] = part

    # -- event time ---------------------------------------------------------------
    def eventtime_stats(self) -> dict:
        """Late, far-future and early-released events summed over the partitions,
        and the events held now."""
        out = {"late": 0, "late_max_seconds": 0.0, "future": 0, "forced": 0, "held": 0}
        for part in self.parts.values():
            st = part.held.stats
            for k in ("late", "future", "forced"):
                out[k] += st[k]
            out["late_max_seconds"] = max(out["late_max_seconds"], st["late_max_seconds"])
            out["held"] += len(part.held)
        return out

    def _marker(self, tp: str, part: PartitionState, frontier: float | None, now: float,
                out: Output, force: bool) -> None:
        """A watermark marker for ``tp`` when its frontier changed, and every MARKER_EVERY
        seconds while it holds anything back."""
        last = part.last_marker
        # repeated while the partition holds the others back (or they would stop waiting for it)
        every = min(MARKER_EVERY, self.eventtime.idle_timeout / 3)
        repeat = frontier is not None and now - last[1] >= every if last is not None else True
        if force or last is None or last[0] != frontier or repeat:
            part.last_marker = (frontier, now)
            out.markers.append((tp, marker(tp, frontier)))

    # -- outputs -----------------------------------------------------------------
    def _incidents(self, docs: list[dict], out: Output) -> None:
        if docs:
            latest = list({d["id"]: d for d in docs}.values())     # one version per incident: the last
            out.incidents.extend(latest)
            self.stats["incidents_out"] += len(latest)

    def _emitted(self, emitted, out: Output, sink=None) -> None:
        """An engine's output: incidents, and request summaries to index."""
        self._incidents(emitted.incidents, out)
        if emitted.requests:
            self.stats["requests_out"] = self.stats.get("requests_out", 0) + len(emitted.requests)
            if sink is not None:
                out.es_actions.extend(sink.request_action(s) for s in emitted.requests)
