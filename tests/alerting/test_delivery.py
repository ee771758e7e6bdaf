"""Delivery (pipeline/alerting/delivery.py): outages, backoff, Retry-After, timeouts, permanent
rejections, TLS and basic auth, against real HTTP(S) receivers."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from notify_support import T0, drive, free_port, incident, notifier, receiver


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
