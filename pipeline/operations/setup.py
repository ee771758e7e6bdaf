"""``osloscope setup``: create the Kafka topics and install the Elasticsearch
index templates. Idempotent: existing topics and templates are left as they
are (templates are re-PUT, which replaces them with the current version).
"""
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
    t = settings.topics
    return {"raw": t.raw, "deadletter": t.deadletter, "events": t.events, "incidents": t.incidents}


def create_topics(settings, log: Callable[[str], None] = print, timeout: float = 60.0) -> dict[str, str]:
    """Create the four topics; {name: "created" | "exists"}."""
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
                             topic_configs=TOPIC_CONFIGS[role])
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


def setup(settings, *, kafka: bool = True, elasticsearch: bool = True,
          log: Callable[[str], None] = print) -> None:
    if kafka:
        create_topics(settings, log=log)
    if elasticsearch:
        if not settings.elasticsearch.enabled:
            log("Elasticsearch disabled (elasticsearch.url is empty): no index templates")
            return
        from pipeline.sinks.elasticsearch import install_templates, make_client

        client = make_client(settings.elasticsearch)
        try:
            install_templates(settings.elasticsearch, client, log_fn=log)
        finally:
            client.close()


def setup_kibana(settings, url: str, *, space: str | None = None, api_key: str | None = None,
                 username: str | None = None, password: str | None = None, verify: bool | str = True,
                 wait: float = 0.0, log: Callable[[str], None] = print) -> dict:
    """Import the Kibana saved objects (data views, searches, visualizations, dashboards) of
    deploy/kibana/osloscope.ndjson, their data views pointing at the configured indices."""
    from pipeline import resources
    from pipeline.operations.kibana import Indices, import_saved_objects, ndjson_for, summarize

    path = ndjson_for(Indices.from_settings(settings.elasticsearch))
    try:
        result = import_saved_objects(url, path, space=space, api_key=api_key, username=username,
                                      password=password, verify=verify, wait=wait, log=log)
    finally:
        if path != resources.path("kibana", "osloscope.ndjson"):   # a generated copy for other index names
            path.unlink(missing_ok=True)
            path.parent.rmdir()
    log(f"kibana {url}{' space ' + space if space else ''}: imported {summarize(result)}")
    return result
