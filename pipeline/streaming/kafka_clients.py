"""kafka-python clients for the stages that run outside faust (``osloscope notify``), built from
the ``[kafka]`` settings, and the kafka errors those stages handle: the rest of ``pipeline/``
imports them from here, never from kafka itself."""
from __future__ import annotations

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError

__all__ = ["CommitFailedError", "consumer"]


def consumer(kafka_settings, topic: str, group_id: str, **kw) -> KafkaConsumer:
    """A consumer of ``topic`` in ``group_id``; ``kw`` are further KafkaConsumer options
    (enable_auto_commit, auto_offset_reset, timeouts, ...)."""
    return KafkaConsumer(topic, group_id=group_id, **kafka_settings.client_kwargs(), **kw)
