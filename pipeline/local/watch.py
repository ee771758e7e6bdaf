"""``osloscope watch``: live detection on local files, in one process.

The embedded counterpart of ship + worker: ``tail.Tailer`` follows the files,
one ``Parser`` per timezone (``parser.timezone_for(host, path)``, or
``--tz`` for all) folds and parses, ``detectors.Engine`` runs in process, and
every incident is printed when it opens and each time it changes (the
latest version per poll; ``--format jsonl`` prints the full document, as
``analyze --format jsonl`` does). No Kafka, no Elasticsearch: this module
imports neither.

Time. Detectors see only event time. While lines arrive, the engine's
watermark is the highest event timestamp. When nothing has arrived for a
``tick`` (1 s), the watermark moves on with the idle time:
``advance(event_watermark + seconds since the watermark last moved)`` --
never the wall clock itself, so replaying old logs does not resolve
everything at once, and a quiet incident resolves after its quiet period of
real idle time, as it would have in the log's own time.

Records. A record completes when the next record of its pid starts; a file
that goes quiet has its open records flushed after ``worker.idle_flush``
seconds without a line, so the last record of a burst is not held back --
at once when the file was read to its end and has not been modified for
that long (a replayed backlog, an archive). Within one poll, events are fed
in timestamp order, so a replay of several files merges as in ``analyze``.

Dead letters go to their file as they come. When it cannot be written (a
full disk, ENOSPC) watch goes on: it says so once, naming the file and the
error, keeps the letters in memory (up to ``MAX_HELD_BYTES``; beyond that
they are counted as lost and said to be) and tries again every tick; once
there is room every held letter is written, once and in order.

``index_sink``: an object with ``add(events, incidents)`` (called per batch:
the parsed events and the incident documents that changed) and ``close()``;
``osloscope watch --elasticsearch`` plugs in
``elasticsearch_sink.BufferedIndexer`` (imported only then).
"""
from __future__ import annotations

import errno
import io
import os
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from collections import deque
from typing import Any, Callable, Iterable

from pipeline import codec, signatures

from pipeline.sinks import terminal as render
from pipeline.sinks.deadletter_file import DeadLetterFile
from pipeline.parsing.parser import Parser
from pipeline.sources.tail import Tailer, check_paths

TICK = 1.0
MAX_HELD_BYTES = 64 << 20      # dead letters kept in memory while their file cannot be written
_NO_TS = float("-inf")


def _ts_key(ev) -> float:
    return ev.ts if ev.ts is not None else _NO_TS


def _stderr(msg: str) -> None:
    print(f"osloscope watch: {msg}", file=sys.stderr, flush=True)


def _own_files(out, dead_letter: str | None) -> list[str]:
    """Files watch writes, never to be read back (a dead letter would feed itself)."""
    own = [dead_letter] if dead_letter and dead_letter != "-" else []
    name = getattr(out, "name", None)
    if isinstance(name, str) and os.path.isfile(name):
        own.append(name)
    return own


class HeldDeadLetters(DeadLetterFile):
    """The dead-letter file of ``watch``: letters the file refuses (a full disk) are held,
    in order, and written at the next ``retry`` that succeeds; ``lost``: letters dropped
    because more than MAX_HELD_BYTES were held. Unbuffered writes: a letter cut short by
    the disk is finished later, never written twice."""

    def __init__(self, path: str | None, log: Callable[[str], None]) -> None:
        super().__init__(path, flush=True)
        self.log = log
        self.held: deque[bytes] = deque()
        self.held_bytes = 0
        self._done = 0                # bytes of held[0] already in the file
        self.failures = self.lost = 0
        self._failing = False

    def write(self, ev) -> None:
        self.count += 1
        if self.path == "-":
            return
        data = codec.dumps(codec.dead_letter(ev)) + b"\n"
        if self.held_bytes + len(data) > MAX_HELD_BYTES:
            if not self.lost:
                self.log(f"warning: more than {MAX_HELD_BYTES >> 20} MiB of dead letters wait for "
                         f"{self.path}: further ones are lost until it can be written again")
            self.lost += 1
            return
        self.held.append(data)
        self.held_bytes += len(data)
        if not self._failing:
            self.retry()

    def retry(self) -> bool:
        """Write the held letters; False if the file still refuses them."""
        try:
            if self._fh is None:
                self._fh = open(self.path, "ab", buffering=0)
            while self.held:
                data = self.held[0]
                self._done += self._fh.write(memoryview(data)[self._done:]) or 0
                if self._done >= len(data):
                    self.held.popleft()
                    self.held_bytes -= len(data)
                    self._done = 0
                    self.written += 1
        except OSError as exc:
            self.failures += 1
            if not self._failing:
                self._failing = True
                self.log(f"warning: cannot write dead letters to {self.path}: {exc.strerror or exc} "
                         f"({errno.errorcode.get(exc.errno, exc.errno)}); watch goes on, keeps them in "
                         f"memory and tries again every {TICK:g}s")
            return False
        if self._failing:
            self._failing = False
            self.log(f"dead letters written again to {self.path} (held ones included, "
                     f"after {self.failures} failed attempt(s))")
        return True

    def close(self) -> None:
        if self.held and not self.retry():
            self.log(f"warning: {len(self.held)} dead letter(s) could not be written to {self.path}: lost")
            self.lost += len(self.held)
            self.held.clear()
        super().close()


