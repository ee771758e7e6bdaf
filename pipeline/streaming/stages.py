"""The worker's stages as plain synchronous objects (the faust app in
``worker.py`` only moves bytes between Kafka, these and Elasticsearch).

``ParseStage``  raw topic -> parse (folding per host + file) -> host-scoped
                detectors (ENOSPC, auth bursts) -> events keyed by request
                id, incidents keyed by incident id, dead letters.
``CorrelateStage`` events topic -> request-scoped detectors (retry
                exhaustion, correlated across hosts by request / resource)
                -> incidents; events to index.

Exactly the parser and detectors of embedded mode. Each stage's state
(parser streams with their open records, detector state, the last input
offset per partition) is saved by ``snapshot()`` after the stage's outputs
were acknowledged and before the input offsets are acked; ``restore()``
brings it back and ``process()`` then skips input at or below the saved
offsets, so a restart neither loses nor double-counts. Outputs carry
deterministic ids, so the little that is emitted twice (a batch whose
outputs were acknowledged but whose snapshot was not written) overwrites
itself downstream; ``CorrelateStage`` also drops events it has already
seen (bounded memory of recent event ids) so detector counts stay exact.
"""
from __future__ import annotations

import hashlib
import logging
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

from detectors.model import Event, event_from_doc, event_to_doc

from pipeline import codec, signatures
from pipeline.parsing.extract import Source
from pipeline.parsing.naming import service_from_path
from pipeline.parsing.parser import Parser

log = logging.getLogger("osloscope.worker")

STATE_VERSION = 1
MAX_EVENT_BYTES = 900_000       # below Kafka's default 1 MiB message limit
TRUNCATED = "...[truncated by osloscope]"
# CorrelateStage remembers the ids of this many recent events per batch size:
# a duplicate is at most one parse batch (plus idle flushes) behind its original
SEEN_PER_BATCH = 4


