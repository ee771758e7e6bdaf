"""kafka-python clients for the stages that run outside faust (``osloscope notify``), built from
the ``[kafka]`` settings, and the kafka errors those stages handle: the rest of ``pipeline/``
imports them from here, never from kafka itself."""
from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

__all__ = ["CommitFailedError", "KafkaError", "broker_answers", "consumer"]


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
