"""``osloscope notify`` pushing to a real Prometheus Alertmanager (receiver style
``alertmanager_api``): incidents on this test's incidents topic (real Kafka) appear in
Alertmanager's ``GET /api/v2/alerts`` with their labels and annotations, Alertmanager routes them
to its own webhook receiver, the notifier's re-sends keep them firing past Alertmanager's
resolve_timeout, a silence created through Alertmanager's API suppresses one, and a resolved
incident resolves there with its end time.

Alertmanager is Debian's ``prometheus-alertmanager``, installed by the ``alertmanager`` fixture
with apt-get when missing (root; its package service is kept from starting, see
``_install_alertmanager``), and run by the test in the foreground on 127.0.0.1 with a temporary
configuration and storage directory, clustering off. The mapping and the notifier's logic are
tested without Alertmanager in tests/alerting/test_alertmanager_api.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytest.importorskip("kafka")

from kafka import KafkaAdminClient, KafkaProducer  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

from alerting.notify_support import Hook, free_port  # noqa: E402  (tests/ is on sys.path)
from processes import OSLOSCOPE, Process, wait_for  # noqa: E402

pytestmark = pytest.mark.integration

BINARIES = ("prometheus-alertmanager", "alertmanager")
RESOLVE_TIMEOUT = 8.0           # Alertmanager's, short: alerts not re-sent resolve within the test
RESEND_INTERVAL = 2.0           # the notifier's re-send period, well below it
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


# --- Alertmanager: installed when missing, started per test ---------------------------------------

def _alertmanager_binary() -> str | None:
    for name in BINARIES:
        found = shutil.which(name) or next(
            (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None)
        if found:
            return found
    return None


def _apt(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = None
    for attempt in range(3):                 # another apt-get may hold the lock for a moment
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode == 0:
            break
        time.sleep(10 * (attempt + 1))
    return r


def _install_alertmanager() -> None:
    """``apt-get update`` and ``apt-get install -y prometheus-alertmanager``. The package's
    maintainer script would start Alertmanager as a service on :9093 (and clustering on :9094);
    a policy-rc.d that forbids starting services is put in place for the install when the
    machine has none, so only the test's own Alertmanager ever runs."""
    ours = not POLICY_RC_D.exists()
    if ours:
        POLICY_RC_D.write_text("#!/bin/sh\n# osloscope tests: no service starts while installing\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        for cmd in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300",
                     "prometheus-alertmanager"]):
            r = _apt(cmd)
            if r.returncode != 0:
                pytest.fail(f"installing Alertmanager failed: {' '.join(cmd)} exited {r.returncode}:\n"
                            f"{(r.stdout + r.stderr)[-3000:]}")
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def alertmanager_binary() -> str:
    binary = _alertmanager_binary()
    if binary is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.fail("Alertmanager is missing and cannot be installed here (needs root and "
                        "apt-get: apt-get install prometheus-alertmanager)")
        _install_alertmanager()
        binary = _alertmanager_binary()
        if binary is None:
            pytest.fail(f"prometheus-alertmanager installed, but none of {BINARIES} is on PATH")
    return binary


def routed(hook: Hook, status: str | None = None) -> list[dict]:
    """The alerts of the notifications Alertmanager sent its webhook receiver (``hook``)."""
    return [a for r in hook.snapshot() for a in json.loads(r["body"])["alerts"]
            if status is None or a["status"] == status]


