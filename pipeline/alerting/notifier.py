"""The notifier: incident changes in, webhook notifications out, with Alertmanager's noise control.

  Notifier.handle(doc, now)  every receiver whose filters accept the incident holds it as an alert
                             in the group of its ``group_by`` label values (grouping.py)
  Notifier.tick(now)         flushes due groups the way Alertmanager's aggregation groups do
                             (first after group_wait, then every group_interval; a notification
                             only when an incident opened, or resolved with send_resolved, or
                             resolved before anyone was told, or repeat_interval passed;
                             silenced incidents left out) into the outbox
                             (outbox.py, payloads.py), then POSTs due outbox entries, retrying
                             failures with capped exponential backoff and jitter until a 2xx
                             (delivery.py)

Every incident is notified at least once: one that was already resolved when its group was
first flushed (it opened and closed within group_wait, or the notifier caught up on a backlog)
is sent as resolved, whatever send_resolved says (grouping.needs_update).

A notification is written to the outbox in the same transaction that advances its group's
revision, so its ``Idempotency-Key`` (receiver, group, revision) is never reused for different
content; retries and a crash between a 2xx and its bookkeeping send the same key again, which
receivers can drop. A stored version makes handling a document again a no-op. Time only arrives
as ``now`` arguments: the Kafka loop (consumer.py) passes the wall clock, tests a fake one.

Receivers of style ``alertmanager_api`` are an Alertmanager, which groups, waits, repeats,
inhibits and silences by itself; the notifier does what Prometheus does for it:

  - every incident is its own group (key ``{incident_id="..."}``), flushed at the next tick
    after each change, with no group_wait, group_interval, repeat_interval or osloscope silences;
  - an incident that opens, changes its label set (payloads.alertmanager_labels) or resolves
    becomes an alert in the next ``POST /api/v2/alerts`` request, through the outbox like any
    notification (one request per receiver and tick, ``max_alerts`` alerts at most); a replaced
    label set is ended in the same request; an incident first seen resolved is posted once with
    startsAt and endsAt;
  - every ``resend_interval`` seconds, while nothing waits in that receiver's outbox, all its
    open alerts are POSTed again (with their newest annotations) directly, not through the
    outbox: Alertmanager resolves an alert nobody re-sent within its resolve_timeout. A restart
    re-sends at the first tick.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import random
import ssl
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from pipeline.alerting import delivery
from pipeline.alerting.grouping import (Group, accepts, doc_problem, group_key, is_newer, labels_of,
                                        needs_update, order, unannounced, version)
from pipeline.alerting.outbox import DB_NAME, Store
from pipeline import codec
from pipeline.alerting.payloads import (alertmanager_alert, alertmanager_endpoint,
                                        alertmanager_labels, generator_url, render)
from pipeline.alerting.silences import store_for
from pipeline.settings import NotifySettings, ReceiverSettings

log = logging.getLogger("osloscope.notify")

PRUNE_INTERVAL = 3600.0
AM_STYLE = "alertmanager_api"
AM_RESOLVE_TIMEOUT = 300.0              # Alertmanager's default resolve_timeout
NEVER = 1.0e18                          # the timer of an alertmanager_api group between changes


class NotifierBusy(Exception):
    """Another notifier holds the state directory."""


@dataclass
class Tick:
    """What one ``tick`` did."""
    flushed: int = 0        # groups whose timer fired
    queued: int = 0         # notifications written to the outbox
    delivered: int = 0
    retrying: int = 0       # attempts that failed and will be retried
    failed: int = 0         # notifications given up (permanent HTTP errors)
    resent: int = 0         # open alerts re-sent to Alertmanager (style alertmanager_api)


class Notifier:
    """Groups, silences, outbox and delivery; ``handle`` and ``tick`` are all the Kafka loop calls,
    plus ``attach``/``restore``/``state_records`` when the state follows the active notifier
    (consumer.py, outbox.py).

    One notifier per ``state_dir`` (a lock file enforces it). ``rng`` draws the backoff jitter.
    """

    def __init__(self, notify: NotifySettings, receivers: Sequence[ReceiverSettings], *,
                 rng: random.Random | None = None) -> None:
        if not receivers:
            raise ValueError("no receivers: add [[notify.receivers]] tables to the settings")
        self.settings = notify
        self.receivers = {r.name: (replace(r, url=alertmanager_endpoint(r.url)) if r.style == AM_STYLE
                                   else r) for r in receivers}
        self.incident_url = notify.incident_url or notify.external_url
        self._resend_at = {r.name: float("-inf") for r in receivers if r.style == AM_STYLE}
        for r in receivers:
            if r.style == AM_STYLE and r.resend_interval >= AM_RESOLVE_TIMEOUT:
                log.warning("%s: resend_interval %.0f s is not below Alertmanager's default "
                            "resolve_timeout (5m): raise resolve_timeout there, or open alerts "
                            "resolve between re-sends", r.name, r.resend_interval)
        self.dir = Path(notify.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "notify.lock", "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise NotifierBusy(f"{self.dir}: another osloscope notify uses this state_dir") from None
        try:
            self.store = Store(self.dir / DB_NAME)
        except BaseException:                   # (a full disk) the lock goes: a retry can take it
            self._lock.close()
            raise
        self.silences = store_for(self.dir)
        self.rng = rng or random.Random()
        self.backoff = {name: delivery.Backoff() for name in self.receivers}
        self._contexts: dict[str, ssl.SSLContext | None] = {}
        self._last_prune = float("-inf")
        self.groups: dict[tuple[str, str], Group] = {}
        self.where: dict[tuple[str, str], str] = {}                # (receiver, incident) -> group key
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_settings(cls, settings, **kw) -> "Notifier":
        notify = settings.notify
        es = settings.elasticsearch
        if not notify.incident_url and es.url:          # link alerts to the incident document
            base = es.url.rstrip("/")
            u = urlsplit(base)
            if "@" in u.netloc:                          # never put credentials into alerts
                base = urlunsplit((u.scheme, u.netloc.rsplit("@", 1)[1], u.path, "", ""))
            notify = replace(notify, incident_url=f"{base}/{es.incidents_index}/_doc/{{id}}")
        return cls(notify, settings.receivers, **kw)

    def _load(self) -> None:
        dropped = 0
        for g in self.store.groups():
            if g.receiver not in self.receivers:
                dropped += 1
                continue
            self.groups[(g.receiver, g.key)] = g
            for iid in g.alerts:
                self.where[(g.receiver, iid)] = g.key
        if dropped:
            self.store.drop_groups_except(self.receivers)
            log.warning("dropped %d group(s) of receivers no longer configured", dropped)
        self.versions = self.store.versions()
        for receiver, n in self.store.pending_per_receiver():
            if receiver in self.receivers:
                log.info("%s: %d notification(s) waiting in the outbox", receiver, n)
            else:
                log.warning("%s: %d pending notification(s) for a receiver no longer configured "
                            "(kept; delivered if it comes back)", receiver, n)

    # state that follows the active notifier (consumer.py) -------------------------------------

    def attach(self, journal) -> None:
        """From now on every change is also written to ``journal`` (None: local file only)."""
        self.store.journal = journal

    def state_records(self) -> list[tuple[bytes, bytes]]:
        """The whole state as journal records (to seed an empty journal)."""
        return self.store.records()

    def restore(self, records) -> None:
        """Take over the state a journal holds ({key: value}): groups, incident versions and the
        pending notifications, which are delivered again with their own Idempotency-Keys; open
        alerts of alertmanager_api receivers are re-sent at the next tick."""
        self.store.replace(records)
        self.groups, self.where = {}, {}
        self._load()
        self.backoff = {name: delivery.Backoff() for name in self.receivers}
        self._resend_at = dict.fromkeys(self._resend_at, float("-inf"))

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
            iid, v = doc["id"], version(doc)
            known = self.versions.get(iid)
            if not is_newer(v, known):
                continue
            self.versions[iid] = fresh[iid] = v
            closed = known is not None and known[1] == 1       # the version before was resolved
            for r in self.receivers.values():
                self._place(r, doc, now, dirty, closed)
        self._save(dirty, fresh, now, [])
        return len(fresh)

    def _place(self, r: ReceiverSettings, doc: dict, now: float, dirty: set, closed: bool) -> None:
        iid = doc["id"]
        old_key = self.where.get((r.name, iid))
        if closed and old_key is None and doc["status"] == "resolved":
            return          # a later version of an incident whose resolve was already flushed
        key = labels = None
        if accepts(r, doc):
            if r.style == AM_STYLE:                     # Alertmanager groups: one incident each
                labels = {"incident_id": iid}
            else:
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
            wait = 0.0 if r.style == AM_STYLE else self.settings.group_wait
            g = self.groups[(r.name, key)] = Group(r.name, key, labels, uuid.uuid4().hex, now + wait)
        elif r.style == AM_STYLE:
            g.next_flush = min(g.next_flush, now)
        g.alerts[iid] = doc
        self.where[(r.name, iid)] = key
        dirty.add((r.name, key))

    def _save(self, dirty: Iterable[tuple[str, str]], versions: dict[str, tuple], now: float,
              rows: Sequence[tuple]) -> None:
        dirty = list(dirty)
        if dirty or versions or rows:
            self.store.save([(r, k, self.groups.get((r, k))) for r, k in dirty], versions, now, rows)

    # time passes --------------------------------------------------------------------------------

    def tick(self, now: float) -> Tick:
        """Flush the groups whose timer is due, then deliver what the outbox holds for receivers
        that are not backing off."""
        report = Tick()
        due = sorted((g for g in self.groups.values() if g.next_flush <= now), key=lambda g: g.next_flush)
        if due:
            am = [g for g in due if self.receivers[g.receiver].style == AM_STYLE]
            hooks = [g for g in due if self.receivers[g.receiver].style != AM_STYLE]
            rows: list[tuple] = []
            if hooks:
                active = [s for s in self.silences.silences() if s.starts_at <= now < s.ends_at]
                rows = [row for row in (self._flush(g, now, active) for g in hooks) if row]
            rows += self._flush_alertmanager(am, now)
            self._save([(g.receiver, g.key) for g in due], {}, now, rows)
            report.flushed, report.queued = len(due), len(rows)
        self._deliver(now, report)
        self._resend(now, report)
        if now - self._last_prune >= PRUNE_INTERVAL:
            self._last_prune = now
            held = {iid for g in self.groups.values() for iid in g.alerts}
            for iid in self.store.prune(now, held):
                self.versions.pop(iid, None)
        return report

    def _flush(self, g: Group, now: float, silences: Sequence) -> tuple | None:
        r = self.receivers[g.receiver]
        visible = [d for d in g.alerts.values()
                   if not any(s.mutes(labels_of(d), now) for s in silences)]
        firing = sorted(d["id"] for d in visible if d["status"] != "resolved")
        resolved = sorted(d["id"] for d in visible if d["status"] == "resolved")
        news = set(unannounced(g, resolved))         # resolved before anyone was told: always sent
        row = None
        if needs_update(g, firing, resolved, now, send_resolved=r.send_resolved,
                        repeat_interval=self.settings.repeat_interval):
            docs = order(d for d in visible
                         if d["status"] != "resolved" or r.send_resolved or d["id"] in news)
            if docs:
                g.revision += 1
                row = (r.name, g.key, g.revision, g.idempotency_key(),
                       render(r, g, docs, self.settings.external_url), now)
                g.notified = sorted(set(g.notified) | {d["id"] for d in docs})
                log.info("%s %s: notification %d queued (%d firing, %d resolved)", r.name, g.key,
                         g.revision, len(firing), sum(d["status"] == "resolved" for d in docs))
            g.sent_firing, g.sent_resolved, g.sent_at = firing, resolved, now
        gone = [i for i, d in g.alerts.items() if d["status"] == "resolved"]
        for iid in gone:
            del g.alerts[iid], self.where[(g.receiver, iid)]   # resolved alerts leave once flushed
        if gone:
            g.notified = [i for i in g.notified if i in g.alerts]
        g.next_flush = now + self.settings.group_interval
        if not g.alerts:
            del self.groups[(g.receiver, g.key)]
        return row

    # Alertmanager's API (style alertmanager_api) ----------------------------------------------

    def _alert(self, doc: dict, labels: dict, now: float, ends_at: float | None = None) -> dict:
        return alertmanager_alert(doc, labels, now, generator=generator_url(self.incident_url, doc),
                                  ends_at=ends_at)

    def _flush_alertmanager(self, due: Sequence[Group], now: float) -> list[tuple]:
        """The outbox rows (one request per receiver, ``max_alerts`` alerts each at most) saying
        what changed in the due per-incident groups: opened (or a new label set, the old one
        ended now), or resolved (then the group goes). A document that changed nothing
        Alertmanager identifies alerts by waits for the next re-send."""
        per: dict[str, list] = {}
        for g in due:
            alerts = per.setdefault(g.receiver, [])
            changed = False
            for iid, doc in list(g.alerts.items()):
                sent = g.sent_labels.get(iid)
                if doc["status"] == "resolved":
                    # never sent firing: sent now, with startsAt and endsAt, as a resolved alert
                    alerts.append(self._alert(doc, sent if sent is not None else
                                              alertmanager_labels(doc), now))
                    changed = True
                    del g.alerts[iid], self.where[(g.receiver, iid)]
                    g.sent_labels.pop(iid, None)
                    continue
                labels = alertmanager_labels(doc, sent)
                if labels != sent:
                    if sent is not None:
                        alerts.append(self._alert(doc, sent, now, ends_at=now))
                    alerts.append(self._alert(doc, labels, now))
                    g.sent_labels[iid] = labels
                    changed = True
            if changed:
                g.revision += 1
            g.sent_at, g.next_flush = now, NEVER
            if not g.alerts:
                del self.groups[(g.receiver, g.key)]
        rows = []
        for name, alerts in per.items():
            if not alerts:
                continue
            basis = "\n".join(f"{g.key} {g.incarnation} {g.revision}" for g in due if g.receiver == name)
            step = self.receivers[name].max_alerts or len(alerts)
            for i in range(0, len(alerts), step):
                chunk = alerts[i:i + step]
                key = hashlib.sha256(f"{name}\n{i}\n{basis}".encode()).hexdigest()[:32]
                rows.append((name, f"alertmanager:{len(chunk)}", i // step, key, codec.dumps(chunk), now))
                log.info("%s: %d alert change(s) queued for Alertmanager", name, len(chunk))
        return rows

    def _resend(self, now: float, report: Tick) -> None:
        """POST the open alerts of every alertmanager_api receiver whose resend_interval passed
        (not while its outbox holds anything: changes go first, in order)."""
        for name, due in self._resend_at.items():
            r, b = self.receivers[name], self.backoff[name]
            if due > now or b.next_attempt > now or self.store.pending(name, limit=1):
                continue
            alerts = [self._alert(doc, g.sent_labels[iid], now)
                      for g in self.groups.values() if g.receiver == name
                      for iid, doc in g.alerts.items()
                      if doc["status"] != "resolved" and iid in g.sent_labels]
            step = r.max_alerts or len(alerts) or 1
            ok = True
            for i in range(0, len(alerts), step):
                body = codec.dumps(alerts[i:i + step])
                key = hashlib.sha256(f"{name}\nresend\n{now!r}\n{i}".encode()).hexdigest()[:32]
                res = delivery.post(r, body, delivery.headers(r, key, body, now), self._context(r), now)
                if res.ok:
                    b.reset()
                    report.resent += len(alerts[i:i + step])
                    continue
                ok = False
                if res.permanent:
                    b.reset()
                    log.error("%s: re-sending %d open alert(s) rejected: %s", name,
                              len(alerts[i:i + step]), res.error)
                    break
                delay = b.fail(now, r.max_backoff, res.retry_after, self.rng)
                report.retrying += 1
                log.warning("%s: re-sending open alerts failed (%s); retrying in %.1f s", name,
                            res.error, delay)
                break
            if ok or b.next_attempt <= now:              # done, or rejected: wait a full interval
                self._resend_at[name] = now + r.resend_interval
                if ok and alerts:
                    log.debug("%s: re-sent %d open alert(s)", name, len(alerts))

    # delivery -----------------------------------------------------------------------------------

    def _context(self, r: ReceiverSettings) -> ssl.SSLContext | None:
        if r.name not in self._contexts:
            self._contexts[r.name] = delivery.tls_context(r)
        return self._contexts[r.name]

    def _deliver(self, now: float, report: Tick) -> None:
        for r in self.receivers.values():
            b = self.backoff[r.name]
            if b.next_attempt > now:
                continue
            for oid, key, body, attempts in self.store.pending(r.name):
                res = delivery.post(r, body, delivery.headers(r, key, body, now), self._context(r), now)
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

    def outbox(self) -> dict[str, int]:
        """Notifications per state: pending, delivered, failed."""
        return self.store.counts()
