"""auth_failure: credentials rejected.

Two kinds of signal:

* **Rates** per source address and per user: keystone ``Authorization
  failed ... from <ip>``, keystone user failures (unknown user, locked,
  disabled, expired password) and HTTP 401/403 access lines are counted in
  two sliding windows:

  - *fast* (rule ``auth_failure.burst``): >= ``threshold`` in ``window``
    seconds (default 10 in 5 min) -- a burst;
  - *slow* (rule ``auth_failure.slow``): >= ``slow_threshold`` in
    ``slow_window`` seconds (default 30 in 2 h) -- one client failing every
    30 to 60 seconds all day long never makes a burst, but it makes this.

  The incident names the window that fired (title, ``details.window`` and
  ``details.window_label``: ``fast: 10 in 5 min`` / ``slow: 30 in 2 h``).
  One page per key: while a key (address or user) has an open rate
  incident of either window, every further failure of that key goes into
  it and the other window opens nothing (a burst of 30 is one fast
  incident, not a fast and a slow one); failures that went into an incident
  are not counted again towards a later slow window. A rate incident
  resolves after 15 min without failures. One 401 from an expired token is
  ordinary traffic and never fires. A per-user rate fires only when its
  failures come from two or more source addresses (or carry none); a single
  address is already covered by its own rate.
  The rates are keyed by address and by user, not by host: behind a load
  balancer one client's failures land on every keystone. In the worker they
  are counted where the key lives (``AuthRateRouter`` routes each rejection
  to ``FleetAuthRates``, detectors/engine.py), so a burst spread over three
  controllers is one burst, as in ``analyze``.
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
from .base import Detector, FleetDetector, Router
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
    threshold: int = 10          # fast window: rejected authentications per source address or user ...
    window: float = 300.0        # ... within this many seconds (sliding): a burst
    slow_threshold: int = 30     # slow window: rejected authentications per source address or user ...
    slow_window: float = 7200.0  # ... within this many seconds (sliding): a slow, persistent rate
    max_keys: int = 100_000      # source addresses and users followed at once


def span(seconds: float) -> str:
    """``300`` -> ``5 min``, ``7200`` -> ``2 h``, ``90`` -> ``90 s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class _Recent:
    """One key's recent failures: the last ``threshold`` with their evidence
    (fast window), the last ``slow_threshold`` as (ts, timestamp, address)."""
    __slots__ = ("fast", "slow")

    def __init__(self, fast: int, slow: int) -> None:
        self.fast: deque = deque(maxlen=fast)
        self.slow: deque = deque(maxlen=slow)

    @property
    def last_ts(self) -> float | None:
        return self.slow[-1][0] if self.slow else (self.fast[-1][0] if self.fast else None)


