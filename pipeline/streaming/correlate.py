"""The correlate stage: events topic -> request-scoped detectors (request
windows, retry exhaustion, root causes) -> incidents; events and request
summaries handed to the sink.

One engine per events partition: the topic is keyed by request id, so a
request's events, and its window, live in one partition. Events are
indexed as they arrive, and held for the detectors until every upstream
raw partition has released everything up to them (its watermark markers
say so; eventtime.py): the detectors see them in timestamp order, as
``analyze`` would. A partition's state: its engine, the ids of its recent
events, the upstream positions, the events held, the idle clock's event
time and the last offset. The engine's request windows, link indexes and
root causes are saved entry by entry (stage.py, ``before_save``): a save
rewrites the windows that got events since the last one, not every open one.

Events routed to a fleet detector (a shared cause, a new error template:
detectors/engine.py) arrive a second time, keyed by their fleet key with the
detector's name in a header: the partition that owns the key holds them
like the others and hands them to that detector only (not indexed again,
no request window).

The parse stage may emit a batch twice (its outputs were acknowledged but
its snapshot was not written); the ids of recent events (bounded) let this
stage drop the second copy, so detector counts stay exact.
"""
from __future__ import annotations

import time

from pipeline import codec, signatures
from pipeline.streaming.journal import Seen, SeenWindow
from pipeline.streaming.stage import (FLEET_HEADER, MARKER_HEADER, UPSTREAM_HEADER, Output, PartitionState,
                                      RawMessage, Stage, fleet_key_of, partition_of, read_marker)

# CorrelateStage remembers the ids of this many recent events per batch size:
# a duplicate is at most one parse batch (plus idle flushes) behind its original
SEEN_PER_BATCH = 4


class Routed:
    """A held event routed to fleet detector ``name`` under ``key``."""

    __slots__ = ("ev", "name", "key")

    def __init__(self, ev, name: str, key: str) -> None:
        self.ev, self.name, self.key = ev, name, key


class CorrelatePartition(PartitionState):
    """One events partition's recent event ids, besides its engine."""

    def __init__(self, engine, config, seen_max: int) -> None:
        super().__init__(engine, config, slack=0.0, backfill=False, silent_timeout=config.upstream_timeout)
        self.seen = SeenWindow(seen_max, self.journal)

    def is_new(self, eid: str) -> bool:
        """False for an event already seen; remembers ``eid`` otherwise."""
        return self.seen.is_new(eid)

    def item_state(self, item) -> list:
        if isinstance(item, Routed):
            return [codec.event_to_doc(item.ev), item.ev.ts, item.name, item.key]
        return [codec.event_to_doc(item), item.ts]

    def item_from_state(self, state):
        ev = codec.event_from_doc({**state[0], "_ts": state[1]})
        return Routed(ev, state[2], state[3]) if len(state) > 2 else ev

    def before_save(self) -> None:
        self.seen.seal()
        super().before_save()

    def record(self, obj) -> bytes:
        if isinstance(obj, Seen):
            return codec.dumps({"seen": obj})
        return super().record(obj)

    def restore_records(self, docs: list[tuple[int, object]]) -> list[int]:
        seen, rest = [], []
        for seq, doc in docs:
            (seen if isinstance(doc, dict) and "seen" in doc else rest).append((seq, doc))
        self.seen.restore([(seq, doc["seen"]) for seq, doc in seen])
        return super().restore_records(rest)


