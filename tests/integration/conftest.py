"""Real Kafka and Elasticsearch for the integration tests.

The session fixture ``services_up`` starts the local services of
``pipeline/operations/services.py`` (idempotent: already running services are reused)
and stops the ones it started at the end, unless OSLOSCOPE_KEEP_SERVICES=1.
Ports: OSLOSCOPE_IT_KAFKA_PORT / OSLOSCOPE_IT_KAFKA_CONTROLLER_PORT /
OSLOSCOPE_IT_ES_PORT (defaults 9092 / 9093 / 9200).

Tests isolate themselves by name: ``names`` gives every test its own topics
and indices (``settings_env`` is the matching environment for
``pipeline.settings.load(env=...)`` and for subprocesses).
"""
from __future__ import annotations

import os
import uuid

import pytest

from pipeline.operations import services

KAFKA_PORT = int(os.environ.get("OSLOSCOPE_IT_KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("OSLOSCOPE_IT_KAFKA_CONTROLLER_PORT", "9093"))
ES_PORT = int(os.environ.get("OSLOSCOPE_IT_ES_PORT", "9200"))
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
ES_URL = f"http://127.0.0.1:{ES_PORT}"


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services_up():
    started = services.up(kafka_port=KAFKA_PORT, kafka_controller_port=KAFKA_CONTROLLER_PORT,
                          es_port=ES_PORT)
    yield {"bootstrap": BOOTSTRAP, "es_url": ES_URL, "started": started}
    ours = tuple(name for name, info in started.items() if info["started"])
    if ours and os.environ.get("OSLOSCOPE_KEEP_SERVICES") != "1":
        services.down(which=ours)


class Names:
    """Unique topic, index and consumer-group names for one test."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.raw = f"it-{tag}.raw"
        self.deadletter = f"it-{tag}.deadletter"
        self.events = f"it-{tag}.events.by-request"
        self.incidents = f"it-{tag}.incidents"
        self.app_id = f"osloscope-it-{tag}"
        self.events_prefix = f"it-{tag}-events-"
        self.incidents_index = f"it-{tag}-incidents"
        self.requests_index = f"it-{tag}-requests"


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def settings_env(services_up, names, tmp_path) -> dict:
    """Environment overrides that point every component at this test's names."""
    return {
        "OSLOSCOPE_KAFKA_BOOTSTRAP": services_up["bootstrap"],
        "OSLOSCOPE_ES_URL": services_up["es_url"],
        "OSLOSCOPE_TOPICS_RAW": names.raw,
        "OSLOSCOPE_TOPICS_DEADLETTER": names.deadletter,
        "OSLOSCOPE_TOPICS_EVENTS": names.events,
        "OSLOSCOPE_TOPICS_INCIDENTS": names.incidents,
        "OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": names.events_prefix,
        "OSLOSCOPE_ES_INCIDENTS_INDEX": names.incidents_index,
        "OSLOSCOPE_ES_REQUESTS_INDEX": names.requests_index,
        "OSLOSCOPE_WORKER_APP_ID": names.app_id,
        "OSLOSCOPE_WORKER_STATE_DIR": str(tmp_path / "worker-state"),
        "OSLOSCOPE_WORKER_METRICS_PORT": "0",
        "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": str(tmp_path / "ship-checkpoints"),
    }
