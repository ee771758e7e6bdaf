"""Request summaries over local files: ``osloscope analyze --requests``.

The analysis of ``pipeline.local.analyze`` with request windows only (no
detectors): the same merged, timestamp-ordered events go through
``detectors.request_windows.RequestWindows``; every window closes by its
inactivity gap or at the end of input, and yields one summary
(``schemas/request.schema.json``).
"""
from __future__ import annotations

import heapq
import textwrap
from typing import Callable

from detectors.engine import Engine
from detectors.model import Event
from detectors.request_windows import RequestWindows

from pipeline.local.analyze import REORDER_SLACK, Stats, analyze
from pipeline.parsing.timefmt import iso_to_epoch
from pipeline.sources.files import LogFile


class InOrder:
    """Request summaries re-sorted by (first_seen, id) as they close, holding
    only those that a later one could still precede: a window still open
    started at most ``max_length + gap`` (plus analyze's reorder slack)
    before the newest first record, so older summaries are final."""

    def __init__(self, emit: Callable[[dict], None], gap: float, max_length: float) -> None:
        self.emit = emit
        self.slack = max_length + gap + REORDER_SLACK + 60.0
        self.heap: list[tuple] = []
        self.high = float("-inf")

    def add(self, doc: dict) -> None:
        first = doc["first_seen"] or ""
        ts = _epoch(first)
        if ts > self.high:
            self.high = ts
        heapq.heappush(self.heap, (first, doc["id"], ts, doc))
        limit = self.high - self.slack
        while self.heap and self.heap[0][2] < limit:
            self.emit(heapq.heappop(self.heap)[3])

    def close(self) -> None:
        while self.heap:
            self.emit(heapq.heappop(self.heap)[3])


def _epoch(text: str) -> float:
    try:
        return iso_to_epoch(text)
    except ValueError:
        return float("-inf")


def summaries(files: list[LogFile], tz: str | None = "UTC", *, since: float | None = None,
              until: float | None = None, gap: float = 120.0, max_length: float = 3600.0,
              stats: Stats | None = None, on_progress: Callable[[int], None] | None = None,
              on_unparsed: Callable[[Event], None] | None = None,
              on_summary: Callable[[dict], None] | None = None, jobs: int = 1) -> list[dict]:
    """Every request summary of ``files``, in order of first record: passed to
    ``on_summary`` as soon as its place is certain (then nothing is kept), or
    returned as a list."""
    kept: list[dict] = []
    order = InOrder(on_summary or kept.append, gap, max_length)
    engine = Engine([], windows=RequestWindows(gap=gap, max_length=max_length))
    result = analyze(files, tz=tz, since=since, until=until, engine=engine,
                     on_progress=on_progress, on_unparsed=on_unparsed, on_request=order.add, jobs=jobs)
    order.close()
    if stats is not None:
        vars(stats).update(vars(result.stats))
    return kept


COLUMNS = (("TIME", 19), ("REQUEST ID", 40), ("OUTCOME", 10), ("SERVICES", 44), ("API CALL", 44),
           ("ROOT CAUSE", 0))


def _cell(text: str, width: int) -> str:
    if width and len(text) > width:
        text = text[: width - 1] + "~"
    return text.ljust(width) if width else text


def api_text(api: dict | None) -> str:
    if not api:
        return ""
    return " ".join(str(x) for x in (api.get("method"), api.get("path"), api.get("status")) if x is not None)


def cause_text(rc: dict | None) -> str:
    if not rc:
        return ""
    what = f"{rc['exception_type']}: {rc['exception_message'] or ''}" if rc.get("exception_type") else rc["message"]
    what = " ".join(what.split())
    return f"{rc['component']} -- {what[:120]}"


def table(docs: list[dict], *, details: bool = True) -> str:
    if not docs:
        return "No requests found.\n"
    lines = ["  ".join(_cell(name, w) for name, w in COLUMNS)]
    for d in docs:
        row = ((d["first_seen"] or "")[:19].replace("T", " "), d["key"], d["outcome"],
               " > ".join(d["services"]), api_text(d["api"]), cause_text(d["root_cause"]))
        lines.append("  ".join(_cell(v, w) for v, (_, w) in zip(row, COLUMNS)))
    bad = [d for d in docs if d["root_cause"]]
    if details and bad:
        wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="           ")
        lines.append("")
        for d in bad:
            rc = d["root_cause"]
            lines.append(f"{d['key']}  ({d['outcome']}, {d['events']} records, {d['errors']} errors)")
            lines.append(wrap.fill(f"cause: {rc['reason']}"))
            if rc.get("raised_in"):
                lines.append(wrap.fill(f"at:    {rc['raised_in']}"))
            ids = "; ".join(f"{k}: {', '.join(v[:3])}" for k, v in d["linked"].items() if v)
            if ids:
                lines.append(wrap.fill(f"ids:   {ids}"))
    return "\n".join(lines) + "\n"
