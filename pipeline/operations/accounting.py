"""Where every input line went, per source file (``osloscope account``).

Every line the parser reads counts once, with its bytes, in the record that
took its first byte (``pipeline.parsing.fold``): an event (``log.lines`` and
``log.bytes`` in its document) or a dead letter (``lines`` and ``bytes``). So
for every file::

    lines sent = lines in indexed events + lines in dead letters

and the same for bytes (a line's bytes as read, without its newline). A line
folded into another record (a traceback line, a continuation) is in that
record's count. Lines in neither are *missing*: still on their way (the
worker has not read them yet, holds them in an open record or waits for the
other files before passing them on), or lost.

Two modes fill the same :class:`Ledger`:

* ``pipeline_ledger``: the streaming pipeline. *Sent* is the raw topic (one
  record per line, or per piece of a line over 1 MB; a line the shipper sent
  twice after a crash counts once), *indexed* an aggregation of the events
  indices per host and file, *dead-lettered* the dead-letter topic (a letter
  the worker wrote twice counts once). The worker group's lag on the raw and
  events topics says whether the pipeline has drained.
* ``files_ledger``: embedded mode. *Sent* is what reading the files gives
  (what ``osloscope analyze`` reads), the events and dead letters are the
  parser's (what ``analyze`` feeds its detectors and writes to its
  dead-letter file).
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

# at most this many distinct reasons kept per file (the rest counted as "other reasons")
MAX_REASONS = 20
OTHER_REASONS = "other reasons"


def reason_kind(reason: str | None) -> str:
    """A dead letter's reason without its particulars (quoted text, numbers,
    what follows ": "), so that letters of one kind count together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason or "unparsed")
    text = text.split(": ", 1)[0]
    text = re.sub(r"\d[\d,.]*", "N", text)
    return text.strip()[:120] or "unparsed"


class _Starts:
    """The line starts of one file (one generation of a path) already counted: runs
    ``[first, next)`` of consecutive lines. A line is (offset, size); the next line starts
    after its newline, or right after it for a piece of an over-long line (``piece``)."""

    __slots__ = ("firsts", "nexts")

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.nexts: list[int] = []

    def add(self, offset: int, size: int, piece: bool) -> bool:
        """False if the line at ``offset`` was counted already (a resent line)."""
        nxt = offset + size + (0 if piece else 1)
        i = bisect_right(self.firsts, offset) - 1
        if i >= 0 and offset < self.nexts[i]:
            return False
        if i >= 0 and offset == self.nexts[i]:
            self.nexts[i] = nxt
        else:
            i += 1
            self.firsts.insert(i, offset)
            self.nexts.insert(i, nxt)
        if i + 1 < len(self.firsts) and self.nexts[i] >= self.firsts[i + 1]:
            self.nexts[i] = max(self.nexts[i], self.nexts[i + 1])
            del self.firsts[i + 1], self.nexts[i + 1]
        return True


@dataclass
class FileAccount:
    host: str | None
    path: str | None
    sent_lines: int = 0
    sent_bytes: int = 0
    resent_lines: int = 0            # sent again (at-least-once shipping), counted once
    events: int = 0
    event_lines: int = 0
    event_bytes: int = 0
    uncounted_events: int = 0        # indexed before events carried log.lines
    dead_letters: int = 0
    dead_lines: int = 0
    dead_bytes: int = 0
    redelivered_letters: int = 0     # dead letters written twice, counted once
    reasons: Counter = field(default_factory=Counter)

    @property
    def missing_lines(self) -> int:
        return self.sent_lines - self.event_lines - self.dead_lines

    @property
    def missing_bytes(self) -> int:
        return self.sent_bytes - self.event_bytes - self.dead_bytes

    def add_reason(self, reason: str | None) -> None:
        kind = reason_kind(reason)
        if kind not in self.reasons and len(self.reasons) >= MAX_REASONS:
            kind = OTHER_REASONS
        self.reasons[kind] += 1

    def to_doc(self) -> dict:
        return {"host": self.host, "file": self.path,
                "sent": {"lines": self.sent_lines, "bytes": self.sent_bytes,
                         "resent_lines": self.resent_lines},
                "indexed": {"events": self.events, "lines": self.event_lines, "bytes": self.event_bytes,
                            "events_without_counts": self.uncounted_events},
                "dead_lettered": {"letters": self.dead_letters, "lines": self.dead_lines,
                                  "bytes": self.dead_bytes, "redelivered": self.redelivered_letters,
                                  "reasons": dict(self.reasons.most_common())},
                "missing": {"lines": self.missing_lines, "bytes": self.missing_bytes}}


