"""Elasticsearch sink: events, incidents (and later request summaries).

Writes go through ``elasticsearch.helpers.streaming_bulk`` with explicit
document ids, so redelivery after a crash overwrites instead of duplicating:

- events: ``index`` into ``<prefix>YYYY.MM.DD`` (UTC day of ``@timestamp``),
  ``_id`` = the event id (host, file, byte offset of the record);
- incidents: ``index`` of the full current document into the incidents index
  with ``_id`` = incident id. The detectors hand out the whole incident on every
  change (count, last_seen, hosts, evidence grown), so writing it is an upsert
  that is also idempotent; versions of one incident arrive in order (one
  Kafka partition per incident id) and a bulk request applies them in order.

``write(actions)`` returns only when every action is acknowledged. Items
rejected with 429 or 5xx and connection errors are retried with exponential
backoff (``max_retries``, then forever if ``retry_forever``: the caller must
not commit offsets for records Elasticsearch has not taken). Items rejected
for good (4xx: a mapping conflict, a document too large) are returned to the
caller, who sends them to the dead-letter topic with the reason.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from pipeline import codec

log = logging.getLogger("osloscope.elasticsearch")

LEVEL_RANK = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "AUDIT": 2, "WARNING": 3, "WARN": 3,
              "ERROR": 4, "CRITICAL": 5, "FATAL": 5}


class SinkError(RuntimeError):
    """Elasticsearch could not be reached or set up; carries the URL."""


@dataclass
class Rejected:
    action: dict
    status: int
    reason: str

    def dead_letter(self) -> dict:
        """The refused document as a dead letter (where it came from, if it is an event)."""
        src = self.action.get("_source") or {}
        log_ = src.get("log") if isinstance(src.get("log"), dict) else {}
        file = log_.get("file")
        return codec.dead_letter_doc(
            f"rejected by Elasticsearch ({self.status}): {self.reason}", codec.dumps(src),
            timestamp=src.get("@timestamp"), host=_name(src.get("host")),
            service=_name(src.get("service")), file=file.get("path") if isinstance(file, dict) else None,
            offset=log_.get("offset"),
            elasticsearch={"index": self.action.get("_index"), "id": self.action.get("_id")})


def _name(field):
    """``host``/``service`` of an event (ECS: an object with a name) or an incident (a string)."""
    return field.get("name") if isinstance(field, dict) else field


@dataclass
class SinkStats:
    bulk_requests: int = 0
    indexed: int = 0
    retried: int = 0
    rejected: int = 0
    errors: int = 0


def day_index(prefix: str, timestamp: str | None, ts: float | None = None) -> str:
    if ts is not None:
        day = datetime.fromtimestamp(ts, timezone.utc)
    elif timestamp:
        try:
            day = datetime.fromisoformat(timestamp).astimezone(timezone.utc)
        except ValueError:
            day = datetime.now(timezone.utc)
    else:
        day = datetime.now(timezone.utc)
    return f"{prefix}{day:%Y.%m.%d}"


def wants_event(policy: str, level: str | None) -> bool:
    """The ``index_events`` setting: all | warning+ | none."""
    if policy == "all":
        return True
    if policy == "none":
        return False
    return LEVEL_RANK.get((level or "").upper(), 2) >= 3


def make_client(es):
    """An ``elasticsearch.Elasticsearch`` for ElasticsearchSettings ``es``."""
    from elasticsearch import Elasticsearch, OrjsonSerializer

    class Serializer(OrjsonSerializer):
        """orjson (a dependency anyway: faster than the json module, so the
        worker's indexing thread holds the GIL less), with ``codec.dumps``'
        fallback for what orjson refuses (integers beyond 64 bits)."""

        def json_dumps(self, data):
            try:
                return super().json_dumps(data)
            except TypeError:
                return codec.dumps(data)

    kw = es.client_kwargs()
    kw.setdefault("serializer", Serializer())
    kw.setdefault("retry_on_timeout", True)
    kw.setdefault("max_retries", 3)
    return Elasticsearch(**kw)


class ElasticsearchSink:
    def __init__(self, es, *, client=None, retry_forever: bool = True,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = es
        self.client = client if client is not None else make_client(es)
        self.retry_forever = retry_forever
        self.sleep = sleep
        self.stats = SinkStats()

    # -- actions ---------------------------------------------------------------
    def event_actions(self, doc: dict, doc_id: str, ts: float | None = None) -> list[dict]:
        """The action indexing an event document, if ``index_events`` wants it; else none."""
        if not wants_event(self.settings.index_events, (doc.get("log") or {}).get("level")):
            return []
        return [self.event_action(doc, doc_id, ts)]

    def event_action(self, doc: dict, doc_id: str, ts: float | None = None) -> dict:
        return {"_op_type": "index", "_index": day_index(self.settings.events_index_prefix,
                                                         doc.get("@timestamp"), ts),
                "_id": doc_id, "_source": doc}

    def incident_action(self, doc: dict) -> dict:
        return {"_op_type": "index", "_index": self.settings.incidents_index, "_id": doc["id"],
                "_source": doc}

    def request_action(self, doc: dict) -> dict:
        return {"_op_type": "index", "_index": self.settings.requests_index, "_id": doc["id"],
                "_source": doc}

    # -- writing ---------------------------------------------------------------
    def write(self, actions: list[dict]) -> list[Rejected]:
        """Bulk-write ``actions``; returns the ones rejected for good."""
        from elasticsearch import ApiError, TransportError
        from elasticsearch.helpers import streaming_bulk

        pending = list(actions)
        rejected: list[Rejected] = []
        attempt = 0
        while pending:
            retry: list[dict] = []
            try:
                self.stats.bulk_requests += 1
                for (ok, item), action in zip(
                        streaming_bulk(self.client, pending, chunk_size=self.settings.bulk_max_docs,
                                       raise_on_error=False, raise_on_exception=True,
                                       max_retries=0), pending):
                    if ok:
                        self.stats.indexed += 1
                        continue
                    info = next(iter(item.values()))
                    status = int(info.get("status") or 0)
                    if status == 429 or status >= 500:
                        retry.append(action)
                    else:
                        err = info.get("error")
                        reason = err.get("reason") if isinstance(err, dict) else str(err)
                        etype = err.get("type") if isinstance(err, dict) else "error"
                        rejected.append(Rejected(action, status, f"{etype}: {reason}"))
                        self.stats.rejected += 1
            except (TransportError, ApiError, ConnectionError) as exc:
                self.stats.errors += 1
                retry = pending
                log.warning("Elasticsearch bulk request to %s failed: %s", self.settings.url, exc)
            if not retry:
                break
            attempt += 1
            self.stats.retried += len(retry)
            if attempt > self.settings.max_retries and not self.retry_forever:
                for action in retry:
                    rejected.append(Rejected(action, 503, "Elasticsearch unavailable after "
                                             f"{attempt} attempts"))
                break
            delay = min(30.0, 0.5 * 2 ** min(attempt, 6))
            log.warning("Elasticsearch: %d document(s) not yet taken, retry %d in %.1f s",
                        len(retry), attempt, delay)
            self.sleep(delay)
            pending = retry
        return rejected

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - closing a dead connection
            pass


def install_templates(es, client=None, log_fn: Callable[[str], None] | None = None) -> list[str]:
    """PUT the index templates (idempotent); returns their names."""
    from pipeline.sinks.index_templates import templates

    client = client or make_client(es)
    names = []
    for name, body in templates(es).items():
        client.indices.put_index_template(name=name, **body)
        names.append(name)
        if log_fn:
            log_fn(f"index template {name} -> {', '.join(body['index_patterns'])}")
    return names



class BufferedIndexer:
    """Index events and incidents from an in-process loop (``osloscope watch``).

    ``add(events, incidents)`` is called once per polled batch and writes that
    batch in one bulk request (acknowledged before it returns); ``close()``
    releases the client. Events get the same ids as in the worker.
    """

    def __init__(self, es, *, client=None) -> None:
        self.sink = ElasticsearchSink(es, client=client, retry_forever=False)
        self.rejected: list[Rejected] = []

    def add(self, events, incidents) -> None:
        actions = [a for ev in events if ev.kind != "unparsed"
                   for a in self.sink.event_actions(codec.event_to_doc(ev), codec.event_id(ev), ev.ts)]
        actions += [self.sink.incident_action(doc) for doc in incidents]
        if actions:
            self.rejected.extend(self.sink.write(actions))

    def close(self) -> None:
        self.sink.close()
