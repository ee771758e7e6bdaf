"""Snapshots of a stage's state for one input partition: versioned JSON.

::

    {"format": "osloscope-stage-state", "version": 2, "stage": "parse",
     "partition": "osloscope.raw/0", ...the stage's own fields}

Encoding is strict (plain orjson): state that is not JSON -- a set, a key
that is not a string, an integer beyond 64 bits -- raises TypeError instead
of being written as something that would restore differently.
"""
from __future__ import annotations

import orjson

FORMAT = "osloscope-stage-state"


class StateRefused(ValueError):
    """A snapshot that is not this stage's format and version (or not JSON)."""

    def __init__(self, stage: str, partition: str, found: dict, expected_version: int) -> None:
        self.found = found
        self.expected_version = expected_version
        super().__init__(
            f"found format {found.get('format')!r} version {found.get('version')!r} of stage "
            f"{found.get('stage')!r} partition {found.get('partition')!r}, expected {FORMAT!r} "
            f"version {expected_version} of stage {stage!r} partition {partition!r}")


def pack_state(stage: str, version: int, partition: str, body: dict) -> bytes:
    return orjson.dumps({"format": FORMAT, "version": version, "stage": stage,
                         "partition": partition, **body})


def unpack_state(data: bytes, stage: str, version: int, partition: str) -> dict:
    """The snapshot's fields; StateRefused unless it is ``stage``'s ``version``
    for ``partition``."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise StateRefused(stage, partition, {"format": "not JSON" if doc is None else
                                              type(doc).__name__}, version)
    head = {k: doc.get(k) for k in ("format", "version", "stage", "partition")}
    if head != {"format": FORMAT, "version": version, "stage": stage, "partition": partition}:
        raise StateRefused(stage, partition, head, version)
    return doc
