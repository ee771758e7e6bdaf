"""Helpers of the alerting tests: a real webhook receiver, incident documents, notifiers.

Receivers are real HTTP servers (http.server in a thread) on 127.0.0.1; time is a number passed
to ``handle``/``tick``, so group timers and backoff need no sleeping.
"""
from __future__ import annotations

import hashlib
import json
import random
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.alerting.notifier import Notifier
from pipeline.settings import NotifySettings, ReceiverSettings

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


def drive(n: Notifier, start: float, end: float, step: float = 0.25) -> None:
    t = start
    while t <= end:
        n.tick(t)
        t += step

