"""The incident: what a detector opens, grows and resolves.

An incident's id is deterministic (detector rule, key, window start), so a
replay of the same logs, or at-least-once redelivery, upserts the same
document instead of creating a new one. Evidence, resources and request ids
are capped so one incident stays small however long it lasts.
"""
from __future__ import annotations

import hashlib
from collections import deque
from typing import Any, Iterable

from .model import Event

EVIDENCE_HEAD = 5       # first records kept as evidence
EVIDENCE_TAIL = 5       # most recent records kept as evidence
MAX_LIST = 50           # cap for hosts, request ids and each resource kind
EVIDENCE_MESSAGE_CHARS = 2000

RESOURCE_KEYS = ("instance", "volume", "image", "user", "source_ip", "path")
SEVERITIES = ("critical", "error", "warning")


def incident_id(rule: str, key: Iterable[Any], window_start: float) -> str:
    """Deterministic id: the same rule, key and window give the same id."""
    raw = "\x1f".join([rule, *map(str, key), f"{window_start:.3f}"])
    return hashlib.sha1(raw.encode("utf-8", "backslashreplace")).hexdigest()[:24]


def evidence_of(ev: Event) -> dict:
    msg = ev.message or ""
    if ev.error_type and ev.error_type not in msg:
        msg = f"{msg} [{ev.error_type}: {ev.error_message or ''}]"
    if len(msg) > EVIDENCE_MESSAGE_CHARS:
        msg = msg[:EVIDENCE_MESSAGE_CHARS] + "..."
    item = {
        "@timestamp": ev.timestamp,
        "host": ev.host,
        "service": ev.service,
        "level": ev.level,
        "logger": ev.logger,
        "request_id": ev.request_id,
        "message": msg,
    }
    if ev.file_path is not None:
        item["file"] = ev.file_path
    return item


def _add_capped(target: list, values: Iterable[Any]) -> None:
    for v in values:
        if v is not None and v != "" and v not in target and len(target) < MAX_LIST:
            target.append(v)


class Incident:
    """Mutable incident state, owned by one detector."""

    def __init__(self, *, rule: str, type: str, key: tuple, window_start: float,
                 severity: str, title: str, probable_cause: str, remediation: str,
                 summary: str = "") -> None:
        assert severity in SEVERITIES, severity
        self.id = incident_id(rule, key, window_start)
        self.rule = rule
        self.type = type
        self.key = tuple(key)
        self.window_start = window_start
        self.severity = severity
        self.status = "open"
        self.title = title
        self.summary = summary
        self.probable_cause = probable_cause
        self.remediation = remediation
        self.host: str | None = None
        self.service: str | None = None
        self.hosts: list[str] = []
        self.services: list[str] = []
        self.first_seen: str | None = None
        self.last_seen: str | None = None
        self.first_ts: float = window_start
        self.last_ts: float = window_start
        self.count = 0
        self.resources: dict[str, list] = {k: [] for k in RESOURCE_KEYS}
        self.request_ids: list[str] = []
        self.details: dict[str, Any] = {}
        self.evidence_head: list[dict] = []
        self.evidence_tail: deque = deque(maxlen=EVIDENCE_TAIL)

    # -- growth -----------------------------------------------------------
    def add(self, ev: Event, *, count: bool = True, resources: dict | None = None,
            request_ids: Iterable[str] = ()) -> None:
        """Record ``ev`` as evidence (and as an occurrence when ``count``)."""
        if count:
            self.count += 1
        ts = ev.ts if ev.ts is not None else self.last_ts
        if self.first_seen is None or ts < self.first_ts:
            self.first_ts, self.first_seen = ts, ev.timestamp
        if self.last_seen is None or ts >= self.last_ts:
            self.last_ts, self.last_seen = ts, ev.timestamp
        if self.host is None:
            self.host, self.service = ev.host, ev.service
        _add_capped(self.hosts, (ev.host,))
        _add_capped(self.services, (ev.service,))
        _add_capped(self.request_ids, (ev.global_request_id, ev.request_id))
        _add_capped(self.request_ids, request_ids)
        if ev.resources and "request" in ev.resources:
            _add_capped(self.request_ids, ev.resources["request"])
        if ev.instance_id:
            _add_capped(self.resources["instance"], (ev.instance_id,))
        if ev.resources:
            for kind in ("instance", "volume", "image"):
                if kind in ev.resources:
                    _add_capped(self.resources[kind], ev.resources[kind])
        if resources:
            for kind, values in resources.items():
                _add_capped(self.resources.setdefault(kind, []), values)
        self.add_evidence(evidence_of(ev))

    def add_evidence(self, item: dict) -> None:
        """Keep ``item`` as evidence: the first records, then a rolling tail."""
        if len(self.evidence_head) < EVIDENCE_HEAD:
            self.evidence_head.append(item)
        else:
            self.evidence_tail.append(item)

    def add_item(self, item: dict, ts: float) -> None:
        """Count an occurrence known only by its evidence record (bursts keep
        the records that led up to the threshold this way)."""
        self.count += 1
        if self.first_seen is None or ts < self.first_ts:
            self.first_ts, self.first_seen = ts, item["@timestamp"]
        if self.last_seen is None or ts >= self.last_ts:
            self.last_ts, self.last_seen = ts, item["@timestamp"]
        if self.host is None:
            self.host, self.service = item["host"], item["service"]
        _add_capped(self.hosts, (item["host"],))
        _add_capped(self.services, (item["service"],))
        _add_capped(self.request_ids, (item["request_id"],))
        self.add_evidence(item)

    @property
    def evidence(self) -> list[dict]:
        return self.evidence_head + list(self.evidence_tail)

    # -- output -----------------------------------------------------------
    def to_doc(self) -> dict:
        resources = {k: list(v) for k, v in self.resources.items() if v or k in RESOURCE_KEYS}
        return {
            "id": self.id,
            "type": self.type,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "title": self.title,
            "summary": self.summary,
            "host": self.host,
            "hosts": list(self.hosts),
            "service": self.service,
            "services": list(self.services),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "resources": resources,
            "request_ids": list(self.request_ids),
            "details": dict(self.details),
            "evidence": self.evidence,
            "probable_cause": self.probable_cause,
            "remediation": self.remediation,
        }

    # -- snapshot ---------------------------------------------------------
    def to_state(self) -> dict:
        state = self.to_doc()
        state.update(
            key=list(self.key), window_start=self.window_start, first_ts=self.first_ts,
            last_ts=self.last_ts, evidence_head=self.evidence_head,
            evidence_tail=list(self.evidence_tail),
        )
        del state["evidence"]
        return state

    @classmethod
    def from_state(cls, state: dict) -> "Incident":
        inc = cls.__new__(cls)
        inc.id = state["id"]
        inc.rule = state["rule"]
        inc.type = state["type"]
        inc.key = tuple(state["key"])
        inc.window_start = state["window_start"]
        for name in ("severity", "status", "title", "summary", "probable_cause", "remediation",
                     "host", "service", "first_seen", "last_seen", "first_ts", "last_ts", "count"):
            setattr(inc, name, state[name])
        inc.hosts = list(state["hosts"])
        inc.services = list(state["services"])
        inc.resources = {k: list(v) for k, v in state["resources"].items()}
        inc.request_ids = list(state["request_ids"])
        inc.details = dict(state["details"])
        inc.evidence_head = list(state["evidence_head"])
        inc.evidence_tail = deque(state["evidence_tail"], maxlen=EVIDENCE_TAIL)
        return inc