class Ledger:
    """Per (host, file): lines and bytes sent, in indexed events, in dead letters."""

    def __init__(self, mode: str) -> None:
        self.mode = mode                   # "pipeline" | "files"
        self.files: dict[tuple, FileAccount] = {}
        self._starts: dict[tuple, _Starts] = {}
        self._letters: set = set()
        self.notes: list[str] = []
        self.lag: dict[str, int] | None = None       # worker group lag (pipeline mode)

    def file(self, host: str | None, path: str | None) -> FileAccount:
        key = (host or None, path or None)
        acc = self.files.get(key)
        if acc is None:
            acc = self.files[key] = FileAccount(*key)
        return acc

    # -- what was sent ---------------------------------------------------------------
    def sent(self, host: str | None, path: str | None, size: int, *, offset: int | None = None,
             generation: str | None = None, piece: bool = False, lines: int = 1) -> None:
        """``lines`` line(s) of ``size`` bytes sent; a line with a known ``offset`` in a file
        ``generation`` counts once however often it was sent."""
        acc = self.file(host, path)
        if offset is not None:
            starts = self._starts.get((acc.host, acc.path, generation))
            if starts is None:
                starts = self._starts[(acc.host, acc.path, generation)] = _Starts()
            if not starts.add(offset, size, piece):
                acc.resent_lines += lines
                return
        acc.sent_lines += lines
        acc.sent_bytes += size

    # -- where it went -----------------------------------------------------------------
    def indexed(self, host: str | None, path: str | None, events: int, lines: int, nbytes: int,
                counted: int | None = None) -> None:
        """``events`` indexed events of a file holding ``lines`` lines of ``nbytes`` bytes;
        ``counted``: how many of them carry line counts (default all)."""
        acc = self.file(host, path)
        acc.events += events
        acc.event_lines += lines
        acc.event_bytes += nbytes
        acc.uncounted_events += events - (events if counted is None else counted)

    def dead_letter(self, doc: dict) -> None:
        """A dead letter (``pipeline.codec.deadletter``); one the worker wrote twice counts once."""
        key = _letter_key(doc)
        acc = self.file(_text(doc.get("host")), _text(doc.get("file")))
        if key is not None:
            if key in self._letters:
                acc.redelivered_letters += 1
                return
            self._letters.add(key)
        acc.dead_letters += 1
        acc.dead_lines += _int(doc.get("lines"))
        acc.dead_bytes += _int(doc.get("bytes"))
        acc.add_reason(doc.get("reason") if isinstance(doc.get("reason"), str) else None)

    def event(self, ev) -> None:
        """An Event of the parser (files mode): into the events, or the dead letters if unparsed."""
        if ev.kind == "unparsed":
            acc = self.file(ev.host, ev.file_path)
            acc.dead_letters += 1
            acc.dead_lines += ev.lines or 0
            acc.dead_bytes += ev.nbytes or 0
            acc.add_reason(ev.reason)
        else:
            self.indexed(ev.host, ev.file_path, 1, ev.lines or 0, ev.nbytes or 0)

    # -- results ----------------------------------------------------------------------
    def attribute_by_path(self) -> None:
        """Events and dead letters whose host sent no such file, filed under the one host
        that sent that path, if exactly one did: a syslog or JSON record names the host that
        wrote it, which is not the host that shipped it (a central log host's file)."""
        senders: dict[str | None, list[FileAccount]] = {}
        for acc in self.files.values():
            if acc.sent_lines or acc.resent_lines:
                senders.setdefault(acc.path, []).append(acc)
        for key, acc in list(self.files.items()):
            if acc.sent_lines or acc.resent_lines:
                continue
            owners = senders.get(acc.path) or []
            if len(owners) != 1:
                continue
            owner = owners[0]
            for name in ("events", "event_lines", "event_bytes", "uncounted_events", "dead_letters",
                         "dead_lines", "dead_bytes", "redelivered_letters"):
                setattr(owner, name, getattr(owner, name) + getattr(acc, name))
            owner.reasons.update(acc.reasons)
            del self.files[key]

    def rows(self) -> list[FileAccount]:
        return sorted(self.files.values(), key=lambda a: (a.host or "", a.path or ""))

    def totals(self) -> FileAccount:
        t = FileAccount("*", "*")
        for acc in self.files.values():
            for name in ("sent_lines", "sent_bytes", "resent_lines", "events", "event_lines",
                         "event_bytes", "uncounted_events", "dead_letters", "dead_lines", "dead_bytes",
                         "redelivered_letters"):
                setattr(t, name, getattr(t, name) + getattr(acc, name))
            t.reasons.update(acc.reasons)
        return t

    @property
    def drained(self) -> bool:
        """Files mode: always; pipeline mode: the worker group has committed every record
        of the raw and events topics."""
        return self.lag is None or not any(self.lag.values())

    def missing_files(self) -> list[FileAccount]:
        """Files with lines or bytes sent that are in no event and no dead letter."""
        return [a for a in self.rows() if a.missing_lines > 0 or a.missing_bytes > 0]

    def over_files(self) -> list[FileAccount]:
        """Files with more lines in events and dead letters than were sent (the raw topic's
        retention removed what was sent, or events came from elsewhere)."""
        return [a for a in self.rows() if a.missing_lines < 0 or a.missing_bytes < 0]

    def status(self) -> str:
        """accounted | in_flight (lines missing while the worker has not drained) | missing."""
        if not self.missing_files():
            return "accounted"
        return "missing" if self.drained else "in_flight"

    def to_doc(self) -> dict:
        return {"mode": self.mode, "status": self.status(), "drained": self.drained,
                "lag": self.lag, "files": [a.to_doc() for a in self.rows()],
                "totals": self.totals().to_doc(), "notes": self.notes}


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value) -> int:
    return value if type(value) is int and value > 0 else 0


