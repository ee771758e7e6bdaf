"""The Kafka topics osloscope uses, created by ``osloscope setup`` (idempotent)."""
from __future__ import annotations

import time
from typing import Callable

# retention per topic: the dead-letter topic keeps its evidence longest
TOPIC_CONFIGS = {
    "raw": {"retention.ms": str(3 * 86400_000), "compression.type": "producer"},
    "deadletter": {"retention.ms": str(14 * 86400_000)},
    "events": {"retention.ms": str(2 * 86400_000)},
    "incidents": {"retention.ms": str(30 * 86400_000)},
}


def topic_names(settings) -> dict[str, str]:
    """Role -> topic name: the four data topics and the stages' state changelogs."""
    from pipeline.streaming.changelog import topic_name

    t = settings.topics
    return {"raw": t.raw, "deadletter": t.deadletter, "events": t.events, "incidents": t.incidents,
            "parse_state": topic_name(settings, "parse"), "correlate_state": topic_name(settings, "correlate")}


def _config(role: str) -> dict[str, str]:
    from pipeline.streaming.changelog import TOPIC_CONFIG

    return TOPIC_CONFIG if role.endswith("_state") else TOPIC_CONFIGS[role]


def create_topics(settings, log: Callable[[str], None] = print, timeout: float = 60.0) -> dict[str, str]:
    """Create the data topics and the state changelogs (compacted, one partition per
    input partition); {name: "created" | "exists"}."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(**settings.kafka.client_kwargs())
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise SystemExit(f"osloscope setup: no Kafka broker reachable at "
                                 f"{settings.kafka.bootstrap} (is `osloscope services up` running?)")
            time.sleep(1.0)
    result: dict[str, str] = {}
    try:
        existing = set(admin.list_topics())
        for role, name in topic_names(settings).items():
            if name in existing:
                result[name] = "exists"
                continue
            topic = NewTopic(name, num_partitions=settings.kafka.partitions,
                             replication_factor=settings.kafka.replication_factor,
                             topic_configs=_config(role))
            try:
                admin.create_topics([topic])
                result[name] = "created"
            except TopicAlreadyExistsError:
                result[name] = "exists"
        for name, what in result.items():
            log(f"topic {name}: {what}")
    finally:
        admin.close()
    return result
