"""One webhook request, and how long to wait after a failed one.

:func:`post` sends a notification body over HTTP or HTTPS (:func:`tls_context` from the
receiver's ``ca_file``/``verify_tls``; user and password of the URL as Basic auth) with the
:func:`headers` every request carries (``Idempotency-Key``, ``X-Osloscope-Timestamp`` and, with a
secret, ``X-Osloscope-Signature``). 2xx is success; other 4xx than 408/425/429, and 3xx (not
followed), fail for good; anything else is retried after :class:`Backoff` (capped exponential
with equal jitter, at least ``Retry-After``).
"""
from __future__ import annotations

import base64
import email.utils
import http.client
import random
import ssl
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote, urlsplit

from pipeline.alerting.payloads import sign
from pipeline.settings import ReceiverSettings

BASE_BACKOFF = 1.0                      # first retry after 0.5..1 s, doubling up to max_backoff
RETRYABLE_4XX = frozenset((408, 425, 429))


def _user_agent() -> str:
    try:
        from importlib.metadata import version
        return f"osloscope/{version('osloscope')}"
    except Exception:
        return "osloscope"


USER_AGENT = _user_agent()


def headers(r: ReceiverSettings, idempotency_key: str, body: bytes, now: float) -> dict:
    """The headers of one attempt at ``now`` (the signature covers the timestamp)."""
    ts = str(int(now))
    h = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
         "Idempotency-Key": idempotency_key, "X-Osloscope-Timestamp": ts}
    if r.secret:
        h["X-Osloscope-Signature"] = sign(r.secret, ts, body)
    return h


def tls_context(r: ReceiverSettings) -> ssl.SSLContext | None:
    """The TLS settings of an https:// receiver (None for http://)."""
    if not r.url.startswith("https://"):
        return None
    ctx = ssl.create_default_context(cafile=r.ca_file or None)
    if not r.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Attempt:
    ok: bool
    permanent: bool = False
    status: int | None = None
    retry_after: float | None = None
    error: str = ""


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None


def post(r: ReceiverSettings, body: bytes, headers: Mapping[str, str], ctx: ssl.SSLContext | None,
         now: float) -> Attempt:
    """One POST of ``body`` to ``r.url``; 2xx is success, other 4xx than 408/425/429 (and 3xx,
    not followed) fail for good, everything else is retried."""
    u = urlsplit(r.url)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    hdrs = dict(headers)
    if u.username is not None:
        cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        hdrs["Authorization"] = "Basic " + base64.b64encode(cred).decode()
    try:
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=r.timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=r.timeout)
        try:
            conn.request("POST", path, body=body, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read(65536)[:300].decode("utf-8", "replace")
            status, after = resp.status, resp.getheader("Retry-After")
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:       # refused, timeout, TLS, reset, ...
        return Attempt(False, error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Attempt(True, status=status)
    error = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
    permanent = (300 <= status < 500) and status not in RETRYABLE_4XX
    if 300 <= status < 400:
        error += " (redirects are not followed; configure the final URL)"
    return Attempt(False, permanent=permanent, status=status, retry_after=_retry_after(after, now),
                   error=error)


@dataclass
class Backoff:
    """Per receiver: while it fails, its notifications wait (all of them: it is down for all)."""
    failures: int = 0
    next_attempt: float = 0.0

    def fail(self, now: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
        self.failures += 1
        step = min(cap, BASE_BACKOFF * 2 ** min(self.failures - 1, 32))
        delay = step / 2 + rng.uniform(0, step / 2)          # "equal jitter": at least half a step
        if retry_after is not None:
            delay = max(delay, min(retry_after, cap))
        self.next_attempt = now + delay
        return delay

    def reset(self) -> None:
        self.failures, self.next_attempt = 0, 0.0
