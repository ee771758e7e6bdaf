"""``osloscope setup``: create the Kafka topics and install the Elasticsearch
index templates. Idempotent: existing topics and templates are left as they
are (templates are re-PUT, which replaces them with the current version).
"""
from __future__ import annotations

from typing import Callable

KAFKA_WAIT = 60.0     # seconds `setup` waits for an unreachable broker


def setup(settings, *, kafka: bool = True, elasticsearch: bool = True,
          log: Callable[[str], None] = print, kafka_wait: float = KAFKA_WAIT) -> None:
    """Raises KafkaAccessError (pipeline.streaming.kafka_clients) at once when Kafka rejects the
    settings (authentication, TLS, security protocol), or after ``kafka_wait`` seconds without a
    broker."""
    if kafka:
        from pipeline.streaming.kafka_clients import require_access
        from pipeline.streaming.topics import create_topics

        require_access(settings.kafka, wait=kafka_wait, log=log)
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