@dataclass
class RawMessage:
    """One record of the raw topic, whoever shipped it."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Output:
    events: list[tuple[bytes, bytes]] = field(default_factory=list)       # (key, json)
    incidents: list[dict] = field(default_factory=list)
    deadletters: list[dict] = field(default_factory=list)
    es_actions: list[dict] = field(default_factory=list)

    def extend(self, other: "Output") -> None:
        self.events.extend(other.events)
        self.incidents.extend(other.incidents)
        self.deadletters.extend(other.deadletters)
        self.es_actions.extend(other.es_actions)

    def __bool__(self) -> bool:
        return bool(self.events or self.incidents or self.deadletters or self.es_actions)


def event_id(ev: Event, generation: str | None = None) -> str:
    """Deterministic: the record's host, file and byte offset (or its content).

    ``generation`` tells apart the successive files behind one path (the
    shipper's ``inode`` header): after rotation the new file starts at offset
    0 again and its records must not overwrite the old file's.
    """
    if ev.offset is not None:
        basis = f"{ev.host}\0{ev.file_path}\0{ev.offset}"
        if generation:
            basis += f"\0{generation}"
    else:
        basis = f"{ev.host}\0{ev.file_path}\0{ev.timestamp}\0{ev.pid}\0{ev.original}"
    return hashlib.sha1(basis.encode("utf-8", "backslashreplace")).hexdigest()[:24]


def request_key(ev: Event) -> bytes:
    return (ev.global_request_id or ev.request_id or f"{ev.host}|{ev.file_path}").encode()


def _cap(doc: dict) -> bytes:
    data = codec.dumps(doc)
    if len(data) <= MAX_EVENT_BYTES:
        return data
    ev = doc.get("event", {})
    if isinstance(ev.get("original"), str):
        ev["original"] = ev["original"][:MAX_EVENT_BYTES // 4] + TRUNCATED
    err = doc.get("error", {})
    if isinstance(err.get("stack_trace"), str):
        err["stack_trace"] = err["stack_trace"][:MAX_EVENT_BYTES // 4] + TRUNCATED
    if isinstance(doc.get("message"), str) and len(doc["message"]) > MAX_EVENT_BYTES // 4:
        doc["message"] = doc["message"][:MAX_EVENT_BYTES // 4] + TRUNCATED
    return codec.dumps(doc)


@lru_cache(maxsize=4096)
def _header_source(host: bytes, path: bytes, service: bytes) -> Source:
    """The Source of ``osloscope ship`` headers (a few files send most lines)."""
    h = host.decode("utf-8", "replace") or None
    p = path.decode("utf-8", "replace") or None
    svc = service.decode("utf-8", "replace") or (service_from_path(p) if p else None)
    return Source(h, svc, p)


def source_of(msg: RawMessage) -> tuple[Source, int | None]:
    """Host, service, file and byte offset of a raw record.

    ``osloscope ship`` sets headers; other shippers send a JSON envelope (the
    parser unwraps it) or a bare line, keyed ``host|path`` or not at all.
    """
    h = msg.headers
    if "host" in h or "path" in h:
        try:
            offset = int(h["offset"]) if "offset" in h else None
        except ValueError:
            offset = None
        return _header_source(h.get("host", b""), h.get("path", b""), h.get("service", b"")), offset
    if msg.key:
        key = msg.key.decode("utf-8", "replace")
        host, sep, path = key.partition("|")
        if sep:
            return Source(host or None, service_from_path(path) if path else None, path or None), None
    return Source(None, None, f"kafka:{msg.topic}/{msg.partition}"), None


class _TrackingParser(Parser):
    """A Parser that remembers when each of its streams last received a line."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.activity: dict[tuple, float] = {}
        self.clock = 0.0

    def _stream(self, source: Source):
        self.activity[(source.host, source.path)] = self.clock
        return super()._stream(source)


class _Stage:
    """What both stages share: skipping input at or below the saved offsets,
    and their snapshot format (a version-checked pickle)."""

    name = "stage"

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}          # "topic/partition" -> last processed offset
        self.stats: dict[str, int] = {"records_in": 0, "skipped_replay": 0}

    def _fresh(self, msg: RawMessage) -> str | None:
        """The message's "topic/partition" if it is new input, None if already processed."""
        tp = f"{msg.topic}/{msg.partition}"
        if msg.offset <= self.offsets.get(tp, -1):
            self.stats["skipped_replay"] += 1
            return None
        self.offsets[tp] = msg.offset
        self.stats["records_in"] += 1
        return tp

    def _incidents(self, docs: list[dict], out: Output) -> None:
        if docs:
            latest = _latest(docs)
            out.incidents.extend(latest)
            self.stats["incidents_out"] += len(latest)

    def _emitted(self, emitted, out: Output, sink=None) -> None:
        """An engine's output: incidents, and request summaries to index."""
        self._incidents(emitted.incidents, out)
        if emitted.requests:
            self.stats["requests_out"] = self.stats.get("requests_out", 0) + len(emitted.requests)
            if sink is not None:
                out.es_actions.extend(sink.request_action(s) for s in emitted.requests)

    def _pack(self, **state) -> bytes:
        return pickle.dumps({"version": STATE_VERSION, "stage": self.name, "offsets": self.offsets,
                             "engine": self.engine.snapshot(), **state},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def _unpack(self, data: bytes) -> dict:
        state = pickle.loads(data)
        if state.get("version") != STATE_VERSION or state.get("stage") != self.name:
            raise ValueError(f"state of another version/stage: {state.get('version')}/{state.get('stage')}")
        self.offsets = dict(state["offsets"])
        self.engine.restore(state["engine"])
        return state


def _latest(docs: list[dict]) -> list[dict]:
    """One version per incident: the last."""
    return list({d["id"]: d for d in docs}.values())


class ParseStage(_Stage):
    name = "parse"

    def __init__(self, settings) -> None:
        super().__init__()
        self.settings = settings
        self.parsers: dict[str, _TrackingParser] = {}
        self.engine = signatures.engine("host", settings)
        self.generation: dict[tuple, str] = {}     # (host, path) -> file identity (inode header)
        self.idle = _IdleClock()
        self.stats.update(events_out=0, dead_letters=0, incidents_out=0)

    def _parser(self, source: Source) -> _TrackingParser:
        tz = self.settings.parser.timezone_for(source.host, source.path)
        p = self.parsers.get(tz)
        if p is None:
            p = self.parsers[tz] = _TrackingParser(tz)
        return p

    # -- input -----------------------------------------------------------------
    def process(self, messages: list[RawMessage], now: float) -> Output:
        """Parse a batch of raw messages (one line each, or a JSON envelope)."""
        out = Output()
        for msg in messages:
            tp = self._fresh(msg)
            if tp is None:
                continue
            source, offset = source_of(msg)
            parser = self._parser(source)
            gen = msg.headers.get("inode")
            if gen is not None:
                gen_text = gen.decode("ascii", "replace")
                file_key = (source.host, source.path)
                known = self.generation.get(file_key)
                if known != gen_text:
                    if known is not None:
                        # the file was rotated: its open record ended with it, and
                        # takes the old file's identity into its event id
                        self._emit(parser.flush(Source(source.host, None, source.path)), out, now)
                    self.generation[file_key] = gen_text
            parser.clock = now
            parser.activity[(source.host, source.path)] = now
            self._feed_one(msg, parser, source, offset, out, now)
        return out

    def _feed_one(self, msg: RawMessage, parser: Parser, source: Source, offset: int | None,
                  out: Output, now: float) -> None:
        try:
            events = parser.feed(msg.value, source, offset)
        except Exception as exc:  # the parser must never raise; if it does, lose nothing
            log.exception("parser failed on %s/%s@%s", msg.topic, msg.partition, msg.offset)
            out.deadletters.append({"reason": f"parser error: {type(exc).__name__}: {exc}",
                                    "host": source.host, "file": source.path, "offset": offset,
                                    "kafka": f"{msg.topic}/{msg.partition}@{msg.offset}",
                                    "raw": msg.value.decode("utf-8", "backslashreplace")})
            self.stats["dead_letters"] += 1
            return
        self._emit(events, out, now)

    def tick(self, now: float, sink=None) -> Output:
        """Wall-clock time passed: complete idle records, advance idle detectors.
        (``sink`` is unused: the signature is the one of ``CorrelateStage.tick``.)"""
        out = Output()
        limit = self.settings.worker.idle_flush
        for parser in self.parsers.values():
            for (host, path), seen in list(parser.activity.items()):
                if now - seen >= limit:
                    del parser.activity[(host, path)]
                    events = parser.flush(Source(host, None, path))
                    self._emit(events, out, now)
        virtual = self.idle.virtual_now(now, self.engine.watermark)
        if virtual is not None:
            self._emitted(self.engine.advance(virtual), out)
        return out

    def _emit(self, events, out: Output, now: float) -> None:
        for ev in events:
            if ev.kind == "unparsed":
                dl = codec.dead_letter(ev)
                out.deadletters.append(dl)
                self.stats["dead_letters"] += 1
                continue
            doc = event_to_doc(ev)
            doc["_id"] = event_id(ev, self.generation.get((ev.host, ev.file_path)))
            doc["_ts"] = ev.ts
            out.events.append((request_key(ev), _cap(doc)))
            self.stats["events_out"] += 1
            if ev.ts is not None:
                self.idle.saw(now, ev.ts)
            self._emitted(self.engine.feed(ev), out)

    # -- state -----------------------------------------------------------------
    def snapshot(self) -> bytes:
        parsers = {tz: (p.streams, p.syslog_year) for tz, p in self.parsers.items()}
        return self._pack(parsers=parsers, generation=self.generation)

    def restore(self, data: bytes, now: float) -> None:
        state = self._unpack(data)
        self.generation = dict(state.get("generation", {}))
        self.parsers = {}
        for tz, (streams, year) in state["parsers"].items():
            p = _TrackingParser(tz, syslog_year=year)
            p.streams = streams
            p.activity = {key: now for key in streams}   # idle timers restart
            p.clock = now
            self.parsers[tz] = p


class CorrelateStage(_Stage):
    name = "correlate"

    def __init__(self, settings) -> None:
        self.settings = settings
        super().__init__()
        self.engine = signatures.engine("request", settings)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_max = SEEN_PER_BATCH * settings.worker.batch_size + 1000
        self.idle = _IdleClock()
        self.stats.update(duplicates=0, events_indexed=0, incidents_out=0, bad_records=0,
                          requests_out=0)

    def process(self, messages: list[RawMessage], now: float, sink=None) -> Output:
        """``sink`` builds the Elasticsearch actions (None: nothing to index)."""
        from pipeline.sinks.elasticsearch import wants_event

        out = Output()
        policy = self.settings.elasticsearch.index_events
        for msg in messages:
            tp = self._fresh(msg)
            if tp is None:
                continue
            try:
                doc = codec.loads(msg.value)
                eid = doc.pop("_id")
                ts = doc.pop("_ts", None)
            except Exception as exc:
                self.stats["bad_records"] += 1
                out.deadletters.append({"reason": f"bad event record on {tp}@{msg.offset}: {exc}",
                                        "raw": msg.value[:65536].decode("utf-8", "backslashreplace")})
                continue
            if eid in self.seen:
                self.stats["duplicates"] += 1
                continue
            self.seen[eid] = None
            if len(self.seen) > self.seen_max:
                self.seen.popitem(last=False)
            if sink is not None and wants_event(policy, (doc.get("log") or {}).get("level")):
                out.es_actions.append(sink.event_action(doc, eid, ts))
                self.stats["events_indexed"] += 1
            ev = event_from_doc({**doc, "_ts": ts})
            if ts is not None:
                self.idle.saw(now, ts)
            self._emitted(self.engine.feed(ev), out, sink)
        return out

    def tick(self, now: float, sink=None) -> Output:
        out = Output()
        virtual = self.idle.virtual_now(now, self.engine.watermark)
        if virtual is not None:
            self._emitted(self.engine.advance(virtual), out, sink)
        return out

    def snapshot(self) -> bytes:
        return self._pack(seen=list(self.seen))

    def restore(self, data: bytes, now: float) -> None:
        state = self._unpack(data)
        self.seen = OrderedDict((k, None) for k in state["seen"])


class _IdleClock:
    """Event time from the wall clock while no events arrive.

    While events flow, time is their watermark. After ``IDLE_AFTER`` seconds
    without any, time moves on as watermark + wall-clock seconds since the
    last event, so quiet incidents still resolve and windows still close on
    a stream that has gone silent -- but never jumps ahead of a backlog being
    replayed (events keep arriving then).
    """

    IDLE_AFTER = 5.0

    def __init__(self) -> None:
        self.wall: float | None = None
        self.event_ts: float | None = None

    def saw(self, wall: float, ts: float) -> None:
        self.wall = wall
        if self.event_ts is None or ts > self.event_ts:
            self.event_ts = ts

    def virtual_now(self, wall: float, watermark: float | None) -> float | None:
        if self.wall is None or self.event_ts is None or wall - self.wall < self.IDLE_AFTER:
            return None
        virtual = self.event_ts + (wall - self.wall)
        if watermark is not None and virtual <= watermark:
            return None
        return virtual