def _letter_key(doc: dict):
    """What tells a dead letter from a redelivered copy of it: its id (parse stage), the
    refused document's id (Elasticsearch), the record it came from (Kafka); else nothing."""
    if isinstance(doc.get("id"), str):
        return ("id", doc["id"])
    es = doc.get("elasticsearch")
    if isinstance(es, dict) and es.get("id"):
        return ("es", es.get("index"), es.get("id"))
    k = doc.get("kafka")
    if isinstance(k, dict) and "offset" in k:
        return ("kafka", k.get("topic"), k.get("partition"), k.get("offset"), doc.get("reason"))
    return None


# -- the streaming pipeline --------------------------------------------------------------
SHIP_PIECE = 1_000_000      # pipeline.streaming.ship.SHIP_MAX_LINE: a piece, not a line


def raw_source(msg) -> tuple[str | None, str | None, int | None, str | None]:
    """(host, path, offset, generation) of a raw record, as the parse stage reads it:
    ``osloscope ship`` headers, else the envelope of another shipper, else its key."""
    from pipeline.parsing import envelope
    from pipeline.streaming.stage import source_of

    source, offset = source_of(msg)
    gen = msg.headers.get("inode")
    generation = gen.decode("ascii", "replace") if gen is not None else None
    host, path = source.host, source.path
    if ("host" not in msg.headers and "path" not in msg.headers) and msg.value[:1] == b"{":
        obj = envelope.load(msg.value.decode("utf-8", "backslashreplace"))
        if obj is not None and not envelope.is_oslo_record(obj):
            inner = envelope.unwrap(obj)
            if inner is not None:
                host, path = inner.host or host, inner.path or path
                offset = inner.offset
    return host, path, offset, generation


def pipeline_ledger(settings, *, progress: Callable[[str], None] | None = None,
                    sent: Ledger | None = None) -> Ledger:
    """The streaming pipeline's ledger: raw topic, dead-letter topic, events indices, lag.
    ``sent``: a ledger of the raw topic read before (``sent_ledger``), not read again."""
    ledger = Ledger("pipeline")
    ledger.lag = worker_lag(settings)
    if sent is None:
        sent = sent_ledger(settings, progress)
    for key, acc in sent.files.items():
        mine = ledger.files[key] = FileAccount(acc.host, acc.path)
        mine.sent_lines, mine.sent_bytes, mine.resent_lines = acc.sent_lines, acc.sent_bytes, acc.resent_lines
    ledger.notes.extend(sent.notes)
    read_dead_letters(settings, ledger, progress)
    read_indexed(settings, ledger)
    ledger.attribute_by_path()
    return ledger


def sent_ledger(settings, progress: Callable[[str], None] | None = None) -> Ledger:
    """What the raw topic holds, per file (the sent side of ``pipeline_ledger``)."""
    sent = Ledger("pipeline")
    read_raw(settings, sent, progress)
    return sent


def worker_lag(settings) -> dict[str, int]:
    from pipeline.streaming.scan import group_lag

    t = settings.topics
    return group_lag(settings, settings.worker.app_id, [t.raw, t.events])


