"""osloscope notify: grouping, repeats, resolves, silences, outbox, backoff, signatures, payloads.

Receivers are real HTTP servers (http.server in a thread) on 127.0.0.1; time is a number passed
to ``handle``/``tick``, so group timers and backoff need no sleeping.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline import settings as S
from pipeline.alerting.notify import Notifier, NotifierBusy, labels_of, sign, verify
from pipeline.settings import NotifySettings, ReceiverSettings, SettingsError, load
from pipeline.alerting.silences import Matcher, SilenceError, parse_duration, store_for

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0                  # the fake clock starts here (2023-11-14)


# --- a real webhook receiver ---------------------------------------------------------------------

class Hook:
    """An HTTP server recording every POST; answers with the scripted statuses, then 200."""

    def __init__(self, statuses=(), port: int = 0, delay: float = 0.0, headers=None, tls=None) -> None:
        self.requests: list[dict] = []
        self.script = list(statuses)
        self.delay, self.extra = delay, headers or {}
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = hook.script.pop(0) if hook.script else 200
                hook.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": body, "status": status})
                if hook.delay:
                    time.sleep(hook.delay)
                self.send_response(status)
                for k, v in hook.extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:                                             # (certfile, keyfile)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/hook"

    @property
    def delivered(self) -> list[dict]:
        return [r for r in self.requests if 200 <= r["status"] < 300]

    def json(self, i: int = -1) -> dict:
        return json.loads(self.requests[i]["body"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(*a, **kw) -> Hook:
        made.append(Hook(*a, **kw))
        return made[-1]
    yield make
    for h in made:
        h.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- incidents and notifiers ---------------------------------------------------------------------

def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}+00:00"


def incident(n: int, *, type_="disk_full", host="compute-2", service="nova-compute", status="open",
             severity="critical", seen: float = T0, count: int = 1) -> dict:
    iid = hashlib.sha1(f"{type_}{n}".encode()).hexdigest()[:24]
    rule = {"disk_full": "disk_full.enospc", "auth_failure": "auth_failure.keystone"}.get(
        type_, "retry_exhausted.volume_not_created")
    return {
        "id": iid, "type": type_, "rule": rule, "severity": severity, "status": status,
        "title": f"Disk full on {host} (#{n})", "summary": f"{count} ENOSPC error(s) on {host}",
        "host": host, "hosts": [host], "service": service, "services": [service],
        "first_seen": iso(T0 - 60), "last_seen": iso(seen), "count": count,
        "resources": {"instance": [], "volume": [], "image": [], "user": [], "source_ip": [],
                      "path": ["/var/lib/nova/instances"]},
        "request_ids": ["req-9fa74abf-bcc1-4b7e-aaef-2e17b593a356"], "details": {},
        "evidence": [{"@timestamp": iso(seen), "host": host, "service": service, "level": "ERROR",
                      "logger": "nova.compute.manager", "request_id": None,
                      "message": "No space left on device <disk>"}],
        "probable_cause": "The filesystem behind /var/lib/nova/instances is full (ENOSPC).",
        "remediation": "Free space: df -h /var/lib/nova/instances; remove unused base images.",
    }


def resolved(doc: dict, seen: float) -> dict:
    return {**doc, "status": "resolved", "last_seen": iso(seen)}


def receiver(hook_or_url, name="ops", **kw) -> ReceiverSettings:
    url = hook_or_url if isinstance(hook_or_url, str) else hook_or_url.url
    return ReceiverSettings(name=name, url=url, **{"secret": "s3cret", "timeout": 2.0, **kw})


def notifier(tmp_path, *receivers, **kw) -> Notifier:
    ns = NotifySettings(state_dir=str(tmp_path / "notify"), **kw)
    return Notifier(ns, receivers, rng=random.Random(7))


def test_incident_factory_matches_the_schema(incident_validator):
    for doc in (incident(1), resolved(incident(2, type_="auth_failure"), T0 + 5)):
        assert not list(incident_validator.iter_errors(doc))


# --- grouping, repeats, resolves -----------------------------------------------------------------

def test_incidents_of_one_type_and_host_within_group_wait_make_one_post(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook))
    for i, t in enumerate((0, 5, 10)):
        assert n.handle(incident(i, seen=T0 + t), T0 + t)
    n.handle(incident(9, host="compute-3", seen=T0 + 10), T0 + 10)      # another group
    assert n.tick(T0 + 29.9).queued == 0 and hook.requests == []
    report = n.tick(T0 + 30)
    assert (report.flushed, report.queued, report.delivered) == (1, 1, 1)
    body = hook.json()
    assert body["group_labels"] == {"type": "disk_full", "host": "compute-2"}
    assert sorted(d["id"] for d in body["incidents"]) == sorted(incident(i)["id"] for i in (0, 1, 2))
    n.tick(T0 + 40)
    assert len(hook.requests) == 2 and hook.json()["group_labels"]["host"] == "compute-3"
    n.close()


def test_unchanged_group_is_repeated_only_after_repeat_interval(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300, repeat_interval=3600)
    doc = incident(1)
    n.handle(doc, T0)
    n.tick(T0 + 30)
    assert len(hook.requests) == 1
    t = T0 + 30
    while t < T0 + 30 + 3600 - 300:                  # updates that change nothing that matters
        t += 300
        n.handle({**doc, "count": int(t - T0), "last_seen": iso(t)}, t)
        n.tick(t)
    assert len(hook.requests) == 1
    n.tick(T0 + 30 + 3600)
    assert len(hook.requests) == 2
    keys = {r["headers"]["Idempotency-Key"] for r in hook.requests}
    assert len(keys) == 2                              # a repeat is a new notification
    assert hook.json()["incidents"][0]["count"] > 1    # ... with the newest document
    n.close()


def test_new_incident_in_a_notified_group_waits_for_group_interval(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    n.handle(incident(1), T0)
    n.tick(T0 + 30)
    n.handle(incident(2), T0 + 40)
    assert n.tick(T0 + 329).queued == 0
    n.tick(T0 + 330)
    assert len(hook.requests) == 2 and len(hook.json()["incidents"]) == 2
    n.close()


def test_resolve_is_notified_once_and_then_the_group_is_gone(tmp_path, hooks):
    hook, quiet = hooks(), hooks()
    n = notifier(tmp_path, receiver(hook), receiver(quiet, name="quiet", send_resolved=False),
                 group_wait=30, group_interval=300)
    doc = incident(1)
    n.handle(doc, T0)
    n.tick(T0 + 30)
    n.handle(resolved(doc, T0 + 100), T0 + 100)
    n.tick(T0 + 330)
    assert len(hook.requests) == 2 and len(quiet.requests) == 1
    body = hook.json()
    assert body["status"] == "resolved" and body["incidents"][0]["status"] == "resolved"
    assert n.groups == {}
    for t in (T0 + 630, T0 + 20000):
        n.tick(t)
    assert len(hook.requests) == 2 and len(quiet.requests) == 1
    n.close()


def test_incident_resolved_before_its_first_notification_is_not_sent(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook))
    doc = incident(1)
    n.handle(doc, T0)
    n.handle(resolved(doc, T0 + 5), T0 + 5)
    n.tick(T0 + 30)
    assert hook.requests == [] and n.groups == {}
    n.close()


def test_stale_and_repeated_documents_change_nothing(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook))
    doc = incident(1, seen=T0 + 10)
    assert n.handle(doc, T0)
    assert not n.handle(doc, T0 + 1)                                      # redelivered
    n.handle(resolved(doc, T0 + 20), T0 + 2)
    assert not n.handle(incident(1, seen=T0 + 15, count=2), T0 + 3)      # older than the resolve
    n.tick(T0 + 40)
    assert hook.requests == []                 # it resolved within group_wait: nothing to say
    n.close()


def test_receiver_filters(tmp_path, hooks):
    auth, compute, storage = hooks(), hooks(), hooks()
    n = notifier(tmp_path, receiver(auth, name="auth", types=("auth_failure",)),
                 receiver(compute, name="compute", hosts=("compute-*",), severities=("critical",)),
                 receiver(storage, name="storage", services=("cinder-*",)),
                 group_wait=0)
    n.handle(incident(1, type_="auth_failure", host="controller-1", service="keystone"), T0)
    n.handle(incident(2, host="compute-7"), T0)
    n.handle(incident(3, host="compute-8", severity="warning"), T0)
    n.handle(incident(4, host="storage-1", service="cinder-volume"), T0)
    n.tick(T0)
    ids = lambda hook: [d["id"] for r in hook.requests for d in json.loads(r["body"])["incidents"]]
    assert ids(auth) == [incident(1, type_="auth_failure")["id"]]
    assert ids(compute) == [incident(2)["id"]]
    assert ids(storage) == [incident(4)["id"]]
    n.close()


def test_incident_no_longer_matching_a_filter_leaves_its_group(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, severities=("critical",)), group_wait=30)
    n.handle(incident(1, severity="critical"), T0)
    n.handle(incident(1, severity="warning", count=2, seen=T0 + 1), T0 + 1)
    n.tick(T0 + 30)
    assert hook.requests == [] and n.groups == {}
    n.close()


# --- silences ------------------------------------------------------------------------------------

def test_silenced_incidents_are_not_sent_until_the_silence_expires(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    cli_side = store_for(tmp_path / "notify")                 # what `osloscope silence` uses
    s = cli_side.add([Matcher.parse("type=disk_full"), Matcher.parse("host=~compute-[0-9]+")],
                     now=T0, duration=parse_duration("2h"), created_by="ops", comment="new disk")
    n.handle(incident(1), T0)
    n.handle(incident(2, host="controller-1"), T0)            # not matched: sent
    n.tick(T0 + 30)
    assert [r["status"] for r in hook.requests] == [200]
    assert hook.json()["group_labels"]["host"] == "controller-1"
    n.tick(T0 + 330)
    assert len(hook.requests) == 1
    cli_side.expire(s.id[:8], now=T0 + 400)                   # a prefix is enough
    n.tick(T0 + 630)
    assert len(hook.requests) == 2
    assert hook.json()["group_labels"] == {"type": "disk_full", "host": "compute-2"}
    n.close()


def test_silence_runs_out_by_itself(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    store_for(tmp_path / "notify").add([Matcher.parse("incident_id=" + incident(1)["id"])],
                                       now=T0, duration=600)
    n.handle(incident(1), T0)
    n.tick(T0 + 30)
    n.tick(T0 + 330)
    assert hook.requests == []
    n.tick(T0 + 630)                                         # the silence ended at T0 + 600
    assert len(hook.requests) == 1
    n.close()


def test_matchers_and_durations():
    labels = labels_of(incident(1))
    assert labels["alertname"] == labels["type"] == "disk_full" and labels["severity"] == "critical"
    assert Matcher.parse("host=compute-2").matches(labels)
    assert Matcher.parse('host="compute-2"').matches(labels)
    assert Matcher.parse("host!=compute-2").matches(labels) is False
    assert Matcher.parse("host=~compute-.*").matches(labels)
    assert Matcher.parse("host=~compute").matches(labels) is False          # anchored
    assert Matcher.parse("severity!~warn.*").matches(labels)
    assert Matcher.parse("service=").matches({"type": "x"})                 # missing = ""
    for bad in ("hostname=x", "host", "host=~(", "=x"):
        with pytest.raises(SilenceError):
            Matcher.parse(bad)
    assert parse_duration("1h30m") == 5400 and parse_duration("2d") == 172800
    for bad in ("", "2", "1x", "0m"):
        with pytest.raises(SilenceError):
            parse_duration(bad)


def test_silence_cli_add_list_expire(tmp_path, monkeypatch, capsys):
    from pipeline import cli
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OSLOSCOPE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OSLOSCOPE_NOTIFY_STATE_DIR", str(tmp_path / "st"))

    def run(*a):
        rc = cli.main(["silence", *a])
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, out, err = run("add", "--matcher", "type=disk_full", "--matcher", "host=compute-2",
                       "--duration", "2h", "--comment", "replacing the disk", "--author", "alice")
    assert rc == 0, err
    sid = out.strip()
    rows = [json.loads(line) for line in run("list", "--format", "json")[1].splitlines()]
    assert [(r["id"], r["state"], r["comment"], r["createdBy"]) for r in rows] == \
        [(sid, "active", "replacing the disk", "alice")]
    assert [f"{m['name']}{m['op']}{m['value']}" for m in rows[0]["matchers"]] == \
        ["type=disk_full", "host=compute-2"]
    table = run("list")[1]
    assert "type=disk_full host=compute-2" in table and "replacing the disk" in table
    assert run("expire", sid)[0] == 0
    assert run("list", "--format", "json")[1] == ""
    assert sid in run("list", "--all")[1]
    rc, _, err = run("add", "--matcher", "hots=compute-2", "--comment", "x")
    assert rc == 2 and "unknown label 'hots'" in err
    assert run("expire", "nope")[0] == 2
    on_disk = json.loads((tmp_path / "st" / "silences.json").read_text())
    assert on_disk["version"] == 1 and len(on_disk["silences"]) == 1


def test_broken_silences_file_keeps_the_last_good_set(tmp_path, hooks):
    store = store_for(tmp_path)
    store.add([Matcher.parse("host=compute-2")], now=T0, duration=3600)
    assert store.muting(labels_of(incident(1)), T0 + 1)
    store.path.write_text("{ not json")
    assert store.muting(labels_of(incident(1)), T0 + 2)        # logged, still silenced


# --- delivery: outage, backoff, restart ----------------------------------------------------------

def drive(n: Notifier, start: float, end: float, step: float = 0.25) -> None:
    t = start
    while t <= end:
        n.tick(t)
        t += step


def test_outage_then_recovery_delivers_once_with_backoff(tmp_path, hooks):
    hook = hooks(statuses=(503, 503, 502, 503))
    n = notifier(tmp_path, receiver(hook), group_wait=0)
    n.handle(incident(1), T0)
    drive(n, T0, T0 + 60)
    assert [r["status"] for r in hook.requests] == [503, 503, 502, 503, 200]
    assert len({r["headers"]["Idempotency-Key"] for r in hook.requests}) == 1
    at = [int(r["headers"]["X-Osloscope-Timestamp"]) for r in hook.requests]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert gaps[-1] >= 4 and gaps == sorted(gaps)            # 0.5-1, 1-2, 2-4, 4-8 s
    assert n.outbox() == {"delivered": 1}
    n.close()


def test_connection_refused_until_the_receiver_starts(tmp_path, hooks):
    port = free_port()
    n = notifier(tmp_path, receiver(f"http://127.0.0.1:{port}/hook", max_backoff=5),
                 group_wait=0)
    n.handle(incident(1), T0)
    drive(n, T0, T0 + 30)
    assert n.outbox() == {"pending": 1}
    hook = hooks(port=port)
    drive(n, T0 + 30, T0 + 36)                              # the delay is capped at 5 s
    assert len(hook.requests) == 1 and n.outbox() == {"delivered": 1}
    n.close()


def test_retry_after_and_timeouts_are_retried(tmp_path, hooks):
    hook = hooks(statuses=(429,), headers={"Retry-After": "20"})
    n = notifier(tmp_path, receiver(hook), group_wait=0)
    n.handle(incident(1), T0)
    drive(n, T0, T0 + 19.5)
    assert len(hook.requests) == 1
    drive(n, T0 + 20, T0 + 21)
    assert len(hook.requests) == 2 and n.outbox() == {"delivered": 1}
    n.close()
    slow = hooks(delay=0.5)
    n = notifier(tmp_path / "2", receiver(slow, timeout=0.1), group_wait=0)
    n.handle(incident(1), T0)
    assert n.tick(T0).retrying == 1
    assert n.outbox() == {"pending": 1}
    n.close()


def test_permanent_rejection_is_not_retried_and_does_not_block(tmp_path, hooks):
    hook = hooks(statuses=(400,))
    n = notifier(tmp_path, receiver(hook), group_wait=0)
    n.handle(incident(1), T0)
    n.handle(incident(2, host="compute-3"), T0)
    drive(n, T0, T0 + 10)
    assert [r["status"] for r in hook.requests] == [400, 200]
    assert n.outbox() == {"failed": 1, "delivered": 1}
    n.close()


def test_restart_during_an_outage_loses_nothing_and_sends_nothing_twice(tmp_path, hooks):
    port = free_port()
    rec = receiver(f"http://127.0.0.1:{port}/hook")
    docs = [incident(1), incident(2, host="compute-3")]
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)
    n.handle_many(docs, T0)
    drive(n, T0 + 30, T0 + 40)                              # flushed; the receiver is down
    assert n.outbox() == {"pending": 2}
    n.close()                                               # the notifier stops (or dies)

    hook = hooks(port=port)
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)
    assert n.handle_many(docs, T0 + 50) == 0                # Kafka redelivers: nothing new
    n.tick(T0 + 50)
    assert len(hook.requests) == 2
    drive(n, T0 + 50, T0 + 60)
    n.tick(T0 + 340)                                        # next group_interval: nothing changed
    n.close()
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)    # and once more
    n.tick(T0 + 400)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.delivered]
    assert len(keys) == 2 and len(set(keys)) == 2
    # later notifications of the same groups never reuse a key
    n.handle_many([resolved(d, T0 + 500) for d in docs], T0 + 500)
    n.tick(T0 + 640)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.delivered]
    assert len(keys) == 4 and len(set(keys)) == 4
    n.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_verification_settings(tmp_path, hooks):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    hook = hooks(tls=(str(cert), str(key)))
    cases = {"system-cas": {}, "own-ca": {"ca_file": str(cert)}, "no-verify": {"verify_tls": False}}
    n = notifier(tmp_path, *(receiver(hook, name=k, **kw) for k, kw in cases.items()), group_wait=0)
    n.handle(incident(1), T0)
    report = n.tick(T0)
    assert (report.delivered, report.retrying) == (2, 1)    # the self-signed cert is not trusted
    pending = n.store.db.execute("SELECT receiver, last_error FROM outbox WHERE status = 'pending'").fetchall()
    assert [r for r, _ in pending] == ["system-cas"] and "CERTIFICATE_VERIFY_FAILED" in pending[0][1]
    n.close()


def test_basic_auth_from_the_url_and_masked_in_config_show(tmp_path, hooks):
    hook = hooks()
    url = hook.url.replace("http://", "http://alerts:pa%20ss@")
    n = notifier(tmp_path, receiver(url), group_wait=0)
    n.handle(incident(1), T0)
    n.tick(T0)
    import base64
    assert hook.requests[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"alerts:pa ss").decode()
    assert receiver(url).redacted()["url"] == url.replace("pa%20ss", "***")
    n.close()


def test_one_notifier_per_state_dir(tmp_path, hooks):
    n = notifier(tmp_path, receiver(hooks()))
    with pytest.raises(NotifierBusy):
        notifier(tmp_path, receiver(hooks()))
    n.close()


# --- signatures and payloads ---------------------------------------------------------------------

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


# --- settings ------------------------------------------------------------------------------------

def test_notify_settings_from_file_and_env(tmp_path):
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text("""
[notify]
group_wait = 10
group_by = ["type"]

