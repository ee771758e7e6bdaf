"""Parsing for ``osloscope analyze`` in several processes.

The files are dealt to ``jobs`` worker processes (largest first, each to the
least loaded worker). Each worker parses its share exactly as one process
would (``analyze.keyed_events``: per-file reorder, merge by (timestamp, file
index)) and sends the merged ``(timestamp, file index, event)`` tuples in
batches through its own bounded queue; the parent merges the workers'
streams by the same key, so detection sees the same sequence as with one
process. Progress (bytes read), warnings and line counts travel on the same
queues; an exception in a worker is raised in the parent with its traceback.
"""
from __future__ import annotations

import heapq
import multiprocessing
import traceback
from typing import Callable, Iterator

from pipeline.sources.files import LogFile

BATCH = 2000                # events per message
QUEUE_BATCHES = 8           # batches in flight per worker (memory bound)
PROGRESS_EVERY = 1 << 20    # bytes read between progress messages


class WorkerError(RuntimeError):
    """A parsing process failed; the message holds its traceback."""


def _deal(files: list[tuple[int, LogFile]], jobs: int) -> list[list[tuple[int, LogFile]]]:
    shares: list[list[tuple[int, LogFile]]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for item in sorted(files, key=lambda f: -f[1].size):
        k = load.index(min(load))
        shares[k].append(item)
        load[k] += max(item[1].size, 1)
    return [sorted(share, key=lambda f: f[0]) for share in shares if share]


def _work(share: list[tuple[int, LogFile]], tz: str | None, queue) -> None:
    from pipeline.local.analyze import Stats, keyed_events

    stats = Stats()
    pending = [0]

    def progress(n: int) -> None:
        pending[0] += n
        if pending[0] >= PROGRESS_EVERY:
            queue.put(("progress", pending[0]))
            pending[0] = 0

    try:
        batch: list = []
        for item in keyed_events(share, tz, stats, progress, lambda text: queue.put(("warning", text))):
            batch.append(item)
            if len(batch) >= BATCH:
                queue.put(("events", batch))
                batch = []
        if batch:
            queue.put(("events", batch))
        queue.put(("progress", pending[0]))
        queue.put(("done", {"lines": stats.lines, "damaged": stats.damaged}))
    except BaseException:                             # noqa: BLE001 - reported to the parent
        queue.put(("error", traceback.format_exc()))


def parallel_keyed_events(files: list[tuple[int, LogFile]], tz: str | None, stats,
                          on_progress: Callable[[int], None] | None,
                          on_warning: Callable[[str], None] | None,
                          jobs: int) -> Iterator[tuple]:
    from pipeline.sources.files import warn

    ctx = multiprocessing.get_context("fork")
    shares = _deal(files, jobs)
    queues = [ctx.Queue(QUEUE_BATCHES) for _ in shares]
    procs = [ctx.Process(target=_work, args=(share, tz, q), daemon=True, name=f"osloscope-parse-{k}")
             for k, (share, q) in enumerate(zip(shares, queues))]
    for p in procs:
        p.start()

    def stream(q) -> Iterator[tuple]:
        while True:
            kind, body = q.get()
            if kind == "events":
                yield from body
            elif kind == "progress":
                if on_progress is not None and body:
                    on_progress(body)
            elif kind == "warning":
                (on_warning or warn)(body)
            elif kind == "done":
                stats.lines += body["lines"]
                stats.damaged += body["damaged"]
                return
            else:
                raise WorkerError(f"a parsing process failed:\n{body}")

    try:
        yield from heapq.merge(*(stream(q) for q in queues))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
