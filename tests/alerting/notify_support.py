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
    """An HTTP server recording every POST; answers with the scripted statuses, then 200.

    The one webhook receiver of the notifier's tests (these unit tests and the integration
    tests of ``osloscope notify``). Each request is recorded on arrival as a dict: ``path``,
    ``headers``, ``body``, ``status`` (None until answered), ``at`` (time.monotonic()) and
    ``held``. ``statuses`` (or :meth:`fail` later) script the answers, ``delay`` slows every
    answer, ``headers`` are added to every answer. :meth:`hold` keeps the requests that arrive
    from then on unanswered until :meth:`release`, so that a test can kill a notifier while its
    POST is in flight; a held request never counts as delivered (its client may be gone when it
    is answered).
    """

    def __init__(self, statuses=(), port: int = 0, delay: float = 0.0, headers=None, tls=None,
                 path: str = "/hook") -> None:
        self.requests: list[dict] = []
        self.script = list(statuses)
        self.delay, self.extra, self.path = delay, headers or {}, path
        self.lock = threading.Lock()
        self.open_gate = threading.Event()          # cleared while requests are held
        self.open_gate.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    held = not hook.open_gate.is_set()
                    rec = {"path": self.path, "headers": dict(self.headers), "body": body,
                           "status": None, "at": time.monotonic(), "held": held}
                    hook.requests.append(rec)
                if held:
                    hook.open_gate.wait()
                with hook.lock:
                    status = hook.script.pop(0) if hook.script else 200
                if hook.delay:
                    time.sleep(hook.delay)
                rec["status"] = status
                self.send_response(status)
                for k, v in hook.extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass                    # a client killed mid-request: nothing to report

        self.server = Server(("127.0.0.1", port), Handler)
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
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"

    def snapshot(self) -> list[dict]:
        """The requests so far (a copy: the server threads append to the list)."""
        with self.lock:
            return list(self.requests)

    @property
    def delivered(self) -> list[dict]:
        """The requests answered 2xx (held ones excepted)."""
        return [r for r in self.snapshot() if not r["held"] and r["status"] and 200 <= r["status"] < 300]

    def json(self, i: int = -1):
        return json.loads(self.snapshot()[i]["body"])

    def fail(self, *statuses: int) -> None:
        """Answer the next requests with ``statuses`` (then 200 again)."""
        with self.lock:
            self.script.extend(statuses)

    def hold(self) -> None:
        """From now on, leave requests unanswered until :meth:`release`."""
        self.open_gate.clear()

    def release(self) -> None:
        self.open_gate.set()

    def close(self) -> None:
        self.release()
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

