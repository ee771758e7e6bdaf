"""The one place that maps domain types to JSON (orjson)."""
from __future__ import annotations

from typing import Any

import orjson

from detectors.model import Event, event_to_doc

OPTS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=OPTS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def event_doc(ev: Event) -> dict:
    return event_to_doc(ev)


def event_json(ev: Event) -> bytes:
    return orjson.dumps(event_to_doc(ev), option=OPTS)


def dead_letter(ev: Event) -> dict:
    """A dead-letter record: the raw text, why it failed, and where it was."""
    return {"@timestamp": ev.timestamp, "reason": ev.reason, "host": ev.host, "service": ev.service,
            "file": ev.file_path, "offset": ev.offset, "raw": ev.original}