class IncidentPrinter:
    """Prints incident changes: ``jsonl`` documents or ``table`` rows."""

    def __init__(self, out, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.text = isinstance(out, io.TextIOBase)
        self.last: dict[str, dict] = {}
        self.header = False
        self.printed = 0
        self.ids: set[str] = set()

    def _write(self, data: bytes) -> None:
        self.out.write(data.decode("utf-8", "replace") if self.text else data)

    def emit(self, docs: Iterable[dict]) -> list[dict]:
        """Print the docs that differ from what was printed last; returns them."""
        latest: dict[str, dict] = {}
        for doc in docs:
            latest.pop(doc["id"], None)
            latest[doc["id"]] = doc
        changed = []
        for inc_id, doc in latest.items():
            if self.last.get(inc_id) == doc:
                continue
            new = inc_id not in self.last and inc_id not in self.ids
            if doc["status"] == "open":
                self.last[inc_id] = doc
            else:
                self.last.pop(inc_id, None)     # resolved: it will not change again
            if len(self.ids) > 100_000:
                self.ids.clear()
            self.ids.add(inc_id)
            changed.append(doc)
            if self.fmt == "jsonl":
                self._write(codec.dumps(doc) + b"\n")
            else:
                self._write(self._table(doc, new).encode())
            self.printed += 1
        if changed:
            self.out.flush()
        return changed

    def _table(self, inc: dict, new: bool) -> str:
        lines = []
        if not self.header:
            self.header = True
            lines.append("  ".join(render._cell(name, w) for name, w in render.COLUMNS))
        title = inc["title"] + ("" if inc["status"] == "open" else f" [{inc['status']}]")
        row = (inc["severity"], inc["type"], inc["host"], inc["service"], inc["count"],
               render._when(inc["last_seen"]), title)
        lines.append("  ".join(render._cell(v, w) for v, (_, w) in zip(row, render.COLUMNS)))
        if new:
            wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="           ")
            lines.append(wrap.fill(f"what:  {inc['summary']}"))
            lines.append(wrap.fill(f"cause: {inc['probable_cause']}"))
            lines.append(wrap.fill(f"fix:   {inc['remediation']}"))
        return "\n".join(lines) + "\n"


