"""A stage's changelog through a real broker (pipeline/streaming/changelog.py): the state
read back is the last complete save, read from the last manifest's oldest record rather
than from the start of the partition's history, and an event larger than a Kafka record
comes back whole. (The logic on records in memory: tests/streaming/test_partition_state.py.)"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_support import load_settings, setup_all  # noqa: E402

from pipeline.streaming.changelog import CHUNK, SEARCH, Changelog  # noqa: E402
from pipeline.streaming.kafka_clients import PartitionReader  # noqa: E402

pytestmark = pytest.mark.integration


class CountingReader(PartitionReader):
    """The worker's reader, counting the records it hands out."""
    read_total = 0

    def read(self, start, stop):
        out = super().read(start, stop)
        CountingReader.read_total += len(out)
        return out


def _writer(settings):
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka.client_kwargs(), acks="all", linger_ms=2,
                             max_request_size=4 * 1024 * 1024)

    def save(log: Changelog, tp: str, head: bytes, fresh=(), gone=(), manifest=True):
        """As the worker saves: the records, their acknowledged offsets, then the manifest."""
        sv = log.writes(tp, head, list(fresh), list(gone))
        futs = [producer.send(log.topic, key=k, value=v, partition=n) for k, v, n in sv.first]
        sv.offsets = [f.get(30).offset for f in futs]
        if manifest:
            key, value, n = log.manifest(sv)
            producer.send(log.topic, key=key, value=value, partition=n).get(30)
            log.written(sv)
    return producer, save


def test_a_long_history_is_read_back_from_the_last_manifest(settings_env):
    settings = load_settings(settings_env)
    setup_all(settings)
    producer, save = _writer(settings)
    log = Changelog(settings, "correlate")
    try:
        save(log, "osloscope.events/1", b"first", fresh=[(0, b"kept from the start")])
        for i in range(1, 600):         # every save releases what the one before held
            save(log, "osloscope.events/1", b"head %d" % i, fresh=[(i, b"event %d" % i)],
                 gone=[i - 1] if i > 1 else [])
        save(log, "osloscope.events/1", b"lost", fresh=[(600, b"e")], gone=[599], manifest=False)  # a crash
        producer.flush(30)
    finally:
        producer.close()
    CountingReader.read_total = 0
    got = Changelog(settings, "correlate", reader=CountingReader).read("osloscope.events/1")
    assert got.head == b"head 599"
    assert got.items == {0: b"kept from the start", 599: b"event 599"}
    assert got.next_seq == 601
    reader = PartitionReader(settings, log.topic, 1)
    total = reader.bounds()[1]
    reader.close()
    assert total > 2000

    # once that event is released (and deleted by the next save), the history before is not read
    producer, save = _writer(settings)
    try:
        log2 = Changelog(settings, "correlate")
        log2.read("osloscope.events/1")
        save(log2, "osloscope.events/1", b"released", gone=[0, 599])
        save(log2, "osloscope.events/1", b"later", fresh=[(601, b"new")])
    finally:
        producer.close()
    CountingReader.read_total = 0
    got = Changelog(settings, "correlate", reader=CountingReader).read("osloscope.events/1")
    assert (got.head, got.items) == (b"later", {601: b"new"})
    assert CountingReader.read_total < SEARCH + 20, CountingReader.read_total


def test_an_event_larger_than_a_record_comes_back_whole(settings_env):
    settings = load_settings(settings_env)
    setup_all(settings)
    producer, save = _writer(settings)
    huge = bytes(range(256)) * (2 * CHUNK // 256 + 3)
    try:
        save(Changelog(settings, "parse"), "osloscope.raw/2", b"h", fresh=[(0, huge), (1, b"small")])
    finally:
        producer.close()
    got = Changelog(settings, "parse").read("osloscope.raw/2")
    assert got.items == {0: huge, 1: b"small"} and got.head == b"h"
