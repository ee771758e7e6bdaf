"""Domain types: the parsed log event and the incident.

Pure Python: no I/O, no wall clock, no streaming libraries. The parser in
``pipeline`` builds :class:`Event` objects; detectors read them and return
:class:`Incident` snapshots (plain dicts, see :meth:`Incident.to_doc`).
An Event is flat on the hot path; its JSON (ECS) document is
``pipeline.codec``'s business.
"""
from __future__ import annotations

from typing import Any

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Scalar event fields (``pipeline.codec.ecs`` maps each to its ECS name).
_SCALARS: tuple[str, ...] = (
    "timestamp", "message", "original", "kind", "reason", "level", "logger", "file_path", "offset",
    "origin_function", "origin_file", "origin_line", "pid", "host", "service", "request_id",
    "global_request_id", "user_id", "project_id", "user_name", "project_name", "instance_id",
    "http_method", "url_path", "status_code", "body_bytes", "duration_ns", "source_ip", "error_type",
    "error_message", "stack_trace", "errno",
)
_FIELD_SET = frozenset(_SCALARS) | {"ts", "resources"}


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
    FIELDS = _SCALARS + ("ts", "resources")
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