class Watcher:
    """The watch loop's state; ``step()`` does one poll (tests drive it)."""

    def __init__(self, paths: Iterable[str], settings, *, out, from_start: bool = False,
                 fmt: str = "jsonl", host: str | None = None, tz: str | None = None,
                 dead_letter: str | None = "-", index_sink: Any = None, tick: float = TICK,
                 poll_interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, log: Callable[[str], None] = _stderr) -> None:
        self.settings, self.tz, self.tick, self.clock, self.log = settings, tz, tick, clock, log
        self.wall = wall
        self.poll_interval = poll_interval if poll_interval is not None else settings.shipper.poll_interval
        self.idle_flush = settings.worker.idle_flush
        self.tailer = Tailer(list(paths), host=host, layout_hosts=True,
                             from_start=from_start, rescan_interval=max(1.0, 4 * self.poll_interval),
                             on_error=lambda m: log(f"warning: {m}"), on_notice=log, clock=clock,
                             exclude=_own_files(out, dead_letter))
        self.engine = signatures.engine("all", settings)
        self.printer = IncidentPrinter(out, fmt)
        self.dead = HeldDeadLetters(dead_letter, log)
        self.sink = index_sink
        self.year = datetime.now(timezone.utc).year
        self.parsers: dict[str, Parser] = {}
        self.parser_of: dict[tuple, Parser] = {}
        self.active: dict[tuple, tuple[Any, float]] = {}   # (host, path) -> (source, last line time)
        self.event_wm: float | None = None
        self.wm_moved = clock()
        self.last_line = clock()
        self.last_tick = clock()
        self.last_dead_try = clock()
        self.stats = {"lines": 0, "events": 0, "unparsed": 0, "incidents": 0, "updates": 0}

    def _written_out(self, tf, wall: float) -> bool:
        """Read to its end and unmodified for idle_flush seconds (a replayed
        file, an archive): its open records are complete now."""
        if tf.closed:
            return True
        try:
            st = os.fstat(tf.fh.fileno())
        except (OSError, ValueError):
            return True
        return tf.read_pos >= st.st_size and wall - st.st_mtime >= self.idle_flush

    def _parser(self, source) -> Parser:
        key = (source.host, source.path)
        p = self.parser_of.get(key)
        if p is None:
            tz = self.tz or self.settings.parser.timezone_for(source.host, source.path)
            p = self.parsers.get(tz)
            if p is None:
                p = self.parsers[tz] = Parser(tz, syslog_year=self.year)
            if len(self.parser_of) > 100_000:
                self.parser_of.clear()
            self.parser_of[key] = p
        return p

    def _process(self, events: list, docs: list[dict], now: float) -> None:
        """Events of one poll, fed in timestamp order (a replay's backlog of
        several files then merges as in ``analyze``)."""
        engine, parsed = self.engine, []
        engine.limit_future(time.time(), self.settings.worker.max_future)
        for ev in events:
            self.stats["events"] += 1
            if ev.kind == "unparsed":
                self.stats["unparsed"] += 1
                self.dead.write(ev)
            else:
                parsed.append(ev)
        parsed.sort(key=_ts_key)
        for ev in parsed:
            if ev.ts is not None and (self.event_wm is None or ev.ts > self.event_wm):
                self.event_wm = ev.ts
                self.wm_moved = now
            docs.extend(engine.feed(ev).incidents)
        if self.sink is not None and parsed:
            self.sink.add(parsed, [])

    def step(self) -> int:
        """One poll: read, parse, detect, flush idle streams, advance time.
        Returns the number of lines read."""
        lines = self.tailer.poll()
        now = self.clock()
        events: list = []
        docs: list[dict] = []
        for line in lines:
            src = line.file.source
            p = self._parser(src)
            evs = p.feed(line.data, src, line.offset)
            if evs:
                events.extend(evs)
            self.active[(src.host, src.path)] = (src, now, line.file)
        if lines:
            self.stats["lines"] += len(lines)
            self.last_line = now
        wall = self.wall()
        for key, (src, seen, tf) in list(self.active.items()):
            if now - seen >= self.idle_flush or self._written_out(tf, wall):
                events.extend(self._parser(src).flush(src))
                del self.active[key]
        if events:
            self._process(events, docs, now)
        if self.dead.held and now - self.last_dead_try >= self.tick:
            self.last_dead_try = now
            self.dead.retry()
        if not lines and now - self.last_line >= self.tick and now - self.last_tick >= self.tick \
                and self.event_wm is not None:
            self.last_tick = now
            estimate = self.event_wm + (now - self.wm_moved)
            if self.engine.watermark is None or estimate > self.engine.watermark:
                docs.extend(self.engine.advance(estimate).incidents)
        if docs:
            changed = self.printer.emit(docs)
            if changed:
                self.stats["updates"] += len(changed)
                self.stats["incidents"] = len(self.printer.ids)
                if self.sink is not None:
                    self.sink.add([], changed)
        return len(lines)

    def close(self) -> None:
        """Flush every open record (no time advance: nothing resolves on exit)."""
        events: list = []
        for p in self.parsers.values():
            events.extend(p.flush())
        docs: list[dict] = []
        if events:
            self._process(events, docs, self.clock())
        docs.extend(self.engine.flush().incidents)      # windows close: causes join their incidents
        if docs:
            changed = self.printer.emit(docs)
            self.stats["updates"] += len(changed)
            self.stats["incidents"] = len(self.printer.ids)
            if self.sink is not None and changed:
                self.sink.add([], changed)
        self.tailer.close()
        self.dead.close()
        if self.sink is not None:
            self.sink.close()


def watch(paths: Iterable[str], settings, *, out, stop_event: threading.Event, from_start: bool = False,
          fmt: str = "jsonl", host: str | None = None, tz: str | None = None, dead_letter: str | None = "-",
          index_sink: Any = None, tick: float = TICK, poll_interval: float | None = None,
          clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = _stderr,
          ready: threading.Event | None = None) -> dict:
    """Watch ``paths`` until ``stop_event``; incidents go to ``out`` (a text or
    binary stream). ``ready`` is set once the files present at start-up have
    been opened (lines appended after that are seen). Returns counters:
    lines, events, unparsed, incidents (distinct), updates (printed), dead_letters,
    dead_letters_lost (not written: the file refused them until the end).

    ``index_sink`` (hook for Elasticsearch indexing, None here): ``.add(events,
    incidents)`` per batch, ``.close()`` at the end."""
    paths = list(paths)
    check_paths(paths)
    w = Watcher(paths, settings, out=out, from_start=from_start, fmt=fmt, host=host, tz=tz,
                dead_letter=dead_letter, index_sink=index_sink, tick=tick, poll_interval=poll_interval,
                clock=clock, log=log)
    try:
        first = True
        while not stop_event.is_set():
            n = w.step()
            if first:
                first = False
                if ready is not None:
                    ready.set()
            if not n and not w.tailer.more:
                stop_event.wait(w.poll_interval)
    finally:
        w.close()
    return dict(w.stats, dead_letters=w.dead.count, dead_letters_lost=w.dead.lost)


if __name__ == "__main__":          # python -m pipeline.local.watch PATH... (same as osloscope watch)
    from pipeline.cli import main
    raise SystemExit(main(["watch", *sys.argv[1:]]))
