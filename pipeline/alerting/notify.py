"""``osloscope notify``: incident changes -> webhooks, with Alertmanager's noise control.

  incidents topic --(kafka-python, group <app_id>-notify, manual commits)--> Notifier.handle
  Notifier.handle(doc, now)  every receiver whose filters (types, severities, hosts, services)
                             accept the incident holds it as an alert in the group of its
                             ``group_by`` label values
  Notifier.tick(now)         flushes due groups the way Alertmanager's aggregation groups do
                             (first after group_wait, then every group_interval; a notification
                             only when an incident opened, or resolved with send_resolved, or
                             repeat_interval passed; silenced incidents left out) into the outbox,
                             then POSTs due outbox entries, retrying failures with capped
                             exponential backoff and jitter until a 2xx
  outbox                     SQLite (``<notify.state_dir>/notify.sqlite3``) with the groups, the
                             pending notifications and the newest version seen of each incident

The Kafka loop commits offsets only after a batch's incidents are in the SQLite file, so a crash
replays at most documents whose effect is already stored, and a stored version makes handling a
document again a no-op. A notification is written to the outbox in the same transaction that
advances its group's revision, so its ``Idempotency-Key`` (receiver, group, revision) is never
reused for different content; retries and a crash between a 2xx and its bookkeeping send the
same key again, which receivers can drop.

Every request carries ``X-Osloscope-Timestamp`` (unix seconds) and, with a secret,
``X-Osloscope-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (see :func:`sign`,
:func:`verify` and deploy/README.md, "Webhooks"). Time only arrives as ``now`` arguments; the
Kafka loop passes the wall clock, tests a fake one.
"""
from __future__ import annotations

import base64
import email.utils
import fcntl
import hashlib
import hmac
import http.client
import logging
import random
import sqlite3
import ssl
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from pipeline import codec
from pipeline.settings import NotifySettings, ReceiverSettings
from pipeline.alerting.silences import store_for

log = logging.getLogger("osloscope.notify")

DB_NAME = "notify.sqlite3"
BASE_BACKOFF = 1.0                      # first retry after 0.5..1 s, doubling up to max_backoff
INCIDENT_MEMORY = 7 * 86400.0           # how long the newest version of an incident is remembered
OUTBOX_RETENTION = 7 * 86400.0          # delivered and failed notifications are kept this long
SLACK_MAX_INCIDENTS = 20                # Slack allows 50 blocks per message
ZERO_TIME = "0001-01-01T00:00:00Z"      # Alertmanager's endsAt of a firing alert
RETRYABLE_4XX = frozenset((408, 425, 429))
SIGNATURE_TOLERANCE = 300.0


class NotifierBusy(Exception):
    """Another notifier holds the state directory."""


# --- incidents as alerts -------------------------------------------------------------------------

def doc_problem(doc) -> str | None:
    """Why ``doc`` cannot be handled as an incident document, or None."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    for key in ("id", "type", "status"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            return f"missing {key}"
    if doc["status"] not in ("open", "resolved"):
        return f"unknown status {doc['status']!r}"
    return None


def labels_of(doc: Mapping) -> dict[str, str]:
    """The alert labels of an incident; empty ones are left out (a missing label matches "")."""
    labels = {"alertname": doc.get("type"), "type": doc.get("type"), "rule": doc.get("rule"),
              "severity": doc.get("severity"), "host": doc.get("host"), "service": doc.get("service"),
              "incident_id": doc.get("id")}
    return {k: str(v) for k, v in labels.items() if v}


def accepts(r: ReceiverSettings, doc: Mapping) -> bool:
    """Whether receiver ``r``'s filters let the incident through (empty filter = everything)."""
    if r.types and doc.get("type") not in r.types:
        return False
    if r.severities and doc.get("severity") not in r.severities:
        return False
    for patterns, one, many in ((r.hosts, "host", "hosts"), (r.services, "service", "services")):
        if patterns:
            values = {v for v in [doc.get(one), *(doc.get(many) or ())] if v}
            if not any(fnmatchcase(v, p) for v in values for p in patterns):
                return False
    return True


