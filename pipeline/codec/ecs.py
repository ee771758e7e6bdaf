"""Events as ECS documents: the document of an :class:`Event` and back, its
deterministic id, its Kafka key, and the record of the events topic.

An Event is flat on the hot path; :func:`event_to_doc` maps it to the nested
ECS-shaped document that is printed, shipped and indexed, and
:func:`event_from_doc` maps it back (the streaming worker re-keys events by
request id through Kafka).
"""
from __future__ import annotations

import hashlib
from typing import Any

from detectors.model import Event

from pipeline.codec.caps import cap
from pipeline.codec.core import dumps, loads

# Scalar event fields and the dotted ECS path each maps to (``ts`` and
# ``resources`` are handled separately), in document order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("timestamp", "@timestamp"),
    ("message", "message"),
    ("original", "event.original"),
    ("kind", "event.dataset"),
    ("reason", "event.reason"),
    ("level", "log.level"),
    ("logger", "log.logger"),
    ("file_path", "log.file.path"),
    ("offset", "log.offset"),
    ("lines", "log.lines"),
    ("nbytes", "log.bytes"),
    ("origin_function", "log.origin.function"),
    ("origin_file", "log.origin.file.name"),
    ("origin_line", "log.origin.file.line"),
    ("pid", "process.pid"),
    ("host", "host.name"),
    ("service", "service.name"),
    ("request_id", "openstack.request_id"),
    ("global_request_id", "openstack.global_request_id"),
    ("user_id", "openstack.user_id"),
    ("project_id", "openstack.project_id"),
    ("user_name", "openstack.user_name"),
    ("project_name", "openstack.project_name"),
    ("instance_id", "openstack.instance_id"),
    ("http_method", "http.request.method"),
    ("url_path", "url.path"),
    ("status_code", "http.response.status_code"),
    ("body_bytes", "http.response.body.bytes"),
    ("duration_ns", "event.duration"),
    ("source_ip", "source.ip"),
    ("error_type", "error.type"),
    ("error_message", "error.message"),
    ("stack_trace", "error.stack_trace"),
    ("errno", "error.code"),
)

# (field, dotted name, its parts: None for a top-level "@" name), in document order
_PATHS = tuple((name, dotted, None if dotted[0] == "@" else tuple(dotted.split(".")))
               for name, dotted in FIELDS)


def event_to_doc(ev: Event) -> dict:
    """The nested ECS document for an event (None fields are left out)."""
    doc: dict = {"event": {"kind": "pipeline_error" if ev.kind == "unparsed" else "event"}}
    get = ev.__dict__.get            # an Event stores only the fields its record has
    for name, dotted, parts in _PATHS:
        value = get(name) if name != "kind" else ev.kind
        if value is None:
            continue
        if parts is None:
            doc[dotted] = value
            continue
        node = doc
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            node = child
        node[parts[-1]] = value
    if ev.resources:
        doc.setdefault("openstack", {})["resources"] = {k: list(v) for k, v in ev.resources.items()}
    return doc


def event_from_doc(doc: dict) -> Event:
    """Inverse of :func:`event_to_doc`; ``ts`` comes from the ``_ts`` the
    events topic carries beside the document (None without it)."""
    kw: dict[str, Any] = {}
    for name, dotted, parts in _PATHS:
        if parts is None:
            node: Any = doc.get(dotted)
        else:
            node = doc
            for p in parts:
                node = node.get(p) if isinstance(node, dict) else None
                if node is None:
                    break
        if node is not None:
            kw[name] = node
    res = (doc.get("openstack") or {}).get("resources")
    if res:
        kw["resources"] = {k: list(v) for k, v in res.items()}
    kw["ts"] = doc.get("_ts")
    return Event(**kw)


def event_json(ev: Event) -> bytes:
    """The event's document as JSON (what ``osloscope parse`` prints)."""
    return dumps(event_to_doc(ev))


def event_id(ev: Event, generation: str | None = None) -> str:
    """Deterministic: the record's host, file and byte offset (or its content).

    ``generation`` tells apart the successive files behind one path (the
    shipper's ``inode`` header): after rotation the new file starts at offset
    0 again and its records must not overwrite the old file's.
    """
    if ev.offset is not None:
        basis = f"{ev.host}\0{ev.file_path}\0{ev.offset}"
        if generation:
            basis += f"\0{generation}"
    else:
        basis = f"{ev.host}\0{ev.file_path}\0{ev.timestamp}\0{ev.pid}\0{ev.original}"
    return hashlib.sha1(basis.encode("utf-8", "backslashreplace")).hexdigest()[:24]


def request_key(ev: Event) -> bytes:
    """The events topic's key: the request the event belongs to (else its file)."""
    return (ev.global_request_id or ev.request_id or f"{ev.host}|{ev.file_path}").encode()


# -- the events topic: (request key, capped document + "_id" + "_ts") ----------------
def event_record(ev: Event, generation: str | None = None) -> tuple[bytes, bytes]:
    """Key and value of the event's record on the events topic."""
    doc = event_to_doc(ev)
    doc["_id"] = event_id(ev, generation)
    doc["_ts"] = ev.ts
    return request_key(ev), cap(doc)


def read_event_record(value: bytes) -> tuple[dict, str, float | None]:
    """(document, event id, epoch seconds) of an events topic record;
    ValueError if it is not one."""
    doc = loads(value)
    if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
        raise ValueError("not an event record (a JSON object with an \"_id\")")
    eid = doc.pop("_id")
    ts = doc.pop("_ts", None)
    if ts is not None and not isinstance(ts, (int, float)):
        raise ValueError(f"not an event record (_ts {ts!r} is not a number)")
    return doc, eid, ts