class CorrelateStage(Stage):
    name = "correlate"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.seen_max = SEEN_PER_BATCH * settings.worker.batch_size + 1000
        # the raw partitions ("topic/N") whose markers to wait for (set by the worker)
        self.upstreams: list[str] = []
        self.stats.update(duplicates=0, events_indexed=0, bad_records=0, requests_out=0, markers=0)

    def new_partition(self) -> CorrelatePartition:
        part = CorrelatePartition(signatures.engine("request", self.settings), self.eventtime, self.seen_max)
        part.sources.expected = tuple(self.upstreams)
        return part

    def process(self, messages: list[RawMessage], now: float, sink=None, epoch: float | None = None) -> Output:
        """``sink`` says which events to index and builds the actions (None: nothing to index).
        ``now``: the monotonic clock; ``epoch``: the wall clock (Unix time)."""
        out = Output()
        epoch = time.time() if epoch is None else epoch
        touched: dict[str, CorrelatePartition] = {}
        for tp, part, msg in self._new_messages(messages, epoch, touched):
            if MARKER_HEADER in msg.headers:
                try:
                    upstream, frontier = read_marker(msg.value)
                except Exception as exc:
                    self._bad("watermark marker", msg, exc, out)
                    continue
                self.stats["markers"] += 1
                if frontier is None:
                    part.sources.done(upstream, now)
                else:
                    part.sources.saw(upstream, frontier, now)
                continue
            try:
                doc, eid, ts = codec.read_event_record(msg.value)
            except Exception as exc:
                self._bad("event record", msg, exc, out)
                continue
            routed = msg.headers.get(FLEET_HEADER)
            if routed is not None:
                try:
                    name, fleet_key = fleet_key_of(msg.key or b"")
                    if name not in part.engine.keyed:
                        raise ValueError(f"no fleet detector {name!r}")
                except Exception as exc:
                    self._bad("routed event", msg, exc, out)
                    continue
                eid = f"{eid}\x1f{name}\x1f{fleet_key}"
            if not part.is_new(eid):
                self.stats["duplicates"] += 1
                continue
            if sink is not None and routed is None:
                actions = sink.event_actions(doc, eid, ts)
                out.es_actions.extend(actions)
                self.stats["events_indexed"] += len(actions)
            ev = codec.event_from_doc({**doc, "_ts": ts})
            upstream = msg.headers.get(UPSTREAM_HEADER, b"?").decode("utf-8", "replace")
            # only markers move an upstream's position: they follow every event (and routed
            # copy) of a delivery, while the events of one delivery reach this partition
            # interleaved with other partitions' and may be cut into several batches here
            part.sources.heard(upstream, now)
            item = ev if routed is None else Routed(ev, name, fleet_key)
            for due in part.held.push(ts, (ev.file_path or "", ev.host or ""), item, epoch):
                self._pass(part, due, out, now, sink)
        for tp, part in touched.items():
            self._release(tp, part, out, now, epoch, sink)
        return out

    def _bad(self, what: str, msg: RawMessage, exc: Exception, out: Output) -> None:
        """A record this stage cannot read: to the dead letters, with the reason."""
        self.stats["bad_records"] += 1
        out.deadletters.append(codec.dead_letter_doc(
            f"bad {what} on {partition_of(msg)}@{msg.offset}: {exc}", msg.value,
            kafka=codec.kafka_position(msg.topic, msg.partition, msg.offset)))

    def _release(self, tp: str, part: CorrelatePartition, out: Output, now: float, epoch: float,
                 sink) -> None:
        due = part.held.release(part.sources.frontier(now, epoch))
        for ev in due:
            self._pass(part, ev, out, now, sink)
        if due:
            self._dirty.add(tp)

    def _pass(self, part: CorrelatePartition, item, out: Output, now: float, sink) -> None:
        if isinstance(item, Routed):
            if item.ev.ts is not None:
                part.idle.saw(now, item.ev.ts)
            self._emitted(part.engine.feed_keyed(item.name, item.ev, item.key), out, sink)
            return
        if item.ts is not None:
            part.idle.saw(now, item.ts)
        self._emitted(part.engine.feed(item), out, sink)

    def tick(self, now: float, sink=None, epoch: float | None = None) -> Output:
        out = Output()
        epoch = time.time() if epoch is None else epoch
        for tp, part in self.parts.items():
            part.engine.limit_future(epoch, self.eventtime.max_future)
            self._release(tp, part, out, now, epoch, sink)
            if part.held:
                continue
            virtual = part.idle.virtual_now(now, part.engine.watermark)
            if virtual is not None:
                self._emitted(part.engine.advance(virtual), out, sink)
                self._dirty.add(tp)
        return out