def group_key(labels: Mapping[str, str]) -> str:
    """``{host="compute-2", type="disk_full"}``, like Alertmanager's label sets."""
    return "{" + ", ".join(f"{k}={codec.dumps(labels[k]).decode()}" for k in sorted(labels)) + "}"


def _version(doc: Mapping) -> tuple:
    """Orders the versions of one incident: later last_seen, then resolved after open, then count;
    the digest tells apart different content with the same position."""
    try:
        dt = datetime.fromisoformat(doc["last_seen"])
        seen = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    except (KeyError, TypeError, ValueError):
        seen = 0.0
    count = doc.get("count") if isinstance(doc.get("count"), int) else 0
    return (seen, 1 if doc["status"] == "resolved" else 0, count,
            hashlib.sha1(codec.dumps(doc)).hexdigest())


@dataclass
class Group:
    """One receiver's aggregation group: the alerts sharing the group_by label values."""
    receiver: str
    key: str
    labels: dict[str, str]
    incarnation: str                    # tells apart successive groups with the same key
    next_flush: float
    revision: int = 0                   # notifications queued so far
    alerts: dict[str, dict] = field(default_factory=dict)          # incident id -> newest doc
    sent_firing: list[str] | None = None                          # as of the last notification
    sent_resolved: list[str] = field(default_factory=list)
    sent_at: float | None = None

    def idempotency_key(self) -> str:
        basis = f"{self.receiver}\n{self.key}\n{self.incarnation}\n{self.revision}"
        return hashlib.sha256(basis.encode()).hexdigest()[:32]


# --- payloads ------------------------------------------------------------------------------------

def _order(docs: Iterable[dict]) -> list[dict]:
    return sorted(docs, key=lambda d: (d["status"] == "resolved", d.get("first_seen") or "", d["id"]))


def _rfc3339(ts: str | None) -> str:
    if not ts:
        return ZERO_TIME
    return ts[:-6] + "Z" if ts.endswith("+00:00") else ts


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        out = {k: v for k, v in out.items() if d.get(k) == v}
    return out


def fingerprint(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(group_key(labels).encode()).hexdigest()[:16]


def alertmanager_payload(r: ReceiverSettings, g: Group, docs: list[dict], truncated: int,
                         external_url: str) -> dict:
    """Alertmanager's webhook body, version 4."""
    alerts = []
    for d in docs:
        labels = labels_of(d)
        resolved = d["status"] == "resolved"
        annotations = {k: v for k, v in (("title", d.get("title")), ("summary", d.get("summary")),
                                         ("description", d.get("probable_cause")),
                                         ("remediation", d.get("remediation"))) if v}
        alerts.append({"status": "resolved" if resolved else "firing", "labels": labels,
                       "annotations": annotations, "startsAt": _rfc3339(d.get("first_seen")),
                       "endsAt": _rfc3339(d.get("last_seen")) if resolved else ZERO_TIME,
                       "generatorURL": external_url, "fingerprint": fingerprint(labels)})
    return {"version": "4", "groupKey": f"{{}}:{g.key}", "truncatedAlerts": truncated,
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": r.name, "groupLabels": dict(g.labels),
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": external_url, "alerts": alerts}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def slack_payload(r: ReceiverSettings, g: Group, docs: list[dict], truncated: int) -> dict:
    """A Slack incoming-webhook message (``text`` for notifications, ``blocks`` for the channel)."""
    firing = [d for d in docs if d["status"] != "resolved"]
    what = ", ".join(f"{k}={v}" for k, v in g.labels.items()) or "osloscope"
    head = f"[FIRING:{len(firing)}] {what}" if firing else f"[RESOLVED] {what}"
    text = _cut(f"{head}: " + "; ".join(d.get("title") or d["id"] for d in docs), 3000)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": _cut(head, 150)}}]
    shown = docs[:SLACK_MAX_INCIDENTS]
    for d in shown:
        state = "resolved" if d["status"] == "resolved" else "open"
        lines = [f"*{_slack_escape(d.get('title') or d['id'])}*  ({d.get('severity', '?')}, {state})",
                 _slack_escape(d.get("summary") or "")]
        if d.get("probable_cause"):
            lines.append(f"*Probable cause:* {_slack_escape(d['probable_cause'])}")
        if d.get("remediation"):
            lines.append(f"*Remediation:* {_slack_escape(d['remediation'])}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), 3000)}})
    more = len(docs) - len(shown) + truncated
    note = "osloscope incident " + ", ".join(d["id"] for d in shown) + (f" and {more} more" if more else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(note, 3000)}]})
    return {"text": text, "blocks": blocks}


