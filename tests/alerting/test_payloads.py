"""Notification bodies and signatures (pipeline/alerting/payloads.py): json, Alertmanager and
Slack styles, HMAC signing and verifying."""
from __future__ import annotations

import hashlib
import hmac

from notify_support import T0, incident, iso, notifier, receiver, resolved
from pipeline.alerting.payloads import sign, verify


def test_receiver_can_verify_the_signature(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, secret="correct horse"), group_wait=0)
    n.handle(incident(1), T0)
    n.tick(T0)
    req = hook.requests[0]
    ts, sig, body = req["headers"]["X-Osloscope-Timestamp"], req["headers"]["X-Osloscope-Signature"], req["body"]
    assert ts == str(int(T0))
    expected = hmac.new(b"correct horse", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    assert verify("correct horse", ts, body, sig, now=T0 + 10)
    assert not verify("wrong", ts, body, sig, now=T0 + 10)
    assert not verify("correct horse", ts, body + b" ", sig, now=T0 + 10)
    assert not verify("correct horse", ts, body, sig, now=T0 + 3600)      # a replay, too late
    assert sign("k", "1", b"x") == "sha256=" + hmac.new(b"k", b"1.x", hashlib.sha256).hexdigest()
    n.close()


def test_unsigned_without_secret(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, secret=""), group_wait=0)
    n.handle(incident(1), T0)
    n.tick(T0)
    h = hook.requests[0]["headers"]
    assert "X-Osloscope-Signature" not in h and h["Idempotency-Key"] and h["Content-Type"] == "application/json"
    n.close()


def test_alertmanager_payload(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, style="alertmanager", max_alerts=2), group_wait=0,
                 group_interval=300, external_url="https://kibana.example/app/osloscope")
    docs = [incident(i, service=f"nova-{i}") for i in range(3)]
    n.handle_many(docs, T0)
    n.tick(T0)
    body = hook.json()
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops"
    assert body["groupKey"] == '{}:{host="compute-2", type="disk_full"}'
    assert body["groupLabels"] == {"type": "disk_full", "host": "compute-2"}
    assert body["commonLabels"] == {"alertname": "disk_full", "type": "disk_full",
                                    "rule": "disk_full.enospc", "severity": "critical",
                                    "host": "compute-2"}
    assert body["externalURL"] == "https://kibana.example/app/osloscope"
    assert body["truncatedAlerts"] == 1 and len(body["alerts"]) == 2
    a = body["alerts"][0]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                      "fingerprint"}
    assert a["status"] == "firing" and a["endsAt"] == "0001-01-01T00:00:00Z"
    assert a["labels"]["incident_id"] in {d["id"] for d in docs}
    assert a["labels"]["service"].startswith("nova-") and a["labels"]["alertname"] == "disk_full"
    assert a["annotations"]["description"] == docs[0]["probable_cause"]
    assert a["annotations"]["remediation"] == docs[0]["remediation"]
    assert a["annotations"]["summary"] == docs[0]["summary"]
    assert a["startsAt"] == docs[0]["first_seen"].replace("+00:00", "Z")
    assert len(a["fingerprint"]) == 16 and a["fingerprint"] != body["alerts"][1]["fingerprint"]
    n.handle_many([resolved(d, T0 + 100) for d in docs], T0 + 100)
    n.tick(T0 + 300)
    body = hook.json()
    assert body["status"] == "resolved" and {x["status"] for x in body["alerts"]} == {"resolved"}
    assert body["alerts"][0]["endsAt"] == iso(T0 + 100).replace("+00:00", "Z")
    n.close()


def test_slack_payload(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, style="slack"), group_wait=0)
    n.handle_many([incident(1), incident(2)], T0)
    n.tick(T0)
    body = hook.json()
    assert body["text"].startswith("[FIRING:2] type=disk_full, host=compute-2: Disk full on compute-2")
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    section = body["blocks"][1]["text"]
    assert section["type"] == "mrkdwn" and "*Remediation:* Free space" in section["text"]
    assert "&lt;disk&gt;" not in section["text"] and "<" not in section["text"]
    n.close()


def test_json_payload_carries_the_incident_documents(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=0, group_by=("incident_id",))
    doc = incident(1)
    n.handle(doc, T0)
    n.tick(T0)
    body = hook.json()
    assert body["incidents"] == [doc] and body["status"] == "firing" and body["revision"] == 1
    assert body["group_labels"] == {"incident_id": doc["id"]}
    n.close()