class Alertmanager:
    def __init__(self, binary: str, workdir: Path, webhook: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = workdir / "alertmanager.yml"
        conf.write_text(f"""
global:
  resolve_timeout: {int(RESOLVE_TIMEOUT)}s
route:
  receiver: webhook
  group_by: [incident_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: "{webhook}"
        send_resolved: true
""")
        self.proc = Process([binary, f"--config.file={conf}", f"--storage.path={workdir / 'data'}",
                             f"--web.listen-address=127.0.0.1:{self.port}",
                             "--cluster.listen-address=", "--log.level=info"],
                            workdir / "alertmanager.log", name="alertmanager", stop_timeout=20)

    def start(self) -> "Alertmanager":
        self.proc.start()
        wait_for(lambda: self._ready(), 60, "Alertmanager ready", self.proc, every=0.2)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/v2/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
        return json.loads(text) if text.strip() else None

    def alerts(self) -> dict[str, dict]:
        """The alerts Alertmanager holds as not resolved, by incident_id (resolved ones it leaves
        out of GET /api/v2/alerts)."""
        return {a["labels"].get("incident_id"): a for a in self.api("alerts")}

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def alertmanager(alertmanager_binary, tmp_path):
    hook = Hook(path="/alertmanager-webhook")      # Alertmanager's webhook receiver
    am = Alertmanager(alertmanager_binary, tmp_path / "alertmanager", hook.url)
    try:
        am.start()
        yield am, hook
    finally:
        am.stop()
        hook.close()


# --- incidents on Kafka ---------------------------------------------------------------------------

def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def incident(n: int, *, type_: str, host: str, status: str = "open", first: datetime,
             last: datetime, severity: str = "critical") -> dict:
    iid = hashlib.sha1(f"it-am-{uuid.uuid4()}-{n}".encode()).hexdigest()[:24]
    return {"id": iid, "type": type_, "rule": f"{type_}.it", "severity": severity, "status": status,
            "title": f"{type_} on {host}", "summary": f"{type_} seen on {host}",
            "host": host, "hosts": [host], "service": "nova-compute", "services": ["nova-compute"],
            "first_seen": iso(first), "last_seen": iso(last), "count": 2,
            "resources": {"instance": [], "volume": ["0b5e1f3c-4f7e-4a49-9a49-5e0c1d2e3f40"],
                          "image": [], "user": [], "source_ip": [], "path": ["/var/lib/nova/instances"]},
            "request_ids": ["req-9fa74abf-bcc1-4b7e-aaef-2e17b593a356"], "details": {},
            "evidence": [{"@timestamp": iso(last), "host": host, "service": "nova-compute",
                          "level": "ERROR", "logger": "nova.compute.manager", "request_id": None,
                          "message": "No space left on device"}],
            "probable_cause": f"The cause of {type_} on {host}.",
            "remediation": f"The fix for {type_} on {host}."}


def produce(bootstrap: str, topic: str, docs: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for d in docs:
            producer.send(topic, key=d["id"].encode(), value=json.dumps(d).encode())
        producer.flush(30)
    finally:
        producer.close()


@pytest.fixture
def incidents_topic(services_up, names):
    admin = KafkaAdminClient(bootstrap_servers=services_up["bootstrap"])
    try:
        admin.create_topics([NewTopic(names.incidents, 1, 1)])
    finally:
        admin.close()
    yield names.incidents
    admin = KafkaAdminClient(bootstrap_servers=services_up["bootstrap"])
    try:
        admin.delete_topics([names.incidents])
    finally:
        admin.close()


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


# --- the test ----------------------------------------------------------------------------------------

def test_incidents_in_alertmanager_labelled_resent_silenced_resolved(
        alertmanager, services_up, names, settings_env, incidents_topic, tmp_path):
    am, hook = alertmanager
    bootstrap = services_up["bootstrap"]
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text(f"""
[[notify.receivers]]
name = "am"
url = "{am.url}"
style = "alertmanager_api"
resend_interval = {RESEND_INTERVAL}
""")
    env = {**settings_env, "OSLOSCOPE_NOTIFY_STATE_DIR": str(tmp_path / "notify-state")}
    now = datetime.now(timezone.utc)
    disk = incident(1, type_="disk_full", host="compute-2", first=now - timedelta(minutes=5),
                    last=now - timedelta(minutes=1))
    auth = incident(2, type_="auth_failure", host="controller-1", severity="warning",
                    first=now - timedelta(minutes=4), last=now - timedelta(minutes=2))
    produce(bootstrap, incidents_topic, [disk, auth])
    log = tmp_path / "notify.log"
    notify = Process(OSLOSCOPE + ["notify", "--config", str(cfg)], log, env=env, stop_timeout=30,
                     name="osloscope notify").start()
    try:
        # 1. both incidents are alerts in Alertmanager, with their labels and annotations
        both = wait_for(lambda: (lambda a: a if {disk["id"], auth["id"]} <= set(a) else None)(am.alerts()),
                        60, "both incidents in GET /api/v2/alerts", notify, am.proc)
        a = both[disk["id"]]
        assert a["labels"] == {"alertname": "osloscope_disk_full", "type": "disk_full",
                               "rule": "disk_full.it", "severity": "critical", "host": "compute-2",
                               "service": "nova-compute", "incident_id": disk["id"],
                               "path": "/var/lib/nova/instances",
                               "volume": "0b5e1f3c-4f7e-4a49-9a49-5e0c1d2e3f40"}
        assert a["annotations"]["description"] == disk["probable_cause"]
        assert a["annotations"]["remediation"] == disk["remediation"]
        assert a["annotations"]["summary"] == disk["summary"]
        assert a["annotations"]["evidence_count"] == "1"
        assert a["generatorURL"] == f"{services_up['es_url']}/{names.incidents_index}/_doc/{disk['id']}"
        assert a["status"]["state"] == "active" and a["receivers"][0]["name"] == "webhook"
        assert abs(_parse(a["startsAt"]) - _parse(disk["first_seen"])) < timedelta(milliseconds=1)
        assert both[auth["id"]]["labels"]["alertname"] == "osloscope_auth_failure"
        # ... and routed by Alertmanager to its own receiver
        wait_for(lambda: {x["labels"]["incident_id"] for x in routed(hook, "firing")} >= {disk["id"]},
                 30, "Alertmanager's webhook notified of the firing alert", notify, am.proc)
        first_ends = _parse(a["endsAt"])

        # 2. a silence made through Alertmanager's API suppresses the auth_failure alert
        about_auth = lambda: [y for y in routed(hook)                         # noqa: E731
                              if y["labels"]["incident_id"] == auth["id"]]
        start = datetime.now(timezone.utc)
        silence = am.api("silences", {
            "matchers": [{"name": "alertname", "value": "osloscope_auth_failure", "isRegex": False,
                          "isEqual": True},
                         {"name": "host", "value": "controller-1", "isRegex": False, "isEqual": True}],
            "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=1)).isoformat(),
            "createdBy": "osloscope integration test", "comment": "known"})
        sid = silence["silenceID"]
        silenced = wait_for(lambda: (lambda x: x if x and x["status"]["state"] == "suppressed" else None)(
            am.alerts().get(auth["id"])), 30, "the auth_failure alert suppressed", notify, am.proc)
        assert silenced["status"]["silencedBy"] == [sid]
        notified = len(about_auth())                 # (it may have fired before the silence)
        assert am.alerts()[disk["id"]]["status"]["state"] == "active"

        # 3. re-sends keep both firing past Alertmanager's resolve_timeout
        time.sleep(RESOLVE_TIMEOUT + 2 * RESEND_INTERVAL)
        held = am.alerts()
        assert {disk["id"], auth["id"]} <= set(held), "alerts resolved by timeout: not re-sent"
        assert _parse(held[disk["id"]]["endsAt"]) > first_ends + timedelta(seconds=RESOLVE_TIMEOUT / 2)
        assert held[auth["id"]]["status"]["state"] == "suppressed"

        # 4. the disk_full incident resolves: gone from the active alerts, resolved at its end time
        ended = datetime.now(timezone.utc) - timedelta(seconds=30)
        done = {**disk, "status": "resolved", "last_seen": iso(ended)}
        produce(bootstrap, incidents_topic, [done])
        wait_for(lambda: disk["id"] not in am.alerts(), 30,
                 "the resolved alert gone from GET /api/v2/alerts", notify, am.proc)
        resolved = wait_for(lambda: [x for x in routed(hook, "resolved")
                                     if x["labels"]["incident_id"] == disk["id"]],
                            30, "Alertmanager's webhook notified of the resolve", notify, am.proc)
        assert abs(_parse(resolved[0]["endsAt"]) - _parse(done["last_seen"])) < timedelta(milliseconds=1)
        assert resolved[0]["labels"]["alertname"] == "osloscope_disk_full"
        # the silenced alert is still there, still suppressed, not notified since the silence
        assert am.alerts()[auth["id"]]["status"]["state"] == "suppressed"
        assert len(about_auth()) == notified
    finally:
        rc = notify.stop()
    assert rc == 0, notify.tail()