class AuthFailures(Detector):
    name = "auth_failure"
    quiet_period = 900.0

    def __init__(self, config: AuthFailuresConfig = AuthFailuresConfig(), *, rates: bool = True) -> None:
        super().__init__()
        self.config = config
        self.rates = rates           # False: hard failures only (the rates run fleet-keyed)
        self.threshold = config.threshold
        self.window = config.window
        self.slow_threshold = config.slow_threshold
        self.slow_window = config.slow_window
        self.max_keys = config.max_keys
        self.windows = {
            "fast": ("auth_failure.burst", "burst", self.threshold, self.window),
            "slow": ("auth_failure.slow", "slow", self.slow_threshold, self.slow_window),
        }
        # (kind, who) -> _Recent
        self.recent: KeyedStore[tuple, _Recent] = KeyedStore(config.max_keys)

    def label(self, which: str) -> str:
        _, _, threshold, window = self.windows[which]
        return f"{which}: {threshold} in {span(window)}"

    # -- rate signals --------------------------------------------------------
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

    def _count(self, kind: str, who: str, ts: float, ip: str | None, ev: Event) -> _Recent:
        key = (kind, who)
        r = self.recent.get(key)
        if r is None:
            r = _Recent(self.threshold, self.slow_threshold)
            self.recent.put(key, r)
        else:
            self.recent.touch(key)
        r.fast.append((ts, ip, evidence_of(ev)))
        r.slow.append((ts, ev.timestamp, ip))
        return r

    @staticmethod
    def _one_address(addresses) -> bool:
        """All failures carry the same source address (a user's rate is then
        the address's own)."""
        seen = set()
        for a in addresses:
            if not a:
                return False
            seen.add(a)
        return len(seen) == 1

    def _rate(self, kind: str, who: str, ev: Event, ip: str | None, user: str | None,
              out: list[dict]) -> None:
        ts = ev.ts or 0.0
        r = self._count(kind, who, ts, ip, ev)
        inc = self.book.get(("burst", kind, who), ts) or self.book.get(("slow", kind, who), ts)
        if inc is None:
            fast, slow = r.fast, r.slow
            if (len(fast) >= self.threshold and ts - fast[0][0] <= self.window
                    and not (kind == "user" and self._one_address(a for _, a, _ in fast))):
                inc = self._open("fast", kind, who, fast[0][0], ts, out)
                for earlier_ts, _, item in list(fast)[:-1]:   # the window that crossed the threshold
                    inc.add_item(item, earlier_ts)
            elif (len(slow) >= self.slow_threshold and ts - slow[0][0] <= self.slow_window
                    and not (kind == "user" and self._one_address(a for _, _, a in slow))):
                inc = self._open("slow", kind, who, slow[0][0], ts, out)
                k = min(len(fast), len(slow)) - 1             # the latest records, with their evidence
                with_evidence = list(fast)[-1 - k:-1] if k > 0 else []
                unseen = list(slow)[:len(slow) - k - 1]
                if unseen:                                    # older ones: counted, first one dated
                    inc.count += len(unseen)
                    inc.first_ts, inc.first_seen = unseen[0][0], unseen[0][1]
                for earlier_ts, _, item in with_evidence:
                    inc.add_item(item, earlier_ts)
            else:
                return
        r.fast.clear()            # what goes into an incident is not counted again
        r.slow.clear()
        which = inc.details.get("window") or ("fast" if inc.key[0] == "burst" else "slow")
        _, _, threshold, window = self.windows[which]
        inc.add(ev, resources={"source_ip": [ip] if ip else [], "user": [user] if user else []})
        inc.summary = (f"{inc.count} rejected authentications for {kind.replace('_', ' ')} {who} "
                       f"between {inc.first_seen} and {inc.last_seen} ({which} window: "
                       f"{threshold} in {span(window)})")
        if inc.severity == "warning" and inc.count >= 5 * threshold:
            inc.severity = "error"
        out.append(inc.to_doc())

    def _open(self, which: str, kind: str, who: str, start: float, ts: float,
              out: list[dict]) -> Incident:
        rule, tag, threshold, window = self.windows[which]
        label = "source address" if kind == "source_ip" else "user"
        key = (tag, kind, who)
        texts_of = TEXTS["burst" if which == "fast" else "slow"]
        inc = self.book.touch(key, ts, lambda: Incident(
            rule=rule, type="auth_failure", key=key, window_start=start, severity="warning",
            title=f"Authentication failures from {label} {who} ({self.label(which)})",
            probable_cause=texts_of["probable_cause"],
            remediation=texts_of["remediation"].format(who=f"{label} {who}"),
        ), out)
        inc.details.update(window=which, window_label=self.label(which), threshold=threshold,
                           window_seconds=window)
        return inc

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

    def _text(self, ev: Event) -> str | None:
        """The text to look at when ``ev`` may be a rejection, else None."""
        if ev.kind == "unparsed" or (ev.level == "DEBUG" and ev.status_code is None):
            return None    # rejections are logged at INFO (access lines) and above
        if ev.status_code in (401, 403):
            return ev.message or ""
        # every _PREFILTER alternative contains one of these substrings;
        # eight substring tests cost less than one search of it
        text = ev.text()
        if not ("uthoriz" in text or "token" in text or "ogin" in text or "denied" in text
                or "REFUSED" in text or "find user" in text or "ccount is" in text
                or "assword is" in text) or not _PREFILTER.search(text):
            return None
        return text

    def classify(self, ev: Event) -> tuple | None:
        """("hard", (what, account, resources)) for a hard failure, ("rate", ip,
        user) for one rejected authentication to count, else None."""
        text = self._text(ev)
        if text is None:
            return None
        hard = self._hard(ev, text) if ev.status_code is None else None
        if hard:
            return "hard", hard
        sig = self._signal(ev, text)
        if sig:
            ip, user = sig
            if ip:
                ip = ip.split(",")[0].strip()
            if ip or user:
                return "rate", ip, user
        return None

    def feed(self, ev: Event) -> list[dict]:
        out: list[dict] = []
        found = self.classify(ev)
        if found is None:
            return out
        if found[0] == "hard":
            what, account, resources = found[1]
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
        if self.rates:
            _, ip, user = found
            if ip:
                self._rate("source_ip", ip, ev, ip, user, out)
            if user:
                self._rate("user", user, ev, ip, user, out)
        return out

    def advance(self, now: float) -> list[dict]:
        horizon = max(self.window, self.slow_window)
        self.recent.expire(lambda _k, r: r.last_ts is None or now - r.last_ts > horizon)
        return self.book.advance(now)

    def snapshot(self) -> dict:
        return {"incidents": self.book.snapshot(),
                "rates": self.recent.snapshot(
                    lambda r: {"fast": [list(x) for x in r.fast], "slow": [list(x) for x in r.slow]})}

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))

        def decode(v: dict) -> _Recent:
            r = _Recent(self.threshold, self.slow_threshold)
            r.fast.extend(map(tuple, v.get("fast", ())))
            r.slow.extend(map(tuple, v.get("slow", ())))
            return r

        # a snapshot before the slow window ("recent": ("burst", kind, who) -> fast entries)
        # restores its fast windows; their slow windows start empty
        old = [[list(k)[1:], {"fast": q}] for k, q in state.get("recent", [])]
        self.recent.restore(state.get("rates", old), decode)



def rate_keys(found: tuple | None) -> list[str]:
    """The fleet keys of a rejection ``AuthFailures.classify`` found."""
    if found is None or found[0] != "rate":
        return []
    _, ip, user = found
    return ([f"source_ip\x1f{ip}"] if ip else []) + ([f"user\x1f{user}"] if user else [])


class AuthRateRouter(Router):
    """Routes each rejected authentication to its address and its user."""

    name = "auth_failure_rate"

    def __init__(self, config: AuthFailuresConfig = AuthFailuresConfig()) -> None:
        self.classifier = AuthFailures(config, rates=False)

    def route(self, ev: Event) -> list[str]:
        return rate_keys(self.classifier.classify(ev))


class FleetAuthRates(FleetDetector, AuthFailures):
    """The fast and slow rates per source address and per user, fleet-keyed."""

    name = "auth_failure_rate"

    def __init__(self, config: AuthFailuresConfig = AuthFailuresConfig()) -> None:
        AuthFailures.__init__(self, config)

    def feed(self, ev: Event) -> list[dict]:
        return []

    def feed_keyed(self, ev: Event, key: str) -> list[dict]:
        found = self.classify(ev)
        if found is None or found[0] != "rate":
            return []
        kind, _, who = key.partition("\x1f")
        out: list[dict] = []
        self._rate(kind, who, ev, found[1], found[2], out)
        return out
