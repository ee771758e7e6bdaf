"""Style ``alertmanager_api``: incidents pushed to Alertmanager's own API (``POST /api/v2/alerts``)
-- the mapping to alerts (pipeline/alerting/payloads.py) and the notifier's changes, re-sends,
outages and restarts (pipeline/alerting/notifier.py) against a real HTTP server that records
what Alertmanager would be sent. The real Alertmanager: tests/integration/test_alertmanager.py."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from notify_support import T0, drive, free_port, incident, iso, notifier, receiver, resolved
from pipeline.alerting.notifier import Notifier
from pipeline.alerting.payloads import (alertmanager_alert, alertmanager_endpoint,
                                        alertmanager_labels, am_time, generator_url)
from pipeline.settings import SettingsError, load


def am(hook_or_url, name="am", **kw):
    url = hook_or_url if isinstance(hook_or_url, str) else f"http://127.0.0.1:{hook_or_url.port}"
    return receiver(url, name=name, style="alertmanager_api", secret="", **kw)


def posted(hook, i: int = -1) -> list[dict]:
    req = hook.requests[i]
    assert req["path"] == "/api/v2/alerts" and req["headers"]["Content-Type"] == "application/json"
    body = json.loads(req["body"])
    assert isinstance(body, list)
    return body


def with_volume(doc: dict, volume: str) -> dict:
    return {**doc, "resources": {**doc["resources"], "volume": [*doc["resources"]["volume"], volume]}}


# --- the mapping ---------------------------------------------------------------------------------

def test_incident_to_alert_labels_annotations_and_times(incident_validator):
    doc = with_volume(incident(1, count=3), "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f")
    assert not list(incident_validator.iter_errors(doc))
    labels = alertmanager_labels(doc)
    assert labels == {"alertname": "osloscope_disk_full", "type": "disk_full", "rule": "disk_full.enospc",
                      "severity": "critical", "host": "compute-2", "service": "nova-compute",
                      "incident_id": doc["id"], "path": "/var/lib/nova/instances",
                      "volume": "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"}
    a = alertmanager_alert(doc, labels, T0 + 5, generator="https://kibana.example/x")
    assert set(a) == {"labels", "annotations", "startsAt", "generatorURL"}     # firing: no endsAt
    assert a["startsAt"] == am_time(T0 - 60) == iso(T0 - 60).replace("+00:00", "Z")
    ann = a["annotations"]
    assert ann["title"] == doc["title"] and ann["summary"] == doc["summary"]
    assert ann["description"] == doc["probable_cause"] and ann["remediation"] == doc["remediation"]
    assert ann["count"] == "3" and ann["evidence_count"] == "1"
    assert ann["evidence"] == "No space left on device <disk>" and ann["hosts"] == "compute-2"
    assert ann["resources"] == ("path: /var/lib/nova/instances; "
                                "volume: dd04f3d2-63cb-45f2-9a31-9ecc523bd40f")
    assert ann["request_ids"] == "req-9fa74abf-bcc1-4b7e-aaef-2e17b593a356"
    assert all(isinstance(v, str) and v for v in ann.values())

    done = alertmanager_alert(resolved(doc, T0 + 100), labels, T0 + 200)
    assert done["endsAt"] == am_time(T0 + 100) and "generatorURL" not in done
    # log clocks ahead of the wall clock: never an alert that ends (or starts) in the future
    ahead = alertmanager_alert(resolved(doc, T0 + 100), labels, T0 - 120)
    assert ahead["startsAt"] == ahead["endsAt"] == am_time(T0 - 120)
    assert alertmanager_alert(doc, labels, T0 + 5, ends_at=T0 + 1)["endsAt"] == am_time(T0 + 1)


def test_labels_stay_those_first_sent_except_the_core_ones():
    first = incident(1)
    sent = alertmanager_labels(first)
    assert "volume" not in sent
    grown = {**with_volume(first, "v-1"), "hosts": ["compute-2", "compute-3"], "count": 9}
    assert alertmanager_labels(grown) != sent
    assert alertmanager_labels(grown, sent) == sent                 # resources grew: same alert
    escalated = {**grown, "severity": "error"}
    assert alertmanager_labels(escalated, sent) == {**sent, "severity": "error"}
    odd = {**first, "host": None, "resources": {"path": [], "bad-name": ["x"], "__meta": ["y"],
                                                "database": ["nova"]}}
    labels = alertmanager_labels(odd)
    assert "host" not in labels and labels["database"] == "nova"
    assert not {"path", "bad-name", "__meta"} & set(labels)


def test_endpoint_and_generator_url():
    assert alertmanager_endpoint("http://127.0.0.1:9093") == "http://127.0.0.1:9093/api/v2/alerts"
    assert alertmanager_endpoint("https://u:p@h/alertmanager/") == "https://u:p@h/alertmanager/api/v2/alerts"
    assert alertmanager_endpoint("http://h:9093/api/v2/alerts") == "http://h:9093/api/v2/alerts"
    doc = incident(1)
    assert generator_url("https://k/app/discover#/?_a=(query:'id:{id}')", doc) == \
        f"https://k/app/discover#/?_a=(query:'id:{doc['id']}')"
    assert generator_url("", doc) == ""


# --- the notifier ---------------------------------------------------------------------------------

def test_changes_go_out_at_once_and_open_alerts_are_resent(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, am(hook, resend_interval=60), group_wait=30, group_interval=300,
                 incident_url="https://kibana.example/i/{id}")
    doc = incident(1)
    n.handle(doc, T0)
    report = n.tick(T0)                        # no group_wait: Alertmanager waits by itself
    assert report.delivered == 1
    [alert] = posted(hook, 0)
    assert alert["labels"]["incident_id"] == doc["id"] and "endsAt" not in alert
    assert alert["generatorURL"] == f"https://kibana.example/i/{doc['id']}"
    assert hook.requests[0]["headers"]["Idempotency-Key"]
    n.tick(T0 + 0.5)
    resends = len(hook.requests)               # the first re-send timer starts at the first tick
    drive(n, T0 + 1, T0 + 59)
    assert len(hook.requests) == resends
    n.handle({**doc, "count": 7, "last_seen": iso(T0 + 30)}, T0 + 30)     # same labels: no request
    drive(n, T0 + 30, T0 + 59)
    assert len(hook.requests) == resends
    assert n.tick(T0 + 61).resent == 1
    [again] = posted(hook)
    assert again["labels"] == alert["labels"] and again["annotations"]["count"] == "7"

    n.handle(resolved(doc, T0 + 90), T0 + 95)
    n.tick(T0 + 95)
    [end] = posted(hook)
    assert end["labels"] == alert["labels"] and end["endsAt"] == am_time(T0 + 90)
    before = len(hook.requests)
    drive(n, T0 + 96, T0 + 300, step=5)        # nothing open: nothing re-sent
    assert len(hook.requests) == before and not n.groups
    assert n.outbox() == {"delivered": 2}
    n.close()


def test_escalated_severity_ends_the_old_label_set(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, am(hook))
    doc = incident(1, type_="auth_failure", severity="warning")
    n.handle(doc, T0)
    n.tick(T0)
    n.handle({**doc, "severity": "error", "count": 50, "last_seen": iso(T0 + 10)}, T0 + 10)
    n.tick(T0 + 10)
    old, new = posted(hook)
    assert old["labels"]["severity"] == "warning" and old["endsAt"] == am_time(T0 + 10)
    assert new["labels"] == {**old["labels"], "severity": "error"} and "endsAt" not in new
    assert old["labels"]["alertname"] == "osloscope_auth_failure"
    n.tick(T0 + 100)
    assert [a["labels"]["severity"] for a in posted(hook)] == ["error"]
    n.close()


def test_resolved_before_it_was_ever_sent_is_posted_once_as_resolved(tmp_path, hooks):
    """Issue 17: an incident first seen resolved reaches Alertmanager once, with startsAt (its
    first_seen) and endsAt (its last_seen), so Alertmanager holds it as resolved."""
    hook = hooks()
    n = notifier(tmp_path, am(hook))
    doc = incident(1)
    n.handle_many([doc, resolved(doc, T0 + 5)], T0 + 10)
    drive(n, T0 + 10, T0 + 130, step=10)
    assert len(hook.requests) == 1
    [alert] = posted(hook, 0)
    assert alert["labels"]["incident_id"] == doc["id"]
    assert alert["labels"]["alertname"] == "osloscope_disk_full"
    assert (alert["startsAt"], alert["endsAt"]) == (am_time(T0 - 60), am_time(T0 + 5))
    assert not n.groups and n.outbox() == {"delivered": 1}
    n.close()


def test_osloscope_silences_are_left_to_alertmanager(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, am(hook))
    from pipeline.alerting.silences import Matcher
    n.silences.add([Matcher.parse("type=disk_full")], now=T0 - 1, duration=3600)
    n.handle(incident(1), T0)
    n.tick(T0)
    assert len(posted(hook)) == 1
    n.close()


def test_outage_keeps_changes_in_order_and_resends_after_them(tmp_path, hooks):
    port = free_port()
    n = notifier(tmp_path, am(f"http://127.0.0.1:{port}", max_backoff=5, resend_interval=60))
    doc = incident(1)
    n.handle(doc, T0)
    drive(n, T0, T0 + 30)
    assert n.outbox() == {"pending": 1}
    n.handle(resolved(doc, T0 + 40), T0 + 40)
    n.handle(incident(2, host="compute-3"), T0 + 40)
    drive(n, T0 + 40, T0 + 50)
    assert n.outbox() == {"pending": 2}
    hook = hooks(port=port)
    drive(n, T0 + 50, T0 + 60)
    assert n.outbox() == {"delivered": 2}
    first, second = (json.loads(r["body"]) for r in hook.requests[:2])
    assert [a["labels"]["incident_id"] for a in first] == [doc["id"]] and "endsAt" not in first[0]
    assert {a["labels"]["incident_id"]: "endsAt" in a for a in second} == \
        {doc["id"]: True, incident(2)["id"]: False}
    # the re-send came only after the outbox was empty, and carries only what is still open
    assert [[a["labels"]["incident_id"] for a in json.loads(r["body"])] for r in hook.requests[2:]] == \
        [[incident(2)["id"]]]
    n.close()


def test_restart_resends_open_alerts_at_once(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, am(hook, resend_interval=60))
    n.handle_many([incident(1), incident(2, host="compute-3")], T0)
    n.tick(T0)
    n.close()
    labels = sorted(a["labels"]["incident_id"] for a in posted(hook))
    hook.requests.clear()
    n = notifier(tmp_path, am(hook, resend_interval=60))
    assert n.tick(T0 + 5).resent == 2
    assert sorted(a["labels"]["incident_id"] for a in posted(hook)) == labels
    n.close()


def test_max_alerts_splits_requests(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, am(hook, max_alerts=2))
    n.handle_many([incident(i, host=f"compute-{i}") for i in range(5)], T0)
    n.tick(T0)
    sizes = [len(json.loads(r["body"])) for r in hook.requests]
    assert sizes[:3] == [2, 2, 1] and n.outbox() == {"delivered": 3}
    assert sizes[3:] == [2, 2, 1]                    # the first re-send, split the same way
    n.close()


def test_rejected_alerts_are_not_retried(tmp_path, hooks):
    hook = hooks(statuses=(400, 400))
    n = notifier(tmp_path, am(hook, resend_interval=60))
    n.handle(incident(1), T0)
    report = n.tick(T0)
    assert report.failed == 1 and n.outbox() == {"failed": 1}
    drive(n, T0 + 1, T0 + 59, step=1)
    assert len(hook.requests) == 2                   # the change, then one re-send, both refused
    assert n.tick(T0 + 61).resent == 1
    n.close()


# --- settings ---------------------------------------------------------------------------------------

def test_settings_of_an_alertmanager_receiver(tmp_path):
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text("""
[elasticsearch]
url = "https://elastic:pw@es.example:9200/"
incidents_index = "ops-incidents"

