"""``osloscope notify`` on the real Kafka: incident documents produced to this test's incidents
topic reach a real HTTP receiver as one signed Alertmanager-style notification; the resolve
follows; offsets are committed; a restarted notifier sends nothing twice. Incidents that had
already resolved when the notifier started reach every receiver once, as resolved, with their
times (issue 17). Two notifiers side by side: tests/integration/test_notify_ha.py.

The notifier itself (grouping, payloads, delivery, outbox, silences) is tested without Kafka in
tests/alerting/; this test covers the loop of pipeline/alerting/consumer.py and its Kafka client
from pipeline/streaming/kafka_clients.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("kafka")

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
from alerting.notify_support import Hook  # noqa: E402  (tests/ is on sys.path)
from processes import OSLOSCOPE, Process, wait_for  # noqa: E402
SECRET = "it-shared-secret"


def doc(n: int, status: str = "open", host: str = "compute-2") -> dict:
    iid = hashlib.sha1(f"it-{n}".encode()).hexdigest()[:24]
    seen = "2024-05-01T10:00:0%d.000+00:00" % (5 if status == "resolved" else n)
    return {"id": iid, "type": "disk_full", "rule": "disk_full.enospc", "severity": "critical",
            "status": status, "title": f"Disk full on {host}", "summary": f"ENOSPC on {host}",
            "host": host, "hosts": [host], "service": "nova-compute", "services": ["nova-compute"],
            "first_seen": "2024-05-01T10:00:00.000+00:00", "last_seen": seen, "count": 1,
            "resources": {"instance": [], "volume": [], "image": [], "user": [], "source_ip": [],
                          "path": []},
            "request_ids": [], "details": {"filesystem": "/var/lib/nova/instances"},
            "evidence": [{"@timestamp": seen, "host": host, "service": "nova-compute", "level": "ERROR",
                          "logger": "nova.compute.manager", "request_id": None,
                          "message": "No space left on device"}],
            "probable_cause": "The filesystem behind /var/lib/nova/instances is full.",
            "remediation": "Free space in /var/lib/nova/instances/_base."}


def produce(bootstrap: str, topic: str, docs: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for d in docs:
            producer.send(topic, key=d["id"].encode(), value=json.dumps(d).encode())
        producer.flush(30)
    finally:
        producer.close()


def committed(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(committed offset of the group, end offset) of partition 0."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        done = consumer.committed(tp)
        return (-1 if done is None else done), consumer.end_offsets([tp])[tp]
    finally:
        consumer.close(autocommit=False)


def Notify(cfg: Path, env: dict, log: Path) -> Process:      # noqa: N802
    return Process(OSLOSCOPE + ["notify", "--config", str(cfg)], log, env=env, stop_timeout=30.0,
                   name="osloscope notify").start()


def make_topic(bootstrap: str, names, partitions: int):
    """This test's incidents topic; deleted afterwards with the notifier's state topic."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(names.incidents, partitions, 1)])
    finally:
        admin.close()
    yield names.incidents
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        gone = [t for t in (names.incidents, f"{names.app_id}.state.notify") if t in admin.list_topics()]
        admin.delete_topics(gone)
    finally:
        admin.close()


@pytest.fixture
def incidents_topic(services_up, names):
    yield from make_topic(services_up["bootstrap"], names, 1)


@pytest.fixture
def incidents_topic_3(services_up, names):
    yield from make_topic(services_up["bootstrap"], names, 3)


def test_incidents_topic_to_signed_webhook(services_up, names, settings_env, incidents_topic, tmp_path):
    bootstrap = services_up["bootstrap"]
    hook = Hook()
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text(f"""
[notify]
group_wait = 1.0
group_interval = 2.0

[[notify.receivers]]
name = "am"
url = "{hook.url}"
style = "alertmanager"
secret_env = "IT_HOOK_SECRET"
types = ["disk_full"]
""")
    env = {**os.environ, **settings_env, "PYTHONUNBUFFERED": "1", "IT_HOOK_SECRET": SECRET,
           "OSLOSCOPE_NOTIFY_STATE_DIR": str(tmp_path / "notify-state")}
    opened = [doc(1), doc(2)]
    produce(bootstrap, incidents_topic, opened)      # before the notifier starts: read from the start
    log = tmp_path / "notify.log"
    notify = Notify(cfg, env, log)
    try:
        wait_for(lambda: len(hook.delivered) >= 1, 60, "the first notification", notify, every=0.1)
        first = hook.requests[0]
        ts, sig = first["headers"]["X-Osloscope-Timestamp"], first["headers"]["X-Osloscope-Signature"]
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + first["body"], hashlib.sha256).hexdigest()
        assert sig == f"sha256={mac}"
        assert abs(time.time() - int(ts)) < 120
        body = json.loads(first["body"])
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "am"
        assert body["groupLabels"] == {"type": "disk_full", "host": "compute-2"}
        assert sorted(a["labels"]["incident_id"] for a in body["alerts"]) == sorted(d["id"] for d in opened)

        produce(bootstrap, incidents_topic, [doc(1, "resolved"), doc(2, "resolved")])
        wait_for(lambda: len(hook.delivered) >= 2, 60, "the resolve", notify, every=0.1)
        body = json.loads(hook.requests[1]["body"])
        assert body["status"] == "resolved" and len(body["alerts"]) == 2
        deadline = time.monotonic() + 30
        while committed(bootstrap, f"{names.app_id}-notify", incidents_topic) != (4, 4):
            assert time.monotonic() < deadline, "offsets not committed"
            time.sleep(0.5)
    finally:
        rc = notify.stop()
    assert rc == 0, log.read_text()[-3000:]

    # a restart neither replays the topic into new notifications nor resends the outbox
    notify = Notify(cfg, env, log)
    try:
        time.sleep(4)
        assert notify.proc.poll() is None, log.read_text()[-3000:]
    finally:
        notify.stop()
        hook.close()
    keys = [r["headers"]["Idempotency-Key"] for r in hook.requests]
    assert len(keys) == 2 and len(set(keys)) == 2


