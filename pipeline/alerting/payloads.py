"""Notification bodies and their signatures.

:func:`render` turns a group's incidents into the bytes of one notification in the receiver's
style: ``json`` (the incident documents), ``alertmanager`` (Alertmanager's webhook body, version 4)
or ``slack`` (an incoming-webhook message). :func:`sign` gives the ``X-Osloscope-Signature``
header value (hex HMAC-SHA256 of ``"<timestamp>.<body>"``) and :func:`verify` is what a receiver
does with it (deploy/README.md, "Webhooks").

Style ``alertmanager_api`` pushes to Alertmanager itself (``POST /api/v2/alerts``, the way
Prometheus does): :func:`alertmanager_labels` gives an incident's label set (which Alertmanager
identifies the alert by, so it must not change while the incident lasts),
:func:`alertmanager_alert` one element of the request body, :func:`alertmanager_endpoint` the URL
and :func:`generator_url` the link back to the incident.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import datetime, timezone
from typing import Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline import codec
from pipeline.alerting.grouping import Group, group_key, labels_of
from pipeline.settings import ReceiverSettings

SLACK_MAX_INCIDENTS = 20                # Slack allows 50 blocks per message
ZERO_TIME = "0001-01-01T00:00:00Z"      # Alertmanager's endsAt of a firing alert
SIGNATURE_TOLERANCE = 300.0


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


# --- Alertmanager's API (style alertmanager_api) ----------------------------------------------

AM_ALERTS_PATH = "/api/v2/alerts"
AM_ALERTNAME_PREFIX = "osloscope_"
AM_CORE_LABELS = ("alertname", "type", "rule", "severity", "host", "service", "incident_id")
AM_ANNOTATION_CHARS = 4000              # longer annotation values are cut
AM_REQUEST_IDS = 10                     # request ids listed in the request_ids annotation
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def alertmanager_endpoint(url: str) -> str:
    """The alerts endpoint of the Alertmanager at ``url`` (``http://am:9093`` or with a route
    prefix, ``https://host/alertmanager``); a URL already ending in /api/v2/alerts is kept."""
    u = urlsplit(url)
    path = u.path.rstrip("/")
    if not path.endswith(AM_ALERTS_PATH):
        path += AM_ALERTS_PATH
    return urlunsplit((u.scheme, u.netloc, path, u.query, ""))


def alertmanager_labels(doc: Mapping, frozen: Mapping[str, str] | None = None) -> dict[str, str]:
    """An incident's label set in Alertmanager: alertname ``osloscope_<type>``, type, rule,
    severity, host, service, incident_id, and the first id of each resource kind (instance,
    volume, image, user, source_ip, path, ...). Empty values are left out.

    Alertmanager tells alerts apart by their label set, so the resource labels are those of the
    version first sent (``frozen``, the labels sent before): resources only grow while an incident
    lasts, and every id is in the ``resources`` annotation. Only the core labels follow the
    document (a severity that escalates makes a new label set; the notifier ends the old one)."""
    core = {"alertname": AM_ALERTNAME_PREFIX + str(doc.get("type") or "incident"),
            "type": doc.get("type"), "rule": doc.get("rule"), "severity": doc.get("severity"),
            "host": doc.get("host"), "service": doc.get("service"), "incident_id": doc.get("id")}
    if frozen is not None:
        extra = {k: v for k, v in frozen.items() if k not in AM_CORE_LABELS}
    else:
        extra = {}
        resources = doc.get("resources") if isinstance(doc.get("resources"), Mapping) else {}
        for kind in sorted(resources):
            values = resources[kind]
            if (_LABEL_NAME.match(kind) and not kind.startswith("__") and kind not in AM_CORE_LABELS
                    and isinstance(values, list) and values and values[0]):
                extra[kind] = str(values[0])
    labels = {k: str(v) for k, v in core.items() if v}
    labels.update(extra)
    return labels


def generator_url(template: str, doc: Mapping) -> str:
    """``template`` with ``{id}`` replaced by the incident id (URL-quoted); "" stays ""."""
    return template.replace("{id}", quote(str(doc.get("id", "")), safe="")) if template else ""


def _epoch(ts) -> float | None:
    try:
        dt = datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def am_time(t: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager parses it."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _annotation(text) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= AM_ANNOTATION_CHARS else text[:AM_ANNOTATION_CHARS - 3] + "..."


def alertmanager_annotations(doc: Mapping) -> dict[str, str]:
    """Title, summary, cause (``description``), remediation, counts, hosts, resources, request
    ids and the latest evidence message; empty ones are left out."""
    resources = doc.get("resources") if isinstance(doc.get("resources"), Mapping) else {}
    evidence = doc.get("evidence") if isinstance(doc.get("evidence"), list) else []
    last = evidence[-1] if evidence and isinstance(evidence[-1], Mapping) else {}
    request_ids = list(doc.get("request_ids") or ())
    pairs = (
        ("title", doc.get("title")), ("summary", doc.get("summary")),
        ("description", doc.get("probable_cause")), ("remediation", doc.get("remediation")),
        ("count", doc.get("count")), ("evidence_count", len(evidence)),
        ("hosts", ", ".join(str(h) for h in doc.get("hosts") or () if h)),
        ("services", ", ".join(str(s) for s in doc.get("services") or () if s)),
        ("first_seen", doc.get("first_seen")), ("last_seen", doc.get("last_seen")),
        ("resources", "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in sorted(resources.items())
                                if isinstance(v, list) and v)),
        ("request_ids", ", ".join(request_ids[:AM_REQUEST_IDS])
         + (f" (+{len(request_ids) - AM_REQUEST_IDS} more)" if len(request_ids) > AM_REQUEST_IDS else "")),
        ("evidence", last.get("message")))
    return {k: _annotation(v) for k, v in pairs if v not in (None, "")}


def alertmanager_alert(doc: Mapping, labels: Mapping[str, str], now: float, *,
                       generator: str = "", ends_at: float | None = None) -> dict:
    """One alert of a ``POST /api/v2/alerts`` body.

    ``startsAt`` is the incident's first_seen. A firing alert has no ``endsAt``: Alertmanager
    keeps it firing for its resolve_timeout, and the notifier re-sends it sooner. A resolved
    incident ends at its last_seen; ``ends_at`` ends an alert at that time instead (a label set
    replaced by another). Times after ``now`` are taken as ``now`` (log clocks can be ahead), so
    an alert that ended is never still firing in Alertmanager."""
    starts = min(_epoch(doc.get("first_seen")) or now, now)
    alert = {"labels": dict(labels), "annotations": alertmanager_annotations(doc),
             "startsAt": am_time(starts)}
    if ends_at is None and doc.get("status") == "resolved":
        ends_at = _epoch(doc.get("last_seen")) or now
    if ends_at is not None:
        alert["endsAt"] = am_time(max(starts, min(ends_at, now)))
    if generator:
        alert["generatorURL"] = generator
    return alert


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
    if r.style == "alertmanager_api":
        raise ValueError("alertmanager_api receivers get alertmanager_alert() lists, not render()")
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
