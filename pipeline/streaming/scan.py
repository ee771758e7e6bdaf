"""Reading what the pipeline's topics hold, for the commands that inspect it
(``osloscope account``): every partition of a topic from its first record to
the end it had when asked, with keys and headers, without a consumer group
(nothing is committed, no worker is disturbed); and how far a worker group's
committed offsets are behind the topics' ends.
"""
from __future__ import annotations

import time
from typing import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.streaming.stage import RawMessage

FETCH_MAX_BYTES = 16 * 1024 * 1024
PARTITION_FETCH_BYTES = 2 * 1024 * 1024


def _client(settings, **kw) -> KafkaConsumer:
    return KafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False, **kw)


class TopicScan:
    """``for msg in TopicScan(settings, topic)``: its records as RawMessages, partition
    after partition interleaved as fetched (each partition in offset order), up to the end
    offsets read when the scan starts. ``start``: offsets to begin at per partition (default:
    the first record kept). After the scan: ``begin`` (the first offset kept per partition:
    above 0 when retention removed older records), ``end`` and ``records`` (read)."""

    def __init__(self, settings, topic: str, *, start: dict[int, int] | None = None,
                 timeout: float = 600.0) -> None:
        self.settings, self.topic, self.timeout = settings, topic, timeout
        self.start = dict(start or {})
        self.begin: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self.records = 0

    def __iter__(self) -> Iterator[RawMessage]:
        c = _client(self.settings, group_id=None, fetch_max_bytes=FETCH_MAX_BYTES,
                    max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
        try:
            numbers = c.partitions_for_topic(self.topic)
            if not numbers:
                raise KafkaError(f"topic {self.topic} not found (run `osloscope setup`)")
            tps = [TopicPartition(self.topic, n) for n in sorted(numbers)]
            begin = c.beginning_offsets(tps)
            end = c.end_offsets(tps)
            self.begin = {tp.partition: begin[tp] for tp in tps}
            self.end = {tp.partition: end[tp] for tp in tps}
            todo = []
            for tp in tps:
                first = max(begin[tp], self.start.get(tp.partition, 0))
                if first < end[tp]:
                    todo.append((tp, first))
            if not todo:
                return
            c.assign([tp for tp, _ in todo])
            for tp, first in todo:
                c.seek(tp, first)
            left = {tp for tp, _ in todo}
            deadline = time.monotonic() + self.timeout
            while left:
                if time.monotonic() > deadline:
                    raise KafkaError(f"reading {self.topic} took longer than {self.timeout:.0f} s "
                                     f"({self.records} records read)")
                for tp, batch in c.poll(timeout_ms=1000).items():
                    stop = end[tp]
                    for r in batch:
                        if r.offset >= stop:
                            break
                        self.records += 1
                        yield RawMessage(r.topic, r.partition, r.offset, r.key, r.value or b"",
                                         {k: v for k, v in (r.headers or ())})
                for tp in list(left):
                    if c.position(tp) >= end[tp]:
                        left.discard(tp)
                        c.pause(tp)
        finally:
            c.close()


def group_lag(settings, group: str, topics: list[str]) -> dict[str, int]:
    """Records after ``group``'s committed offsets, per "topic/partition" of ``topics``
    (a partition it never committed counts from the first record kept)."""
    c = _client(settings, group_id=group)
    try:
        tps = [TopicPartition(t, n) for t in topics for n in sorted(c.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        begin = c.beginning_offsets(tps)
        end = c.end_offsets(tps)
        lag = {}
        for tp in tps:
            done = c.committed(tp)
            lag[f"{tp.topic}/{tp.partition}"] = max(0, end[tp] - max(done or 0, begin[tp]))
        return lag
    finally:
        c.close()
