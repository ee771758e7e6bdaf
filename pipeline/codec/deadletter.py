"""The dead letter: one shape for everything osloscope could not process.

Whoever writes one (``analyze``'s and ``watch``'s dead-letter files, the
worker's parse stage, its correlate and index stages on records they cannot
read, the Elasticsearch sink on documents it refused) builds it here::

    {"@timestamp": event time or null, "reason": why,
     "host": ..., "service": ..., "file": ..., "offset": byte offset in the file,
     "lines": input lines counted in it, "bytes": their bytes  -- when it holds input text,
     "id": deterministic id (as an event's)             -- when the worker's parse stage wrote it,
     "kafka": {"topic", "partition", "offset"}          -- only when read from Kafka,
     "elasticsearch": {"index", "id"}                   -- only when Elasticsearch refused it,
     "raw": the text as it came (cut so the letter fits MAX_DOC_BYTES)}

``lines``/``bytes`` are the accounting of ``pipeline.parsing.fold``: with the
events' ``log.lines``/``log.bytes`` they count every line of a file once
(``osloscope account``). ``raw`` may be cut; the counts never are.
"""
from __future__ import annotations

from detectors.model import Event

from pipeline.codec.caps import MAX_DOC_BYTES, cap_text
from pipeline.codec.core import dumps

MAX_REASON_BYTES = 4096


def kafka_position(topic: str, partition: int, offset: int) -> dict:
    return {"topic": topic, "partition": partition, "offset": offset}


def dead_letter_doc(reason: str, raw: str | bytes | None, *, timestamp: str | None = None,
                    host: str | None = None, service: str | None = None, file: str | None = None,
                    offset: int | None = None, kafka: dict | None = None,
                    elasticsearch: dict | None = None, limit: int = MAX_DOC_BYTES,
                    lines: int | None = None, nbytes: int | None = None,
                    id: str | None = None) -> dict:  # noqa: A002 - the document's field
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "backslashreplace")
    letter: dict = {"@timestamp": timestamp, "reason": cap_text(reason, MAX_REASON_BYTES),
                    "host": host, "service": service, "file": file, "offset": offset}
    if lines is not None:
        letter["lines"] = lines
    if nbytes is not None:
        letter["bytes"] = nbytes
    if id is not None:
        letter["id"] = id
    if kafka is not None:
        letter["kafka"] = kafka
    if elasticsearch is not None:
        letter["elasticsearch"] = elasticsearch
    letter["raw"] = ""
    letter["raw"] = cap_text(raw or "", limit - len(dumps(letter)) + 2)
    return letter


def dead_letter(ev: Event, id: str | None = None) -> dict:  # noqa: A002
    """The dead letter of an unparsed record (``ev.kind == "unparsed"``); ``id``:
    its deterministic id (``codec.event_id``), so a redelivered letter can be told apart."""
    return dead_letter_doc(ev.reason or "unparsed", ev.original, timestamp=ev.timestamp,
                           host=ev.host, service=ev.service, file=ev.file_path, offset=ev.offset,
                           lines=ev.lines, nbytes=ev.nbytes, id=id)
