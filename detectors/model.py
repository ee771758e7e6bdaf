"""Domain types: the parsed log event and the incident.

Pure Python: no I/O, no wall clock, no streaming libraries. The parser in
``pipeline`` builds :class:`Event` objects; detectors read them and return
:class:`Incident` snapshots (plain dicts, see :meth:`Incident.to_doc`).

An Event is flat (``__slots__``) on the hot path; :func:`event_to_doc` maps it
to the nested ECS-shaped document that is printed, shipped and indexed, and
:func:`event_from_doc` maps it back (the streaming worker re-keys events by
request id through Kafka).
"""
from __future__ import annotations

from typing import Any

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Scalar event fields and the dotted ECS path each maps to. Resources,
# origin and tags are handled separately.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("timestamp", "@timestamp"),
    ("message", "message"),
    ("original", "event.original"),
    ("kind", "event.dataset"),
    ("reason", "event.reason"),
    ("level", "log.level"),
    ("logger", "log.logger"),
    ("file_path", "log.file.path"),
    ("offset", "log.offset"),
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


_FIELD_SET = frozenset(name for name, _ in _FIELDS) | {"ts", "resources"}


class Event:
    """One folded log record (a line plus its traceback/continuation lines).

    ``ts`` is epoch seconds (float, UTC) used for ordering and windows;
    ``timestamp`` is the ISO 8601 text with zone. ``kind`` (``event.dataset``)
    is ``"log"`` for an oslo.log record, ``"access"`` for a standalone HTTP
    access-log line, ``"unparsed"`` for text that fits no record (``reason``
    says why; ``original`` keeps it; ECS ``event.kind`` is then
    ``pipeline_error``).
    """

    # Every field defaults to None at class level, so an instance stores only
    # the fields a record has (cheap to build on the hot path).
    FIELDS = tuple(name for name, _ in _FIELDS) + ("ts", "resources")
    locals().update(dict.fromkeys(FIELDS))
    kind = "log"

    def __init__(self, **kw: Any) -> None:
        unknown = kw.keys() - _FIELD_SET
        if unknown:
            raise TypeError(f"unknown Event fields: {sorted(unknown)}")
        self.__dict__.update(kw)
        if kw.get("kind") is None:
            self.kind = "log"

    @property
    def correlation_id(self) -> str | None:
        """The id a request window groups by: global id first, else local."""
        return self.global_request_id or self.request_id

    def text(self) -> str:
        """Message plus stack trace: what signature patterns search."""
        if self.stack_trace:
            return f"{self.message or ''}\n{self.stack_trace}"
        return self.message or ""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Event({self.timestamp} {self.host}/{self.service} {self.level} {self.logger}: {(self.message or '')[:80]!r})"


def _set(doc: dict, dotted: str, value: Any) -> None:
    node = doc
    if dotted[0] == "@":
        doc[dotted] = value
        return
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


# (field, dotted name, its parts: None for a top-level "@" name), in document order
_PATHS = tuple((name, dotted, None if dotted[0] == "@" else tuple(dotted.split(".")))
               for name, dotted in _FIELDS)


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
        _set(doc, "openstack.resources", {k: list(v) for k, v in ev.resources.items()})
    return doc


def event_from_doc(doc: dict) -> Event:
    """Inverse of :func:`event_to_doc` (``ts`` is carried in ``event.ts``-less
    documents by re-parsing is not needed: the streaming codec adds ``_ts``)."""
    kw: dict[str, Any] = {}
    for name, dotted in _FIELDS:
        node: Any = doc
        if dotted[0] == "@":
            node = doc.get(dotted)
        else:
            for p in dotted.split("."):
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