def read_raw(settings, ledger: Ledger, progress=None) -> None:
    from pipeline.streaming.scan import TopicScan

    scan = TopicScan(settings, settings.topics.raw)
    for msg in scan:
        host, path, offset, gen = raw_source(msg)
        size = len(msg.value)
        ledger.sent(host, path, size, offset=offset, generation=gen,
                    piece=size >= SHIP_PIECE and offset is not None)
    lost = {p: b for p, b in scan.begin.items() if b > 0}
    if lost:
        ledger.notes.append(
            f"{settings.topics.raw}: retention removed the first {sum(lost.values())} record(s) "
            f"(partitions {', '.join(map(str, sorted(lost)))}); lines shipped before them are not "
            "counted as sent, so their files may show more indexed than sent")
    if progress:
        progress(f"{settings.topics.raw}: {scan.records} record(s) read")


def read_dead_letters(settings, ledger: Ledger, progress=None) -> None:
    from pipeline import codec
    from pipeline.streaming.scan import TopicScan

    scan = TopicScan(settings, settings.topics.deadletter)
    bad = 0
    for msg in scan:
        try:
            doc = codec.loads(msg.value)
        except Exception:
            doc = None
        if not isinstance(doc, dict):
            bad += 1
            continue
        ledger.dead_letter(doc)
    if bad:
        ledger.notes.append(f"{settings.topics.deadletter}: {bad} record(s) that are no dead letter "
                            "(not a JSON object) were skipped")
    if progress:
        progress(f"{settings.topics.deadletter}: {scan.records} dead letter(s) read")


def indexed_aggregation(after: dict | None = None, size: int = 1000) -> dict:
    """The aggregation that sums ``log.lines``/``log.bytes`` per host and file."""
    composite: dict = {"size": size, "sources": [
        {"host": {"terms": {"field": "host.name", "missing_bucket": True}}},
        {"file": {"terms": {"field": "log.file.path", "missing_bucket": True}}}]}
    if after:
        composite["after"] = after
    return {"files": {
        "composite": composite,
        "aggs": {"lines": {"sum": {"field": "log.lines"}}, "bytes": {"sum": {"field": "log.bytes"}},
                 "counted": {"value_count": {"field": "log.lines"}}}}}


def read_indexed(settings, ledger: Ledger, client=None) -> None:
    """The events indexed per host and file, with the lines and bytes they hold."""
    es = settings.elasticsearch
    if not es.enabled:
        ledger.notes.append("Elasticsearch is disabled (elasticsearch.url is empty): no event is "
                            "indexed, so every line not dead-lettered shows as missing")
        return
    from pipeline.sinks.elasticsearch import make_client

    own = client is None
    client = client or make_client(es)
    try:
        after = None
        while True:
            res = client.search(index=f"{es.events_index_prefix}*", allow_no_indices=True,
                                ignore_unavailable=True, size=0, track_total_hits=False,
                                aggs=indexed_aggregation(after))
            agg = (res.get("aggregations") or {}).get("files")
            if not agg:
                break
            for b in agg["buckets"]:
                ledger.indexed(b["key"]["host"], b["key"]["file"], b["doc_count"],
                               int(b["lines"]["value"] or 0), int(b["bytes"]["value"] or 0),
                               int(b["counted"]["value"] or 0))
            after = agg.get("after_key")
            if not after or not agg["buckets"]:
                break
    finally:
        if own:
            client.close()
    if es.index_events != "all":
        ledger.notes.append(f"elasticsearch.index_events = {es.index_events!r}: the events it leaves "
                            "out are not indexed, so their lines show as missing")


# -- embedded mode ---------------------------------------------------------------------
def files_ledger(files: Iterable, tz: str | None = "UTC",
                 on_warning: Callable[[str], None] | None = None) -> Ledger:
    """Local files read and parsed as ``osloscope analyze`` does (``pipeline.local.analyze``):
    lines and bytes read per file, against the parser's events and dead letters."""
    from pipeline.local.analyze import _year_of
    from pipeline.parsing.parser import Parser, split_lines
    from pipeline.sources.files import ReadError, read_chunks

    ledger = Ledger("files")
    for lf in files:
        parser = Parser(tz, syslog_year=_year_of(lf))
        src = lf.source
        try:
            for offset, chunk in read_chunks(lf):
                lines = split_lines(chunk)
                ledger.sent(src.host, src.path, len(chunk) - chunk.count(b"\n"), lines=len(lines))
                for ev in parser.feed_lines(lines, src, offset):
                    ledger.event(ev)
        except ReadError as exc:
            ledger.notes.append(f"{exc}: the lines before the damage are counted")
            if on_warning:
                on_warning(str(exc))
        for ev in parser.flush():
            ledger.event(ev)
    ledger.attribute_by_path()
    return ledger
