"""Incidents as alerts, and their aggregation groups (Alertmanager's model).

An incident document becomes an alert with labels (:func:`labels_of`); a receiver whose filters
:func:`accept` it holds it in the :class:`Group` of its ``group_by`` label values
(:func:`group_key`). :func:`version` orders the documents of one incident, so stale and repeated
ones change nothing; :func:`needs_update` says whether a group's flush is worth a notification.
Pure functions and data: no I/O, time only as ``now`` arguments.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Iterable, Mapping

from pipeline import codec
from pipeline.settings import ReceiverSettings


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


def position(doc: Mapping) -> tuple:
    """Where a version of an incident stands among its versions: later last_seen, then
    resolved after open, then a higher count (also the worker's open-incident gauges)."""
    try:
        dt = datetime.fromisoformat(doc["last_seen"])
        seen = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    except (KeyError, TypeError, ValueError):
        seen = 0.0
    count = doc.get("count") if isinstance(doc.get("count"), int) else 0
    return (seen, 1 if doc.get("status") == "resolved" else 0, count)


def version(doc: Mapping) -> tuple:
    """Orders the versions of one incident: ``position``, then a digest that tells apart
    different content with the same position."""
    return (*position(doc), hashlib.sha1(codec.dumps(doc)).hexdigest())


def is_newer(new: tuple, old: tuple | None) -> bool:
    """Whether a document of version ``new`` changes what version ``old`` said (None: unseen)."""
    return old is None or not (new[:3] < old[:3] or new == old)


def order(docs: Iterable[dict]) -> list[dict]:
    """The order alerts are sent in: firing first, then by first_seen and id."""
    return sorted(docs, key=lambda d: (d["status"] == "resolved", d.get("first_seen") or "", d["id"]))


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
    # incident ids of this group that some notification already named (firing or resolved): an
    # incident that resolves without being in it was never announced, and its resolve is news
    notified: list[str] = field(default_factory=list)
    # style alertmanager_api: incident id -> the label set Alertmanager knows it by (sent firing)
    sent_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def idempotency_key(self) -> str:
        basis = f"{self.receiver}\n{self.key}\n{self.incarnation}\n{self.revision}"
        return hashlib.sha256(basis.encode()).hexdigest()[:32]


def unannounced(g: Group, resolved: Iterable[str]) -> list[str]:
    """The resolved incidents of ``g`` that no notification named yet: they opened and resolved
    before the group was flushed (within group_wait, or all before the notifier started)."""
    return [iid for iid in resolved if iid not in g.notified]


def needs_update(g: Group, firing: list[str], resolved: list[str], now: float, *,
                 send_resolved: bool, repeat_interval: float) -> bool:
    """Alertmanager's DedupStage.needsUpdate: whether flushing ``g`` with these firing and
    resolved incident ids says something new (or ``repeat_interval`` has passed).

    One deliberate difference: Alertmanager never notifies a group whose alerts all resolved
    before its first notification. A log going quiet does not mean the fault is fixed, so an
    incident nobody was told about is always news, resolved or not, whatever send_resolved says
    (:func:`unannounced`); send_resolved only drops the resolve of an incident already sent."""
    if unannounced(g, resolved):
        return True
    if g.sent_firing is None:
        return bool(firing)
    if not set(firing) <= set(g.sent_firing):
        return True
    if not firing:
        return bool(g.sent_firing)
    if send_resolved and not set(resolved) <= set(g.sent_resolved):
        return True
    return now - g.sent_at >= repeat_interval