def render(r: ReceiverSettings, g: Group, docs: list[dict], external_url: str = "") -> bytes:
    """The body of one notification about ``docs`` (firing first) in ``r``'s style."""
    limit = r.max_alerts or len(docs)
    shown, truncated = docs[:limit], max(0, len(docs) - limit)
    if r.style == "alertmanager":
        body = alertmanager_payload(r, g, shown, truncated, external_url)
    elif r.style == "slack":
        body = slack_payload(r, g, shown, truncated)
    else:
        body = {"version": "1", "receiver": r.name,
                "status": "firing" if any(d["status"] != "resolved" for d in docs) else "resolved",
                "group_key": g.key, "group_labels": dict(g.labels), "revision": g.revision,
                "incidents": shown, "truncated_incidents": truncated}
    return codec.dumps(body)


# --- signing and HTTP ----------------------------------------------------------------------------

def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Osloscope-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance: float = SIGNATURE_TOLERANCE) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, refuse stale
    timestamps (replays)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _user_agent() -> str:
    try:
        from importlib.metadata import version
        return f"osloscope/{version('osloscope')}"
    except Exception:
        return "osloscope"


USER_AGENT = _user_agent()


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
class _Backoff:
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


# --- persistent state ----------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (receiver TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL,
                                   PRIMARY KEY (receiver, key));
CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, version BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, revision INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending',          -- pending | delivered | failed
    body BLOB NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_attempt REAL, last_error TEXT, done REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, receiver, id);
"""


class Store:
    """The SQLite file: groups, incident versions, outbox. WAL, fsync on every commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def pending(self, receiver: str, limit: int = 100) -> list[tuple]:
        return self.db.execute(
            "SELECT id, idempotency_key, body, attempts FROM outbox WHERE status = 'pending' "
            "AND receiver = ? ORDER BY id LIMIT ?", (receiver, limit)).fetchall()

    def finish(self, oid: int, status: str, now: float, attempts: int, error: str | None) -> None:
        done = now if status != "pending" else None
        self.db.execute("UPDATE outbox SET status = ?, attempts = ?, last_attempt = ?, last_error = ?, "
                        "done = ? WHERE id = ?", (status, attempts, now, error, done, oid))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def close(self) -> None:
        self.db.close()


@dataclass
class Tick:
    """What one ``tick`` did."""
    flushed: int = 0        # groups whose timer fired
    queued: int = 0         # notifications written to the outbox
    delivered: int = 0
    retrying: int = 0       # attempts that failed and will be retried
    failed: int = 0         # notifications given up (permanent HTTP errors)


# --- the notifier --------------------------------------------------------------------------------

