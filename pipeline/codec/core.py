"""JSON text of the documents osloscope writes (orjson), and back."""
from __future__ import annotations

from typing import Any

import orjson

OPTS = orjson.OPT_NON_STR_KEYS

INT_RANGE = (-(1 << 63), (1 << 64) - 1)      # what orjson encodes as a number


def dumps(obj: Any) -> bytes:
    """JSON of ``obj``; never fails on what a log line can put in a document:
    an integer beyond 64 bits (a garbage pid or size) is written as a string
    (Elasticsearch then rejects the document for its mapping, and the worker
    dead-letters it with that reason, instead of the stage crashing on it)."""
    try:
        return orjson.dumps(obj, option=OPTS)
    except TypeError:
        return orjson.dumps(_json_safe(obj), option=OPTS, default=str)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not INT_RANGE[0] <= obj <= INT_RANGE[1]:
        return str(obj)
    return obj


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