def closed(n: int, *, host: str, type_: str = "disk_full", severity: str = "critical") -> list[dict]:
    """The documents the worker leaves of an incident that opened and resolved (n % 4 == 0:
    only the resolved version, as after a compaction or a worker that caught up at once)."""
    iid = hashlib.sha1(f"closed-{n}".encode()).hexdigest()[:24]
    first = f"2024-05-01T11:{n:02d}:00.000+00:00"
    base = {**doc(n, host=host), "id": iid, "type": type_, "severity": severity,
            "rule": f"{type_}.x", "first_seen": first, "last_seen": first}
    done = {**base, "status": "resolved", "last_seen": f"2024-05-01T11:{n:02d}:40.000+00:00",
            "count": 3}
    return [done] if n % 4 == 0 else [base, done]


def test_incidents_resolved_before_notify_started_are_each_delivered_once(
        services_up, names, settings_env, incidents_topic_3, tmp_path):
    """Issue 17 item 5: with the notifier started after the worker, incidents whose resolve was
    already in the topic produced no notification. Every one reaches a webhook (style json) and
    an Alertmanager API (style alertmanager_api) exactly once, as resolved, with its times."""
    bootstrap = services_up["bootstrap"]
    hook, am = Hook(), Hook()
    hosts = ["compute-1", "compute-2", "compute-3", "storage-1"]
    incidents = [closed(n, host=hosts[n % 4], type_=("disk_full", "auth_failure", "known_issue")[n % 3])
                 for n in range(14)]
    produce(bootstrap, incidents_topic_3, [d for versions in incidents for d in versions])
    done = {versions[-1]["id"]: versions[-1] for versions in incidents}
    assert sum(d["type"] == "disk_full" and d["severity"] == "critical" for d in done.values()) >= 2
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text(f"""
[notify]
group_wait = 1.0
group_interval = 2.0

[[notify.receivers]]
name = "hook"
url = "{hook.url}"
style = "json"

[[notify.receivers]]
name = "am"
url = "{am.url}"
style = "alertmanager_api"
resend_interval = 2.0
""")
    env = {**os.environ, **settings_env, "OSLOSCOPE_NOTIFY_STATE_DIR": str(tmp_path / "notify-state")}
    log = tmp_path / "notify.log"
    notify = Notify(cfg, env, log)

    def webhook_incidents() -> list[dict]:
        return [d for r in hook.requests for d in json.loads(r["body"])["incidents"]]

    def am_alerts() -> list[dict]:
        return [a for r in am.requests for a in json.loads(r["body"])]

    try:
        deadline = time.monotonic() + 60
        while len(webhook_incidents()) < len(done) or len(am_alerts()) < len(done):
            assert notify.proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"{len(webhook_incidents())} webhook incident(s), {len(am_alerts())} alert(s) of "
                f"{len(done)} after 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(5)                       # two group intervals and two re-sends: nothing more
    finally:
        rc = notify.stop()
        hook.close()
        am.close()
    assert rc == 0, log.read_text()[-3000:]

    sent = webhook_incidents()
    assert sorted(d["id"] for d in sent) == sorted(done)            # each once
    for d in sent:
        assert d["status"] == "resolved"
        assert (d["first_seen"], d["last_seen"]) == (done[d["id"]]["first_seen"], done[d["id"]]["last_seen"])
    keys = [r["headers"]["Idempotency-Key"] for r in hook.requests]
    assert len(keys) == len(set(keys))

    alerts = am_alerts()                    # resolved alerts are never re-sent
    assert sorted(a["labels"]["incident_id"] for a in alerts) == sorted(done)
    for a in alerts:
        d = done[a["labels"]["incident_id"]]
        assert a["startsAt"] == d["first_seen"].replace("+00:00", "Z")
        assert a["endsAt"] == d["last_seen"].replace("+00:00", "Z")