[[notify.receivers]]
name = "ops"
url = "https://hooks.example/ops"
style = "alertmanager"
secret_env = "OPS_HOOK_SECRET"
types = ["disk_full"]
hosts = ["compute-*"]

[[notify.receivers]]
name = "chat"
url = "http://chat.example/hook"
style = "slack"
send_resolved = false
""")
    s = load(str(cfg), env={"OPS_HOOK_SECRET": "from-env", "OSLOSCOPE_NOTIFY_GROUP_BY": "type,host",
                            "OSLOSCOPE_NOTIFY_REPEAT_INTERVAL": "600"})
    assert s.notify.group_wait == 10.0 and s.notify.group_by == ("type", "host")
    assert s.notify.repeat_interval == 600.0 and s.notify.state_dir == ".osloscope/notify"
    ops, chat = s.receivers
    assert ops.secret == "from-env" and ops.types == ("disk_full",) and ops.hosts == ("compute-*",)
    assert ops.timeout == 10.0 and ops.verify_tls and ops.max_backoff == 300.0
    assert chat.send_resolved is False and chat.secret == ""
    shown = S.to_toml(s)
    assert "from-env" not in shown and "[[notify.receivers]]" in shown
    again = tmp_path / "shown.toml"
    again.write_text(shown)
    assert load(str(again), env={"OPS_HOOK_SECRET": "from-env"}) == s
    assert S.defaults().receivers == () and S.defaults().notify.group_by == ("type", "host")


def test_notify_settings_errors_are_located_and_reported_together(tmp_path):
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text("""
[notify]
group_by = ["type", "hostname"]
group_interval = 0

