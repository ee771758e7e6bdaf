"""The one event builder for detector tests: ``detectors.model.Event`` objects
made directly, without the parser, so a parser change cannot break a test
about a detector.

    from support import at, ev

    e = ev(at(5), "ERROR", "nova.compute.manager", "Instance failed to spawn: ...",
           host="cmp1", req="req-...", instance="7b1c2a40-...", error_type="IOError")

Nothing is derived from the message: what the parser would extract from it
(request and instance ids, ``error_type``/``error_message``/``stack_trace``,
``http_method``/``url_path``/``status_code``/``source_ip``, ``resources``, ...)
is given as keyword arguments named like the ``Event`` fields (``Event.FIELDS``;
an unknown name is a TypeError). Only the fields a detector reads need to be
set. Real log lines through the parser and the detectors belong to the tests
that read ``tests/fixtures`` (``support.parse_text``/``analyze_paths``).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from detectors.model import Event

UTC = dt.timezone.utc
T0 = dt.datetime(2017, 6, 6, 9, 0, 0, tzinfo=UTC)     # the default time base


def at(seconds: float = 0.0, base: dt.datetime = T0) -> dt.datetime:
    """``base`` (naive: UTC) plus ``seconds``."""
    return _utc(base) + dt.timedelta(seconds=seconds)


def ev(t: dt.datetime | float, level: str = "INFO", logger: str | None = None, message: str = "", *,
       host: str | None = "h1", service: str | None = "nova-compute",
       req: str | None = None, greq: str | None = None, instance: str | None = None,
       **fields: Any) -> Event:
    """One log record at ``t`` (a datetime, naive = UTC; or seconds after ``T0``),
    truncated to milliseconds as oslo.log writes it: ``ts`` and ``timestamp``
    (ISO 8601, ``+00:00``) agree.

    ``req``/``greq``/``instance`` are ``request_id``/``global_request_id``/
    ``instance_id``; every other ``Event`` field goes by its own name
    (``kind`` defaults to ``"log"``). ``message`` is the text after the
    context and ``[instance: ...]`` prefix, as the parser leaves it.
    """
    when = at(t) if isinstance(t, (int, float)) else _utc(t)
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    whole = when.replace(microsecond=0)
    kw: dict[str, Any] = {
        "ts": whole.timestamp() + when.microsecond / 1_000_000,
        "timestamp": when.isoformat(timespec="milliseconds"),
        "level": level, "logger": logger, "message": message, "host": host, "service": service,
    }
    for name, value in (("request_id", req), ("global_request_id", greq), ("instance_id", instance)):
        if value is not None:
            kw[name] = value
    kw.update(fields)
    return Event(**{k: v for k, v in kw.items() if v is not None})


def by_time(*streams: Iterable[Event]) -> list[Event]:
    """The events of several streams merged in timestamp order (stable)."""
    return sorted((e for s in streams for e in s), key=lambda e: e.ts or 0)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
