"""Notification bodies and their signatures.

:func:`render` turns a group's incidents into the bytes of one notification in the receiver's
style: ``json`` (the incident documents), ``alertmanager`` (Alertmanager's webhook body, version 4)
or ``slack`` (an incoming-webhook message). :func:`sign` gives the ``X-Osloscope-Signature``
header value (hex HMAC-SHA256 of ``"<timestamp>.<body>"``) and :func:`verify` is what a receiver
does with it (deploy/README.md, "Webhooks").
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping, Sequence

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
