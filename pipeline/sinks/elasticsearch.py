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

A slow or frozen Elasticsearch is seen, not waited for in silence: each bulk
request is bounded by ``request_timeout`` (the client does not retry on its
own: every failed attempt is logged here, with its backoff), and everything
is measured (``latency``: requests by outcome, a histogram of their
durations, the age of the oldest write not yet taken). ``watch()``, called
from another thread or the event loop while ``write`` blocks, logs a write in
flight longer than ``slow_request`` seconds, and again every
``SLOW_LOG_EVERY`` seconds while it lasts.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from pipeline import codec

log = logging.getLogger("osloscope.elasticsearch")

# upper bounds (seconds) of the request duration histogram's buckets
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SLOW_LOG_EVERY = 30.0      # seconds between the log lines of one request still in flight

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
            offset=log_.get("offset"), lines=_count(log_.get("lines")), nbytes=_count(log_.get("bytes")),
            elasticsearch={"index": self.action.get("_index"), "id": self.action.get("_id")})


def _count(value) -> int | None:
    """An event's ``log.lines``/``log.bytes`` for its dead letter (None: not an event's)."""
    return value if type(value) is int else None


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


class Latency:
    """What the sink's writes cost, safe to read from another thread while one blocks.

    A *write* is a batch handed to ``ElasticsearchSink.write``: in flight from its first
    request until Elasticsearch took every document (through timeouts, retries and their
    backoff). Each *request* (an attempt) is counted by outcome and timed in a histogram."""

    def __init__(self, slow_after: float) -> None:
        self.slow_after = slow_after
        self._lock = threading.Lock()
        self._inflight: dict[int, list] = {}     # token -> [start, documents, slow logged at, attempts]
        self._token = 0
        self.outcomes: Counter = Counter()
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.count = 0
        self.seconds = 0.0
        self.slow = 0

    def start(self, documents: int, now: float | None = None) -> int:
        """A write of ``documents`` begins; its token."""
        with self._lock:
            self._token += 1
            self._inflight[self._token] = [time.monotonic() if now is None else now, documents, None, 0]
            return self._token

    def request(self, token: int, outcome: str, seconds: float) -> None:
        """One request of write ``token`` ended (``ok``, ``error`` or ``timeout``) after ``seconds``."""
        with self._lock:
            self.outcomes[outcome] += 1
            self.count += 1
            self.seconds += seconds
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            entry = self._inflight.get(token)
            if entry is not None:
                entry[3] += 1

    def finish(self, token: int, now: float | None = None) -> tuple[float, int]:
        """Write ``token`` was taken: (seconds it took, requests it needed)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, _docs, slow_logged, attempts = self._inflight.pop(token)
            took = now - start
            if slow_logged is None and took > self.slow_after:
                self.slow += 1
        return took, attempts

    def overdue(self, now: float | None = None) -> list[tuple[float, int, bool]]:
        """(seconds in flight, documents, first time) of each write in flight longer than
        ``slow_after`` that was not reported in the last SLOW_LOG_EVERY seconds; marks them
        reported (and counts each slow write once)."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            for entry in self._inflight.values():
                start, docs, logged, _attempts = entry
                if now - start <= self.slow_after or (logged is not None and now - logged < SLOW_LOG_EVERY):
                    continue
                if logged is None:
                    self.slow += 1
                entry[2] = now
                out.append((now - start, docs, logged is None))
        return out

    def snapshot(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        with self._lock:
            oldest = min((e[0] for e in self._inflight.values()), default=None)
            return {"sink": "elasticsearch", "inflight": len(self._inflight),
                    "inflight_seconds": 0.0 if oldest is None else now - oldest,
                    "outcomes": dict(self.outcomes), "count": self.count, "seconds": self.seconds,
                    "slow": self.slow, "buckets": list(zip(LATENCY_BUCKETS, self.buckets))}


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


def make_client(es, *, max_retries: int = 3):
    """An ``elasticsearch.Elasticsearch`` for ElasticsearchSettings ``es``; each request is
    bounded by ``es.request_timeout`` and retried by the client ``max_retries`` times."""
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
    kw.setdefault("retry_on_timeout", max_retries > 0)
    kw.setdefault("max_retries", max_retries)
    return Elasticsearch(**kw)


class ElasticsearchSink:
    def __init__(self, es, *, client=None, retry_forever: bool = True,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = es
        # no retries inside the client: each attempt is bounded by request_timeout, and
        # every failure is logged and retried here, with backoff
        self.client = client if client is not None else make_client(es, max_retries=0)
        self.retry_forever = retry_forever
        self.sleep = sleep
        self.stats = SinkStats()
        self.latency = Latency(es.slow_request)

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
        pending = list(actions)
        rejected: list[Rejected] = []
        token = self.latency.start(len(pending))
        try:
            self._write(pending, rejected, token)
        finally:
            took, requests = self.latency.finish(token)
        if took > self.settings.slow_request:
            log.warning("Elasticsearch at %s took %.1f s and %d request(s) to take a batch of %d document(s) "
                        "(elasticsearch.slow_request = %g s)", self.settings.url, took, requests, len(actions),
                        self.settings.slow_request)
        return rejected

    def _write(self, pending: list[dict], rejected: list[Rejected], token: int) -> None:
        from elastic_transport import ConnectionTimeout
        from elasticsearch import ApiError, TransportError
        from elasticsearch.helpers import streaming_bulk

        attempt = 0
        while pending:
            retry: list[dict] = []
            t0 = time.monotonic()
            outcome = "error"
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
                outcome = "ok"
            except ConnectionTimeout as exc:
                outcome = "timeout"
                self.stats.errors += 1
                retry = pending
                log.warning("Elasticsearch at %s did not answer a bulk request of %d document(s) within "
                            "%g s (elasticsearch.request_timeout): %s", self.settings.url, len(pending),
                            self.settings.request_timeout, exc)
            except (TransportError, ApiError, ConnectionError) as exc:
                self.stats.errors += 1
                retry = pending
                log.warning("Elasticsearch bulk request to %s failed: %s", self.settings.url, exc)
            finally:
                self.latency.request(token, outcome, time.monotonic() - t0)
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

    def watch(self, now: float | None = None) -> int:
        """Log every write in flight longer than ``slow_request`` seconds (once, then every
        SLOW_LOG_EVERY seconds while it lasts); returns how many were logged now. Safe to
        call while ``write`` blocks in another thread."""
        overdue = self.latency.overdue(now)
        for seconds, docs, first in overdue:
            log.warning("Elasticsearch at %s %s a batch of %d document(s) for %.0f s (frozen or overloaded?); "
                        "its stage waits with its offsets uncommitted, the other stages go on",
                        self.settings.url, "has not taken" if first else "still has not taken", docs, seconds)
        return len(overdue)

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
