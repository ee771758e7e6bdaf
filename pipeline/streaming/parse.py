"""The parse stage: raw topic -> parse (folding per host + file) ->
host-scoped detectors (ENOSPC, auth bursts) -> events keyed by request id,
incidents keyed by incident id, dead letters.

Exactly the parser and detectors of embedded mode, one set per raw
partition (a partition sees whole hosts: the raw topic is keyed by host).
Parsed events are held until every file of the partition has passed them
(eventtime.py), then go on in timestamp order: to the host-scoped engine
and to the events topic, followed by a watermark marker to every events
partition that says up to when this partition has released everything.
A partition's state: its parsers (open records per stream), the file
generations behind each path, the host-scoped engine, the positions of its
files, the events held, the idle clock's event time and the last offset.
"""
from __future__ import annotations

import logging
import time

from pipeline import codec, signatures
from pipeline.parsing.extract import Source
from pipeline.parsing.parser import Parser
from pipeline.streaming.metrics import LineCounts
from pipeline.streaming.stage import (Output, PartitionState, RawMessage, Stage, fleet_record_key,
                                      marker, source_of)

log = logging.getLogger("osloscope.worker")


class _TrackingParser(Parser):
    """A Parser that remembers when each of its streams last received a line."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.activity: dict[tuple, float] = {}
        self.clock = 0.0

    def _stream(self, source: Source):
        self.activity[(source.host, source.path)] = self.clock
        return super()._stream(source)


class ParsePartition(PartitionState):
    """One raw partition's parsers and file generations, besides its engine."""

    def __init__(self, engine, config) -> None:
        super().__init__(engine, config, slack=config.slack, backfill=True)
        self.parsers: dict[str | None, _TrackingParser] = {}      # time zone -> parser
        self.generation: dict[tuple, str] = {}     # (host, path) -> file identity (inode header)

    def item_state(self, item) -> list:
        ev, gen = item
        return [codec.event_to_doc(ev), ev.ts, gen]

    def item_from_state(self, state) -> tuple:
        doc, ts, gen = state
        return codec.event_from_doc({**doc, "_ts": ts}), gen

    def to_state(self) -> dict:
        return {**super().to_state(),
                "parsers": [{"tz": tz, **p.to_state()} for tz, p in self.parsers.items()],
                "generation": [[host, path, gen] for (host, path), gen in self.generation.items()]}

    def restore(self, state: dict, now: float, records: dict[int, bytes], next_seq: int = 0) -> None:
        super().restore(state, now, records, next_seq)
        for p_state in state["parsers"]:
            p = _TrackingParser(p_state["tz"])
            p.restore_state(p_state)
            p.activity = {key: now for key in p.streams}      # idle timers restart
            p.clock = now
            self.parsers[p_state["tz"]] = p
        self.generation = {(host, path): gen for host, path, gen in state["generation"]}