class Notifier:
    """Groups, silences, outbox and delivery; ``handle`` and ``tick`` are all the Kafka loop calls.

    One notifier per ``state_dir`` (a lock file enforces it). ``rng`` draws the backoff jitter.
    """

    def __init__(self, notify: NotifySettings, receivers: Sequence[ReceiverSettings], *,
                 rng: random.Random | None = None) -> None:
        if not receivers:
            raise ValueError("no receivers: add [[notify.receivers]] tables to the settings")
        self.settings = notify
        self.receivers = {r.name: r for r in receivers}
        self.dir = Path(notify.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "notify.lock", "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise NotifierBusy(f"{self.dir}: another osloscope notify uses this state_dir") from None
        self.store = Store(self.dir / DB_NAME)
        self.silences = store_for(self.dir)
        self.rng = rng or random.Random()
        self.backoff = {name: _Backoff() for name in self.receivers}
        self._contexts: dict[str, ssl.SSLContext | None] = {}
        self._last_prune = float("-inf")
        self.groups: dict[tuple[str, str], Group] = {}
        self.where: dict[tuple[str, str], str] = {}                # (receiver, incident) -> group key
        self._load()

    @classmethod
    def from_settings(cls, settings, **kw) -> "Notifier":
        return cls(settings.notify, settings.receivers, **kw)

    def _load(self) -> None:
        dropped = 0
        for receiver, key, data in self.store.db.execute("SELECT receiver, key, data FROM groups"):
            if receiver not in self.receivers:
                dropped += 1
                continue
            g = Group(**codec.loads(data))
            self.groups[(receiver, key)] = g
            for iid in g.alerts:
                self.where[(receiver, iid)] = key
        if dropped:
            self.store.db.execute("DELETE FROM groups WHERE receiver NOT IN (%s)"
                                  % ",".join("?" * len(self.receivers)), tuple(self.receivers))
            log.warning("dropped %d group(s) of receivers no longer configured", dropped)
        self.versions = {iid: tuple(codec.loads(v))
                         for iid, v in self.store.db.execute("SELECT id, version FROM incidents")}
        for receiver, n in self.store.db.execute(
                "SELECT receiver, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY receiver"):
            if receiver in self.receivers:
                log.info("%s: %d notification(s) waiting in the outbox", receiver, n)
            else:
                log.warning("%s: %d pending notification(s) for a receiver no longer configured "
                            "(kept; delivered if it comes back)", receiver, n)

    def close(self) -> None:
        self.store.close()
        self._lock.close()

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # incidents in --------------------------------------------------------------------------------

    def handle(self, doc: dict, now: float) -> bool:
        """Take one incident document (a new incident or a change); True unless it was stale."""
        return self.handle_many([doc], now) == 1

    def handle_many(self, docs: Iterable[dict], now: float) -> int:
        """Take incident documents in order and store the result in one transaction; returns how
        many were newer than what was known (older versions and repeats change nothing)."""
        docs = list(docs)
        for doc in docs:                          # all or nothing: state and file stay in step
            problem = doc_problem(doc)
            if problem:
                raise ValueError(f"not an incident document: {problem}")
        dirty: set[tuple[str, str]] = set()
        fresh: dict[str, tuple] = {}
        for doc in docs:
            iid, version = doc["id"], _version(doc)
            old = self.versions.get(iid)
            if old is not None and (version[:3] < old[:3] or version == old):
                continue
            self.versions[iid] = fresh[iid] = version
            for r in self.receivers.values():
                self._place(r, doc, now, dirty)
        self._save(dirty, fresh, now, [])
        return len(fresh)

    def _place(self, r: ReceiverSettings, doc: dict, now: float, dirty: set) -> None:
        iid = doc["id"]
        old_key = self.where.get((r.name, iid))
        key = labels = None
        if accepts(r, doc):
            labels = {k: v for k, v in labels_of(doc).items() if k in self.settings.group_by}
            key = group_key(labels)
        if old_key is not None and old_key != key:          # filtered out now, or moved group
            old = self.groups[(r.name, old_key)]
            del old.alerts[iid], self.where[(r.name, iid)]
            dirty.add((r.name, old_key))
            if not old.alerts:
                del self.groups[(r.name, old_key)]
        if key is None:
            return
        g = self.groups.get((r.name, key))
        if g is None:
            g = self.groups[(r.name, key)] = Group(r.name, key, labels, uuid.uuid4().hex,
                                                   now + self.settings.group_wait)
        g.alerts[iid] = doc
        self.where[(r.name, iid)] = key
        dirty.add((r.name, key))

    def _save(self, dirty: Iterable[tuple[str, str]], versions: Mapping[str, tuple], now: float,
              rows: Sequence[tuple]) -> None:
        dirty = list(dirty)
        if not (dirty or versions or rows):
            return
        with self.store.tx() as db:
            for receiver, key in dirty:
                g = self.groups.get((receiver, key))
                if g is None:
                    db.execute("DELETE FROM groups WHERE receiver = ? AND key = ?", (receiver, key))
                else:
                    db.execute("INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
                               (receiver, key, codec.dumps(asdict(g))))
            db.executemany("INSERT OR REPLACE INTO incidents VALUES (?, ?, ?)",
                           [(iid, codec.dumps(list(v)), now) for iid, v in versions.items()])
            db.executemany("INSERT INTO outbox (receiver, group_key, revision, idempotency_key, body, "
                           "created) VALUES (?, ?, ?, ?, ?, ?)", rows)

    # time passes --------------------------------------------------------------------------------

    def tick(self, now: float) -> Tick:
        """Flush the groups whose timer is due, then deliver what the outbox holds for receivers
        that are not backing off."""
        report = Tick()
        due = sorted((g for g in self.groups.values() if g.next_flush <= now), key=lambda g: g.next_flush)
        if due:
            active = [s for s in self.silences.silences() if s.starts_at <= now < s.ends_at]
            rows = [row for row in (self._flush(g, now, active) for g in due) if row]
            self._save([(g.receiver, g.key) for g in due], {}, now, rows)
            report.flushed, report.queued = len(due), len(rows)
        self._deliver(now, report)
        if now - self._last_prune >= 3600:
            self._prune(now)
        return report

    def _needs_update(self, r: ReceiverSettings, g: Group, firing: list[str], resolved: list[str],
                      now: float) -> bool:
        """Alertmanager's DedupStage.needsUpdate."""
        if g.sent_firing is None:
            return bool(firing)
        if not set(firing) <= set(g.sent_firing):
            return True
        if not firing:
            return bool(g.sent_firing)
        if r.send_resolved and not set(resolved) <= set(g.sent_resolved):
            return True
        return now - g.sent_at >= self.settings.repeat_interval

    def _flush(self, g: Group, now: float, silences: Sequence) -> tuple | None:
        r = self.receivers[g.receiver]
        visible = [d for d in g.alerts.values()
                   if not any(s.mutes(labels_of(d), now) for s in silences)]
        firing = sorted(d["id"] for d in visible if d["status"] != "resolved")
        resolved = sorted(d["id"] for d in visible if d["status"] == "resolved")
        row = None
        if self._needs_update(r, g, firing, resolved, now):
            docs = _order(d for d in visible if d["status"] != "resolved" or r.send_resolved)
            if docs:
                g.revision += 1
                row = (r.name, g.key, g.revision, g.idempotency_key(),
                       render(r, g, docs, self.settings.external_url), now)
                log.info("%s %s: notification %d queued (%d firing, %d resolved)", r.name, g.key,
                         g.revision, len(firing), len(resolved) if r.send_resolved else 0)
            g.sent_firing, g.sent_resolved, g.sent_at = firing, resolved, now
        for iid in [i for i, d in g.alerts.items() if d["status"] == "resolved"]:
            del g.alerts[iid], self.where[(g.receiver, iid)]   # resolved alerts leave once flushed
        g.next_flush = now + self.settings.group_interval
        if not g.alerts:
            del self.groups[(g.receiver, g.key)]
        return row

    # delivery -----------------------------------------------------------------------------------

    def _context(self, r: ReceiverSettings) -> ssl.SSLContext | None:
        if r.name not in self._contexts:
            ctx = None
            if r.url.startswith("https://"):
                ctx = ssl.create_default_context(cafile=r.ca_file or None)
                if not r.verify_tls:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
            self._contexts[r.name] = ctx
        return self._contexts[r.name]

    def headers(self, r: ReceiverSettings, idempotency_key: str, body: bytes, now: float) -> dict:
        ts = str(int(now))
        h = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
             "Idempotency-Key": idempotency_key, "X-Osloscope-Timestamp": ts}
        if r.secret:
            h["X-Osloscope-Signature"] = sign(r.secret, ts, body)
        return h

    def _deliver(self, now: float, report: Tick) -> None:
        for r in self.receivers.values():
            b = self.backoff[r.name]
            if b.next_attempt > now:
                continue
            for oid, key, body, attempts in self.store.pending(r.name):
                res = post(r, body, self.headers(r, key, body, now), self._context(r), now)
                if res.ok:
                    self.store.finish(oid, "delivered", now, attempts + 1, None)
                    b.reset()
                    report.delivered += 1
                    log.info("%s: delivered notification %s (HTTP %s, attempt %d)", r.name, key,
                             res.status, attempts + 1)
                elif res.permanent:
                    self.store.finish(oid, "failed", now, attempts + 1, res.error)
                    b.reset()
                    report.failed += 1
                    log.error("%s: notification %s rejected, not retried: %s", r.name, key, res.error)
                else:
                    self.store.finish(oid, "pending", now, attempts + 1, res.error)
                    delay = b.fail(now, r.max_backoff, res.retry_after, self.rng)
                    report.retrying += 1
                    log.warning("%s: delivery failed (%s); retrying in %.1f s", r.name, res.error, delay)
                    break

    def _prune(self, now: float) -> None:
        self._last_prune = now
        held = {iid for g in self.groups.values() for iid in g.alerts}
        old = [iid for iid, in self.store.db.execute(
            "SELECT id FROM incidents WHERE updated < ?", (now - INCIDENT_MEMORY,)) if iid not in held]
        with self.store.tx() as db:
            db.execute("DELETE FROM outbox WHERE status != 'pending' AND done < ?",
                       (now - OUTBOX_RETENTION,))
            db.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in old])
        for iid in old:
            self.versions.pop(iid, None)

    def outbox(self) -> dict[str, int]:
        """Notifications per state: pending, delivered, failed."""
        return self.store.counts()


