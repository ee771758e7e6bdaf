"""kafka-python clients for the stages that run outside faust (``osloscope notify``), built from
the ``[kafka]`` settings, and the kafka errors those stages handle: the rest of ``pipeline/``
imports them from here, never from kafka itself."""
from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

__all__ = ["CommitFailedError", "KafkaError", "broker_answers", "consumer", "read_partition",
           "topic_partitions"]


def consumer(kafka_settings, topic: str, group_id: str, **kw) -> KafkaConsumer:
    """A consumer of ``topic`` in ``group_id``; ``kw`` are further KafkaConsumer options
    (enable_auto_commit, auto_offset_reset, timeouts, ...)."""
    return KafkaConsumer(topic, group_id=group_id, **kafka_settings.client_kwargs(), **kw)


def broker_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """A metadata request to ``bootstrap`` succeeds within ``timeout`` seconds."""
    wanted = {"bootstrap_servers": bootstrap, "client_id": "osloscope-services",
              "request_timeout_ms": int(timeout * 1000), "bootstrap_timeout_ms": int(timeout * 1000)}
    config = {key: value for key, value in wanted.items() if key in KafkaAdminClient.DEFAULT_CONFIG}
    try:
        admin = KafkaAdminClient(**config)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - any client failure means "not healthy yet"
        return False
    return True


def topic_partitions(settings, topic: str, timeout: float = 30.0) -> set[int]:
    """The partition numbers of ``topic``; KafkaError if it does not exist within ``timeout``."""
    import time

    c = KafkaConsumer(**settings.kafka.client_kwargs())
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = c.partitions_for_topic(topic)
            if found:
                return set(found)
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {topic} not found (run `osloscope setup`)")
            time.sleep(0.5)
    finally:
        c.close()


def read_partition(settings, topic: str, number: int, timeout: float = 60.0) -> list[tuple]:
    """Every (key, value) of partition ``number`` of ``topic``, from its start to
    the end it had when asked; KafkaError if that takes longer than ``timeout``."""
    import time

    from kafka import TopicPartition

    c = KafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False, group_id=None,
                      fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    try:
        tp = TopicPartition(topic, number)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out: list[tuple] = []
        deadline = time.monotonic() + timeout
        while c.position(tp) < end:
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {topic}[{number}] took longer than {timeout:.0f} s")
            for records in c.poll(timeout_ms=1000).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        c.close()
