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


class Event:
    """One folded log record (a line plus its traceback/continuation lines).

    ``ts`` is epoch seconds (float, UTC) used for ordering and windows;
    ``timestamp`` is the ISO 8601 text with zone. ``kind`` (``event.dataset``)
    is ``"log"`` for an oslo.log record, ``"access"`` for a standalone HTTP
    access-log line, ``"unparsed"`` for text that fits no record (``reason``
    says why; ``original`` keeps it; ECS ``event.kind`` is then
    ``pipeline_error``). ``pipeline.codec`` maps each field to its ECS name.

    Every field defaults to None at class level, so an instance stores only
    the fields its record has (cheap to build on the hot path). Not frozen:
    the parser masks secrets in place after extraction.
    """

    timestamp: str | None = None
    message: str | None = None
    original: str | None = None
    kind: str = "log"
    reason: str | None = None
    level: str | None = None
    logger: str | None = None
    file_path: str | None = None
    offset: int | None = None
    lines: int | None = None          # input lines counted in this record (see pipeline.parsing.fold)
    nbytes: int | None = None         # their bytes
    origin_function: str | None = None
    origin_file: str | None = None
    origin_line: int | None = None
    pid: int | None = None
    host: str | None = None
    service: str | None = None
    request_id: str | None = None
    global_request_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    user_name: str | None = None
    project_name: str | None = None
    instance_id: str | None = None
    http_method: str | None = None
    url_path: str | None = None
    status_code: int | None = None
    body_bytes: int | None = None
    duration_ns: int | None = None
    source_ip: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: str | None = None
    errno: int | None = None
    ts: float | None = None
    resources: dict[str, list[str]] | None = None      # kind -> ids the record names

    FIELDS: tuple[str, ...] = ()          # every field name, set below

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


Event.FIELDS = tuple(name for name in Event.__annotations__ if name != "FIELDS")
_FIELD_SET = frozenset(Event.FIELDS)
