"""auth_failure: credentials rejected.

Two kinds of signal:

* **Bursts** (rule ``auth_failure.burst``): keystone ``Authorization failed ...
  from <ip>``, keystone user failures (unknown user, locked, disabled,
  expired password) and HTTP 401/403 access lines are counted per source
  address and per user in a sliding window (default >= 10 in 300 s). One
  401 from an expired token is ordinary traffic and never fires. A per-user
  burst fires only when its failures come from two or more source addresses
  (or carry none); a single address is already covered by its own burst.
* **Hard failures** that are never normal, one incident per (host, service,
  account) while they continue: MySQL ``Access denied for user`` (1044/1045,
  seed S16), RabbitMQ ``ACCESS_REFUSED`` / ``Login was refused``, nova
  ``Not authorized for image`` / ``ImageNotAuthorized`` (seed S10), services
  unable to get or validate an admin/service token.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from . import texts
from .base import Detector
from .incident import Incident, evidence_of
from .model import UUID, Event
from .store import KeyedStore


KEYSTONE_AUTHZ = re.compile(r"Authorization failed\. .*? from (\S+?)\s*$", re.S)
KEYSTONE_USER = re.compile(
    r"Could not find user: (\S+?)\.?$|The account is (?:locked|disabled) for user: (\S+?)\.?$"
    r"|The password is expired and needs to be changed for user: (\S+?)\.?$", re.M)
KSM_TOKEN = re.compile(r"Authorization failed for token")

# Hard failures: (rule, regex, severity, title, cause, remediation)
MYSQL = re.compile(r"Access denied for user '([^']*)'@'([^']*)'(?: to database '([^']*)')?")
RABBIT = re.compile(r"ACCESS_REFUSED|Login was refused|Check login credentials|login refused: user '([^']*)'")
IMAGE = re.compile(r"Not authorized for image (" + UUID + r")|\bImageNotAuthorized\b")
SERVICE_TOKEN = re.compile(
    r"not able to generate a valid admin token|Unable to validate token"
    r"|Identity server rejected authorization|Bad response code while validating token"
    r"|Networking client is experiencing an unauthorized exception"
    r"|Unable to (?:obtain|get) (?:an )?admin token")
# The trigger phrases: a record is looked at only when one of them occurs.
AUTH_PHRASES = (
    "Authorization failed", "Could not find user", "The account is", "The password is expired",
    "Access denied for user", "ACCESS_REFUSED", "Login was refused", "Check login credentials",
    "login refused", "Not authorized for image", "ImageNotAuthorized", "admin token",
    "Unable to validate token", "rejected authorization", "validating token", "unauthorized exception",
)
_PREFILTER = re.compile("|".join(map(re.escape, AUTH_PHRASES)))

TEXTS = texts.load("auth_failure")     # detectors/texts/auth_failure.toml
HARD = ("database", "rabbitmq", "image", "service_credentials")


@dataclass(frozen=True)
class AuthFailuresConfig:
    threshold: int = 10          # rejected authentications per source address or user that make a burst
    window: float = 300.0        # seconds the burst must fit in (sliding)
    max_keys: int = 100_000      # source addresses and users followed at once


class AuthFailures(Detector):
    name = "auth_failure"
    quiet_period = 900.0

    def __init__(self, config: AuthFailuresConfig = AuthFailuresConfig()) -> None:
        super().__init__()
        self.config = config
        self.threshold = config.threshold
        self.window = config.window
        self.max_keys = config.max_keys
        # key -> deque[(ts, source_ip)], at most `threshold` entries each
        self.recent: KeyedStore[tuple, deque] = KeyedStore(config.max_keys)

    # -- burst signals -------------------------------------------------------
    def _signal(self, ev: Event, text: str) -> tuple[str | None, str | None] | None:
        """(source_ip, user) when ``ev`` is one rejected authentication."""
        if ev.status_code in (401, 403):
            return ev.source_ip, ev.user_id or ev.user_name
        if "Authorization failed" in text:
            m = KEYSTONE_AUTHZ.search(ev.message or "")
            if m:
                return m.group(1), ev.user_id
            if KSM_TOKEN.search(text):
                return None, ev.user_id
        m = KEYSTONE_USER.search(text)
        if m:
            return ev.source_ip, next(g for g in m.groups() if g)
        return None

    def _count(self, key: tuple, ts: float, ip: str | None, ev: Event) -> deque:
        return self.recent.append(key, (ts, ip, evidence_of(ev)), self.threshold)

    def _burst(self, kind: str, who: str, ev: Event, ip: str | None, user: str | None,
               out: list[dict]) -> None:
        ts = ev.ts or 0.0
        key = ("burst", kind, who)
        q = self._count(key, ts, ip, ev)
        inc = self.book.get(key, ts)
        if inc is None:
            if len(q) < self.threshold or ts - q[0][0] > self.window:
                return
            if kind == "user" and len({a for _, a, _ in q if a}) == 1 and all(a for _, a, _ in q):
                return  # one address: its own per-address burst covers it
            label = "source address" if kind == "source_ip" else "user"
            inc = self.book.touch(key, ts, lambda: Incident(
                rule="auth_failure.burst", type="auth_failure", key=key, window_start=q[0][0],
                severity="warning", title=f"Authentication failures from {label} {who}",
                probable_cause=TEXTS["burst"]["probable_cause"],
                remediation=TEXTS["burst"]["remediation"].format(who=f"{label} {who}"),
            ), out)
            for earlier_ts, _, item in list(q)[:-1]:   # the window that crossed the threshold
                inc.add_item(item, earlier_ts)
        inc.add(ev, resources={"source_ip": [ip] if ip else [], "user": [user] if user else []})
        inc.details["threshold"] = self.threshold
        inc.details["window_seconds"] = self.window
        inc.summary = (f"{inc.count} rejected authentications for {kind.replace('_', ' ')} {who} "
                       f"between {inc.first_seen} and {inc.last_seen} (threshold "
                       f"{self.threshold} in {int(self.window)} s)")
        if inc.severity == "warning" and inc.count >= 5 * self.threshold:
            inc.severity = "error"
        out.append(inc.to_doc())

    # -- hard failures -------------------------------------------------------
    def _hard(self, ev: Event, text: str) -> tuple[str, str, dict] | None:
        m = MYSQL.search(text)
        if m:
            user, _host, db = m.groups()
            return "database", user, {"user": [user], "database": [db] if db else []}
        m = RABBIT.search(text)
        if m:
            user = m.group(1)
            return "rabbitmq", user or "transport_url", {"user": [user] if user else []}
        m = IMAGE.search(text)
        if m:
            images = re.findall(r"Not authorized for image (" + UUID + ")", text)
            return "image", "glance", {"image": images}
        if SERVICE_TOKEN.search(text):
            return "service_credentials", ev.service or "service", {}
        return None

    def feed(self, ev: Event) -> list[dict]:
        if ev.kind == "unparsed" or (ev.level == "DEBUG" and ev.status_code is None):
            return []      # rejections are logged at INFO (access lines) and above
        out: list[dict] = []
        if ev.status_code in (401, 403):
            text = ev.message or ""
        else:
            # every _PREFILTER alternative contains one of these substrings;
            # eight substring tests cost less than one search of it
            text = ev.text()
            if not ("uthoriz" in text or "token" in text or "ogin" in text or "denied" in text
                    or "REFUSED" in text or "find user" in text or "ccount is" in text
                    or "assword is" in text) or not _PREFILTER.search(text):
                return out
        hard = self._hard(ev, text) if ev.status_code is None else None
        if hard:
            what, account, resources = hard
            t = TEXTS[what]
            severity, title, cause, remediation = t["severity"], t["title"], t["probable_cause"], t["remediation"]
            host = ev.host or "unknown"
            key = ("hard", what, host, ev.service, account)
            ts = ev.ts or 0.0
            inc = self.book.touch(key, ts, lambda: Incident(
                rule=f"auth_failure.{what}", type="auth_failure", key=key, window_start=ts,
                severity=severity, title=f"{title} on {host} ({ev.service})",
                probable_cause=cause, remediation=remediation.format(host=host),
            ), out)
            inc.add(ev, resources=resources)
            inc.summary = (f"{inc.count} time(s) on {host} {ev.service} between "
                           f"{inc.first_seen} and {inc.last_seen}: account {account}")
            out.append(inc.to_doc())
            return out
        sig = self._signal(ev, text)
        if sig:
            ip, user = sig
            if ip:
                ip = ip.split(",")[0].strip()
                self._burst("source_ip", ip, ev, ip, user, out)
            if user:
                self._burst("user", user, ev, ip, user, out)
        return out

    def advance(self, now: float) -> list[dict]:
        self.recent.expire(lambda _k, q: not q or now - q[-1][0] > self.window)
        return self.book.advance(now)

    def snapshot(self) -> dict:
        return {"incidents": self.book.snapshot(),
                "recent": self.recent.snapshot(lambda q: [list(x) for x in q])}

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.recent.restore(state.get("recent", []), lambda q: deque(map(tuple, q), maxlen=self.threshold))