[[notify.receivers]]
name = "am"
url = "http://alertmanager.example:9093"
style = "alertmanager_api"
resend_interval = 30
""")
    s = load(str(cfg), env={})
    [r] = s.receivers
    assert r.style == "alertmanager_api" and r.resend_interval == 30.0 and r.send_resolved
    assert s.notify.incident_url == ""
    n = Notifier.from_settings(replace(s, notify=replace(s.notify, state_dir=str(tmp_path / "n"))))
    assert n.receivers["am"].url == "http://alertmanager.example:9093/api/v2/alerts"
    assert n.incident_url == "https://es.example:9200/ops-incidents/_doc/{id}"
    n.close()
    s2 = replace(s, notify=replace(s.notify, state_dir=str(tmp_path / "m"), incident_url="https://k/{id}"))
    n = Notifier.from_settings(s2)
    assert n.incident_url == "https://k/{id}"
    n.close()

    cfg.write_text("""
[notify]
incident_url = "kibana/{id}"

[[notify.receivers]]
name = "am"
url = "http://alertmanager.example:9093"
style = "alertmanager_api"
send_resolved = false
resend_interval = 0
""")
    with pytest.raises(SettingsError) as info:
        load(str(cfg), env={})
    errors = "\n".join(info.value.errors)
    assert f"{cfg}: notify.incident_url: expected an http:// or https:// URL" in errors
    assert f"{cfg}: notify.receivers[0].resend_interval: must be > 0" in errors
    assert f"{cfg}: notify.receivers[0].send_resolved: style alertmanager_api always sends resolves" in errors
