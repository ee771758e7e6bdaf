"""Real round trips against the local Kafka and Elasticsearch of pipeline/services.py.

Run with ``python -m pytest -m integration tests/integration/test_services.py``.
The session fixture ``services_up`` (conftest.py) starts the services.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("kafka", reason="kafka-python is needed for the Kafka round trip")

try:
    from pipeline.operations import services
except ImportError:  # running without the project installed or on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from pipeline.operations import services

pytestmark = pytest.mark.integration

KAFKA_PORT = int(os.environ.get("OSLOSCOPE_IT_KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("OSLOSCOPE_IT_KAFKA_CONTROLLER_PORT", "9093"))
ES_PORT = int(os.environ.get("OSLOSCOPE_IT_ES_PORT", "9200"))


@pytest.fixture(scope="module")
def running_services(services_up):
    return services_up["started"]


def test_status_reports_both_healthy(running_services):
    report = services.status()
    for name in services.SERVICES:
        assert report[name]["running"], report
        assert report[name]["healthy"], report
    assert report["kafka"]["version"] == services.KAFKA_VERSION
    assert report["elasticsearch"]["version"] == services.ES_VERSION


def test_up_is_idempotent(running_services):
    again = services.up(kafka_port=KAFKA_PORT, kafka_controller_port=KAFKA_CONTROLLER_PORT, es_port=ES_PORT,
                        log=lambda message: None)
    for name in services.SERVICES:
        assert again[name]["started"] is False
        assert again[name]["pid"] == running_services[name]["pid"]


def test_kafka_produce_consume_round_trip(running_services):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    bootstrap = f"127.0.0.1:{KAFKA_PORT}"
    topic = f"osloscope-it-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in admin.list_topics()
        sent = [{"service": "nova", "seq": i, "msg": f"instance spawn failed #{i}"} for i in range(5)]
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for record in sent:
            producer.send(topic, key=b"nova", value=json.dumps(record).encode())
        producer.flush(timeout=30)
        producer.close()

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-group",
                                 auto_offset_reset="earliest", consumer_timeout_ms=15000)
        received = []
        for message in consumer:
            received.append(json.loads(message.value))
            if len(received) == len(sent):
                break
        consumer.close()
        assert received == sent
    finally:
        admin.delete_topics([topic])
        admin.close()


def _es(method: str, path: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{ES_PORT}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_elasticsearch_index_search_round_trip(running_services):
    index = f"osloscope-it-{uuid.uuid4().hex[:10]}"
    mappings = {"properties": {"@timestamp": {"type": "date"}, "service": {"type": "keyword"},
                               "message": {"type": "text"}}}
    _es("PUT", f"/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                             "mappings": mappings})
    try:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        docs = [("nova", "Instance failed to spawn"), ("neutron", "Port binding failed"),
                ("keystone", "Token validated")]
        for service, message in docs:
            _es("POST", f"/{index}/_doc?refresh=wait_for",
                {"@timestamp": now, "service": service, "message": message})
        result = _es("POST", f"/{index}/_search", {
            "query": {"match": {"message": "failed"}},
            "aggs": {"by_service": {"terms": {"field": "service"}}},
        })
        assert result["hits"]["total"]["value"] == 2
        buckets = {b["key"]: b["doc_count"] for b in result["aggregations"]["by_service"]["buckets"]}
        assert buckets == {"nova": 1, "neutron": 1}
    finally:
        _es("DELETE", f"/{index}")