# --- the Kafka loop ------------------------------------------------------------------------------

def run(settings, *, stop=None, stats_interval: float = 60.0) -> int:
    """Consume the incidents topic until SIGTERM/SIGINT (or ``stop.set()``), notifying receivers."""
    import signal
    import threading

    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError

    notifier = Notifier.from_settings(settings)
    group_id = f"{settings.worker.app_id}-notify"
    session = int(settings.worker.session_timeout * 1000)
    consumer = KafkaConsumer(settings.topics.incidents, group_id=group_id, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=500,
                             session_timeout_ms=session, heartbeat_interval_ms=max(1000, session // 5),
                             **settings.kafka.client_kwargs())
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("notify: %s -> %s (group %s, state in %s)", settings.topics.incidents,
             ", ".join(f"{r.name} ({r.style})" for r in settings.receivers), group_id, notifier.dir)
    seen = skipped = 0
    last_stats = time.monotonic()
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            docs = []
            for msgs in batch.values():
                for m in msgs:
                    try:
                        doc = codec.loads(m.value)
                        problem = doc_problem(doc)
                    except Exception as exc:               # not JSON
                        problem = str(exc)
                    if problem:
                        skipped += 1
                        log.warning("skipping %s[%d]@%d: not an incident document: %s",
                                    m.topic, m.partition, m.offset, problem)
                    else:
                        docs.append(doc)
            if docs:
                seen += notifier.handle_many(docs, time.time())
            if batch:                      # the docs' effect is stored: now the offsets may move
                try:
                    consumer.commit()
                except CommitFailedError as exc:
                    log.warning("offset commit failed (rebalance?); the batch will be seen again, "
                                "which changes nothing: %s", exc)
            notifier.tick(time.time())
            if time.monotonic() - last_stats >= stats_interval:
                last_stats = time.monotonic()
                log.info("notify stats: %d incident change(s), %d skipped, %d group(s), outbox %s",
                         seen, skipped, len(notifier.groups), notifier.outbox())
    finally:
        consumer.close(autocommit=False)
        notifier.close()
    return 0


def register(subparsers) -> None:
    import argparse

    from pipeline.settings import add_config_option

    p = subparsers.add_parser(
        "notify", help="send incidents to webhooks (json, Alertmanager or Slack format)",
        description="Consume incident changes from the incidents topic and POST them to the "
                    "[[notify.receivers]] of the settings, grouped, deduplicated, silenced and "
                    "repeated like Alertmanager does (notify.group_by, group_wait, group_interval, "
                    "repeat_interval; `osloscope silence`). Notifications wait in an outbox under "
                    "notify.state_dir until a receiver answers 2xx, retried with backoff; each "
                    "request carries an Idempotency-Key and, with a secret, an HMAC signature. "
                    "Stop with Ctrl-C or SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from pipeline.settings import load_for_command

    settings = load_for_command(args.config, "notify")
    if settings is None:
        return 2
    if not settings.receivers:
        print("osloscope notify: no receivers; add [[notify.receivers]] tables to the settings file "
              "(see deploy/osloscope.example.toml)", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return run(settings)
    except NotifierBusy as exc:
        print(f"osloscope notify: {exc}", file=sys.stderr)
        return 2
