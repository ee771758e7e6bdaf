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
time and the last offset.

The parse stage may emit a batch twice (its outputs were acknowledged but
its snapshot was not written); the ids of recent events (bounded) let this
stage drop the second copy, so detector counts stay exact.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from pipeline import codec, signatures
from pipeline.streaming.stage import (MARKER_HEADER, UPSTREAM_HEADER, Output, PartitionState, RawMessage,
                                      Stage, partition_of, read_marker)

# CorrelateStage remembers the ids of this many recent events per batch size:
# a duplicate is at most one parse batch (plus idle flushes) behind its original
SEEN_PER_BATCH = 4


class CorrelatePartition(PartitionState):
    """One events partition's recent event ids, besides its engine."""

    def __init__(self, engine, config, seen_max: int) -> None:
        super().__init__(engine, config, slack=0.0, backfill=False)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_max = seen_max

    def is_new(self, eid: str) -> bool:
        """False for an event already seen; remembers ``eid`` otherwise."""
        if eid in self.seen:
            return False
        self.seen[eid] = None
        if len(self.seen) > self.seen_max:
            self.seen.popitem(last=False)
        return True

    def item_state(self, ev) -> list:
        return [codec.event_to_doc(ev), ev.ts]

    def item_from_state(self, state):
        doc, ts = state
        return codec.event_from_doc({**doc, "_ts": ts})

    def to_state(self) -> dict:
        return {**super().to_state(), "seen": list(self.seen)}

    def restore(self, state: dict, now: float) -> None:
        super().restore(state, now)
        self.seen = OrderedDict.fromkeys(state["seen"][-self.seen_max:])


class CorrelateStage(Stage):
    name = "correlate"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.seen_max = SEEN_PER_BATCH * settings.worker.batch_size + 1000
        self.stats.update(duplicates=0, events_indexed=0, bad_records=0, requests_out=0, markers=0)

    def new_partition(self) -> CorrelatePartition:
        return CorrelatePartition(signatures.engine("request", self.settings), self.eventtime, self.seen_max)

    def process(self, messages: list[RawMessage], now: float, sink=None, epoch: float | None = None) -> Output:
        """``sink`` says which events to index and builds the actions (None: nothing to index).
        ``now``: the monotonic clock; ``epoch``: the wall clock (Unix time)."""
        out = Output()
        epoch = time.time() if epoch is None else epoch
        horizon = epoch + self.eventtime.max_future
        touched: dict[str, CorrelatePartition] = {}
        for tp, part, msg in self._new_messages(messages, epoch, touched):
            if MARKER_HEADER in msg.headers:
                try:
                    upstream, frontier = read_marker(msg.value)
                except Exception as exc:
                    self.stats["bad_records"] += 1
                    out.deadletters.append(codec.dead_letter_doc(
                        f"bad watermark marker on {tp}@{msg.offset}: {exc}", msg.value,
                        kafka=codec.kafka_position(msg.topic, msg.partition, msg.offset)))
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
                self.stats["bad_records"] += 1
                out.deadletters.append(codec.dead_letter_doc(
                    f"bad event record on {partition_of(msg)}@{msg.offset}: {exc}", msg.value,
                    kafka=codec.kafka_position(msg.topic, msg.partition, msg.offset)))
                continue
            if not part.is_new(eid):
                self.stats["duplicates"] += 1
                continue
            if sink is not None:
                actions = sink.event_actions(doc, eid, ts)
                out.es_actions.extend(actions)
                self.stats["events_indexed"] += len(actions)
            ev = codec.event_from_doc({**doc, "_ts": ts})
            upstream = msg.headers.get(UPSTREAM_HEADER, b"?").decode("utf-8", "replace")
            if ts is not None and ts <= horizon:
                part.sources.saw(upstream, ts, now)
            for due in part.held.push(ts, (ev.file_path or "", ev.host or ""), ev, epoch):
                self._pass(part, due, out, now, sink)
        for tp, part in touched.items():
            self._release(tp, part, out, now, epoch, sink)
        return out

    def _release(self, tp: str, part: CorrelatePartition, out: Output, now: float, epoch: float,
                 sink) -> None:
        due = part.held.release(part.sources.frontier(now, epoch))
        for ev in due:
            self._pass(part, ev, out, now, sink)
        if due:
            self._dirty.add(tp)

    def _pass(self, part: CorrelatePartition, ev, out: Output, now: float, sink) -> None:
        if ev.ts is not None:
            part.idle.saw(now, ev.ts)
        self._emitted(part.engine.feed(ev), out, sink)

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