class ParseStage(Stage):
    name = "parse"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.stats.update(events_out=0, dead_letters=0, fleet_out=0)
        self._idle_marked: set[str] = set()      # raw partitions that said they are empty
        # input lines per (outcome, host): in = raw records read, event = lines in the
        # events passed on, dead_letter = lines in dead letters (osloscope_lines_total)
        self.lines = LineCounts()

    def new_partition(self) -> ParsePartition:
        return ParsePartition(signatures.engine("host", self.settings), self.eventtime)

    def _parser(self, part: ParsePartition, source: Source) -> _TrackingParser:
        tz = self.settings.parser.timezone_for(source.host, source.path)
        p = part.parsers.get(tz)
        if p is None:
            p = part.parsers[tz] = _TrackingParser(tz)
        return p

    def pending_lines(self) -> dict[str, int]:
        """Per host, the lines read that are in no event or dead letter yet: in
        open records and in events held for their turn (osloscope_lines_pending)."""
        out: dict[str, int] = {}
        for part in self.parts.values():
            for p in part.parsers.values():
                for st in p.streams.values():
                    for rec in st.folder.open.values():
                        host = rec.host or st.source.host or ""
                        out[host] = out.get(host, 0) + rec.nlines
            for _ts, _order, (ev, _gen) in part.held.items():
                out[ev.host or ""] = out.get(ev.host or "", 0) + (ev.lines or 0)
        return out

    # -- input -----------------------------------------------------------------
    def process(self, messages: list[RawMessage], now: float, epoch: float | None = None) -> Output:
        """Parse a batch of raw messages (one line each, or a JSON envelope).
        ``now``: the monotonic clock; ``epoch``: the wall clock (Unix time)."""
        out = Output()
        epoch = time.time() if epoch is None else epoch
        touched: dict[str, ParsePartition] = {}
        for tp, part, msg in self._new_messages(messages, epoch, touched):
            source, offset = source_of(msg)
            parser = self._parser(part, source)
            gen = msg.headers.get("inode")
            if gen is not None:
                gen_text = gen.decode("ascii", "replace")
                file_key = (source.host, source.path)
                known = part.generation.get(file_key)
                if known != gen_text:
                    if known is not None:
                        # the file was rotated: its open record ended with it, and
                        # takes the old file's identity into its event id
                        self._hold(tp, part, parser.flush(Source(source.host, None, source.path)),
                                   out, now, epoch)
                    part.generation[file_key] = gen_text
            parser.clock = now
            parser.activity[(source.host, source.path)] = now
            self._feed_one(tp, part, msg, parser, source, offset, out, now, epoch)
        for tp, part in touched.items():
            self._release(tp, part, out, now, epoch)
        return out

    def _feed_one(self, tp: str, part: ParsePartition, msg: RawMessage, parser: Parser, source: Source,
                  offset: int | None, out: Output, now: float, epoch: float) -> None:
        self.lines.add("in", source.host)
        try:
            events = parser.feed(msg.value, source, offset)
        except Exception as exc:  # the parser must never raise; if it does, lose nothing
            log.exception("parser failed on %s/%s@%s", msg.topic, msg.partition, msg.offset)
            out.deadletters.append(codec.dead_letter_doc(
                f"parser error: {type(exc).__name__}: {exc}", msg.value, host=source.host,
                service=source.service, file=source.path, offset=offset,
                kafka=codec.kafka_position(msg.topic, msg.partition, msg.offset),
                lines=1, nbytes=len(msg.value)))
            self.stats["dead_letters"] += 1
            self.lines.add("dead_letter", source.host)
            return
        self._hold(tp, part, events, out, now, epoch)

    def tick(self, now: float, sink=None, epoch: float | None = None) -> Output:
        """Wall-clock time passed: complete idle records, release what the
        sources passed (and what idle sources no longer hold back), advance
        idle detectors, repeat the watermark markers. (``sink`` is unused: the
        signature is the one of ``CorrelateStage.tick``.)"""
        out = Output()
        epoch = time.time() if epoch is None else epoch
        limit = self.settings.worker.idle_flush
        for tp, part in self.parts.items():
            part.engine.limit_future(epoch, self.eventtime.max_future)
            for parser in part.parsers.values():
                for (host, path), seen in list(parser.activity.items()):
                    if now - seen >= limit:
                        del parser.activity[(host, path)]
                        # the records completed were last heard of when their line arrived
                        self._hold(tp, part, parser.flush(Source(host, None, path)), out, now, epoch,
                                   heard=seen)
                        self._dirty.add(tp)
            self._release(tp, part, out, now, epoch)
            if not part.held:
                virtual = part.idle.virtual_now(now, part.engine.watermark)
                if virtual is not None:
                    self._emitted(part.engine.advance(virtual), out)
                    self._dirty.add(tp)
        return out

    def drop(self, tp: str) -> None:
        super().drop(tp)
        self._idle_marked.discard(tp)          # assigned again: it says so again

    def idle_partitions(self, tps, now: float) -> Output:
        """Raw partitions ``tps`` assigned here with nothing to read (no lag) and no state:
        each says once, in a marker, that it holds nothing back (the correlate stage keeps
        that with its state until the partition sends events). Without it a raw partition
        that holds no host never speaks, and the correlate stage waits for it after every
        start until ``source_idle_timeout``."""
        out = Output()
        for tp in tps:
            if tp in self.parts:
                self._idle_marked.discard(tp)
            elif tp not in self._idle_marked:
                self._idle_marked.add(tp)
                out.markers.append((tp, marker(tp, None)))
        return out

    def _hold(self, tp: str, part: ParsePartition, events, out: Output, now: float, epoch: float,
              heard: float | None = None) -> None:
        """Parsed events: dead letters go at once, the rest wait for their turn.
        ``heard``: when their source last sent a line (default ``now``)."""
        heard = now if heard is None else heard
        horizon = epoch + self.eventtime.max_future
        for ev in events:
            if ev.kind == "unparsed":
                out.deadletters.append(codec.dead_letter(
                    ev, codec.event_id(ev, part.generation.get((ev.host, ev.file_path)))))
                self.stats["dead_letters"] += 1
                self.lines.add("dead_letter", ev.host, ev.lines or 0)
                continue
            ts = ev.ts
            if ts is not None and ts <= horizon:
                part.sources.saw(f"{ev.host}|{ev.file_path}", ts, heard)
            item = (ev, part.generation.get((ev.host, ev.file_path)))
            for due in part.held.push(ts, (ev.file_path or "", ev.host or ""), item, epoch):
                self._pass(tp, part, due, out, now)

    def _release(self, tp: str, part: ParsePartition, out: Output, now: float, epoch: float) -> None:
        """Everything the partition's sources have passed goes on, then a marker."""
        frontier = part.sources.frontier(now, epoch)
        due = part.held.release(frontier)
        for item in due:
            self._pass(tp, part, item, out, now)
        if due:
            self._dirty.add(tp)
        self._marker(tp, part, frontier, now, out, force=bool(due))

    def _pass(self, tp: str, part: ParsePartition, item: tuple, out: Output, now: float) -> None:
        """An event's turn: to the events topic and the host-scoped detectors;
        once more, keyed by its fleet key, for each fleet detector it is routed to."""
        ev, gen = item
        key, value = codec.event_record(ev, gen)
        out.events.append((key, value, tp))
        self.stats["events_out"] += 1
        self.lines.add("event", ev.host, ev.lines or 0)
        if ev.ts is not None:
            part.idle.saw(now, ev.ts)
        emitted = part.engine.feed(ev)
        for name, fleet_key in emitted.routed:
            out.fleet.append((fleet_record_key(name, fleet_key), value, tp, name))
            self.stats["fleet_out"] += 1
        self._emitted(emitted, out)
