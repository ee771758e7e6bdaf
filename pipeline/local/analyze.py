"""Embedded mode: the parser and the detectors over local files, no Kafka, no
Elasticsearch.

Records from all files are merged in timestamp order before detection, so
windows span files and hosts. Within one file records can come out of
order (several worker pids interleave, a record completes only when its
pid's next record starts), so each file's events pass a small reorder
buffer first.

A file that breaks off while being read (a truncated or corrupt ``.gz``)
keeps the records of every line before the damage; ``on_warning`` (default:
one line on stderr) names the file and the problem, and the other files are
analysed as usual.
"""
from __future__ import annotations

import heapq
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from detectors.engine import Engine
from detectors.model import Event

from pipeline.parsing.parser import Parser, split_lines
from pipeline.sources.files import LogFile, ReadError, read_chunks, warn

REORDER_SLACK = 300.0       # seconds a record may arrive late within one file
REORDER_MAX = 200_000       # records held at most per file


@dataclass
class Stats:
    files: int = 0
    bytes: int = 0
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    filtered: int = 0
    damaged: int = 0            # files that broke off while being read
    record_lines: int = 0       # lines counted in parsed records (log.lines), filtered ones included
    dead_lines: int = 0         # lines counted in unparsed records (the dead letters)
    by_kind: dict = field(default_factory=dict)


def _year_of(lf: LogFile) -> int:
    try:
        return datetime.fromtimestamp(os.path.getmtime(lf.path), timezone.utc).year
    except OSError:
        return 1970


def file_events(lf: LogFile, tz: str | None, stats: Stats,
                on_progress: Callable[[int], None] | None = None,
                on_warning: Callable[[str], None] | None = None) -> Iterator[Event]:
    """Every event of one file, in file order (records complete per pid).

    A file damaged part way (truncated ``.gz``...) gives the events of the
    lines before the damage, and one ``on_warning`` message (default: on
    stderr) naming the file and the problem."""
    parser = Parser(tz, syslog_year=_year_of(lf))
    feed, src = parser.feed_lines, lf.source
    n = 0
    damage = None
    try:
        # a chunk of lines at a time: the same events as Parser.feed per line
        for offset, chunk in read_chunks(lf, on_progress=on_progress):
            n += chunk.count(b"\n") + (chunk[-1:] != b"\n")
            evs = feed(split_lines(chunk), src, offset)
            if evs:
                yield from evs
    except ReadError as exc:
        damage = exc
    yield from parser.flush()
    stats.lines += n
    if damage is not None:
        stats.damaged += 1
        kept = f"analysed the {n:,} line(s) before it" if n else "no line could be read"
        (on_warning or warn)(f"{damage}; {kept}")


def reorder(events: Iterable[Event], slack: float = REORDER_SLACK,
            max_buffer: int = REORDER_MAX) -> Iterator[Event]:
    """Events in timestamp order, given they are at most ``slack`` s late."""
    heap: list = []
    seq = itertools.count()
    high = float("-inf")
    for ev in events:
        ts = ev.ts if ev.ts is not None else float("-inf")
        if ts > high:
            high = ts
        heapq.heappush(heap, (ts, next(seq), ev))
        while heap and (heap[0][0] <= high - slack or len(heap) > max_buffer):
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def _ts_key(ev: Event) -> float:
    return ev.ts if ev.ts is not None else float("-inf")


def keyed_events(files: Iterable[tuple[int, LogFile]], tz: str | None, stats: Stats,
                 on_progress: Callable[[int], None] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> Iterator[tuple[float, int, Event]]:
    """``(timestamp, file index, event)`` of ``(index, file)`` pairs, merged in
    that order: equal timestamps keep the order of the files, so any split
    of the files merged again by the same key gives the same sequence."""
    def keyed(i: int, lf: LogFile) -> Iterator[tuple[float, int, Event]]:
        for ev in reorder(file_events(lf, tz, stats, on_progress, on_warning)):
            yield _ts_key(ev), i, ev

    return heapq.merge(*(keyed(i, lf) for i, lf in files))


def merged_events(files: list[LogFile], tz: str | None, stats: Stats,
                  on_progress: Callable[[int], None] | None = None,
                  on_warning: Callable[[str], None] | None = None,
                  jobs: int = 1) -> Iterator[Event]:
    """Every event of ``files`` in timestamp order (ties: file order). With
    ``jobs`` > 1 the files are parsed by that many processes (each merging
    its share), and merged again here: the same sequence as one process."""
    stats.files = len(files)
    stats.bytes = sum(lf.size for lf in files)
    indexed = list(enumerate(files))
    jobs = min(jobs, len(files))
    if jobs <= 1:
        keyed = keyed_events(indexed, tz, stats, on_progress, on_warning)
    else:
        from pipeline.local.parallel import parallel_keyed_events
        keyed = parallel_keyed_events(indexed, tz, stats, on_progress, on_warning, jobs)
    return (ev for _ts, _i, ev in keyed)


def default_jobs() -> int:
    """Parsing processes for analyze: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


@dataclass
class Result:
    incidents: list[dict]
    stats: Stats


def analyze(files: list[LogFile], *, tz: str | None = "UTC", since: float | None = None,
            until: float | None = None, engine: Engine | None = None,
            on_progress: Callable[[int], None] | None = None,
            on_unparsed: Callable[[Event], None] | None = None,
            on_warning: Callable[[str], None] | None = None,
            on_request: Callable[[dict], None] | None = None, jobs: int = 1) -> Result:
    """Run the engine over ``files``: the latest version of each incident.

    ``engine`` defaults to every detector with request windows (the bundled
    signatures, default settings). Request summaries go to ``on_request`` as
    their windows close (none are kept here: memory stays flat in the number
    of request ids). ``jobs``: parsing processes (see ``merged_events``)."""
    if engine is None:
        from pipeline.signatures import engine as default_engine
        engine = default_engine()
    if engine.horizon is None:
        engine.limit_future(time.time())
    stats = Stats()
    latest: dict[str, dict] = {}

    def take(emitted) -> None:
        for doc in emitted.incidents:
            latest[doc["id"]] = doc
        if on_request is not None:
            for doc in emitted.requests:
                on_request(doc)

    feed = engine.feed
    for ev in merged_events(files, tz, stats, on_progress, on_warning, jobs):
        stats.events += 1
        stats.by_kind[ev.kind] = stats.by_kind.get(ev.kind, 0) + 1
        if ev.kind == "unparsed":
            stats.unparsed += 1
            stats.dead_lines += ev.lines or 0
            if on_unparsed is not None:
                on_unparsed(ev)
            continue
        stats.record_lines += ev.lines or 0
        if ev.ts is not None and ((since is not None and ev.ts < since) or
                                  (until is not None and ev.ts > until)):
            stats.filtered += 1
            continue
        emitted = feed(ev)
        if emitted.incidents or emitted.requests:
            take(emitted)
    take(engine.flush())
    incidents = sorted(latest.values(), key=lambda d: (d["first_seen"] or "", d["id"]))
    return Result(incidents, stats)