[[notify.receivers]]
name = "ops"
url = "ftp://hooks.example/ops"
style = "pagerduty"
severities = ["fatal"]
secret = "x"
secret_env = "Y"
timeot = 3

[[notify.receivers]]
name = "ops"
url = "http://b.example/"
secret_env = "UNSET_SECRET_VAR"
ca_file = "/nonexistent.pem"

[[notify.receivers]]
style = "json"
""")
    with pytest.raises(SettingsError) as info:
        load(str(cfg), env={"OSLOSCOPE_NOTIFY_RECEIVERS": "[]"})
    errors = "\n".join(info.value.errors)
    p = str(cfg)
    for needle in (
            f"{p}: notify.group_by: unknown label(s) 'hostname'",
            f"{p}: notify.group_interval: must be > 0",
            f"{p}: notify.receivers[0].url: expected an http:// or https:// URL",
            f"{p}: notify.receivers[0].style: must be one of 'json', 'alertmanager', 'slack', got 'pagerduty'",
            f"{p}: notify.receivers[0].severities: unknown severity 'fatal'",
            f"{p}: notify.receivers[0].timeot: unknown setting; did you mean timeout? (line 13)",
            f"{p}: notify.receivers[0].secret_env: set either secret or secret_env, not both (line 12)",
            f"{p}: notify.receivers[1].secret_env: environment variable UNSET_SECRET_VAR is not set",
            f"{p}: notify.receivers[1].ca_file: no such file",
            f"{p}: notify.receivers[1].name: 'ops' is also notify.receivers[0].name",
            f"{p}: notify.receivers[2]: missing name",
            f"{p}: notify.receivers[2]: missing url",
            "env OSLOSCOPE_NOTIFY_RECEIVERS: notify.receivers cannot be set from the environment"):
        assert needle in errors, needle


def test_notify_command_needs_a_receiver(tmp_path, monkeypatch, capsys):
    from pipeline import cli
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OSLOSCOPE_"):
            monkeypatch.delenv(name)
    assert cli.main(["notify"]) == 2
    assert "no receivers" in capsys.readouterr().err


def test_notifier_core_is_independent_of_settings_loading(tmp_path, hooks):
    """Frozen settings objects can be varied with dataclasses.replace, like the loader builds them."""
    hook = hooks()
    base = receiver(hook)
    n = notifier(tmp_path, replace(base, style="slack"), group_wait=0)
    n.handle(incident(1), T0)
    assert n.tick(T0).delivered == 1 and "blocks" in hook.json()
    n.close()
