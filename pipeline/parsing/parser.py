"""The parser: bytes in, events out, for any number of streams.

``Parser.feed(line, source, offset)`` returns the events completed by that
line (usually zero or one: a record completes when the next record of the
same pid starts). ``flush()`` completes everything still open (end of file,
idle stream). A stream is one file of one host; lines that arrive in a
shipper envelope are routed to the stream of the host and file the envelope
names. The parser never raises on input: invalid UTF-8 is kept as
backslash escapes, and what fits no record becomes an ``unparsed`` event
carrying the raw text and the reason.
"""
from __future__ import annotations

from detectors.model import Event

from pipeline.parsing import envelope
from pipeline.parsing.extract import Extractor, Source
from pipeline.parsing.fold import Folder
from pipeline.parsing.naming import service_from_path
from pipeline.parsing.redact import needs_redaction, redact_event, redact_text
from pipeline.parsing.timefmt import InvalidTimestamp, TimeParser

EMPTY: tuple = ()


class _Stream:
    """One stream's folding state."""

    __slots__ = ("folder", "source", "last")

    def __init__(self, source: Source) -> None:
        self.folder = Folder()
        self.source = source
        self.last: tuple[float | None, str | None] = (None, None)

    def to_state(self) -> dict:
        return {"source": list(self.source), "last": list(self.last), "folder": self.folder.to_state()}

    @classmethod
    def from_state(cls, state: dict) -> "_Stream":
        st = cls(Source(*state["source"]))
        st.last = tuple(state["last"])
        st.folder = Folder.from_state(state["folder"])
        return st


def decode(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    if raw.endswith("\n"):
        raw = raw[:-1]
    if raw.endswith("\r"):
        raw = raw[:-1]
    return raw


def split_lines(data: bytes) -> list[bytes]:
    """Lines as a file reader yields them: split after each newline."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


class Parser:
    def __init__(self, tz: str | None = "UTC", syslog_year: int = 1970, *, redact: bool = True) -> None:
        self.redact = redact             # mask passwords/tokens (pipeline/redact.py) in every event
        self.tp = TimeParser(tz)
        self.syslog_year = syslog_year
        self.extractor = Extractor(self.tp, syslog_year)
        self.streams: dict[tuple, _Stream] = {}

    # -- state: the streams with their open records (the rest is derived) --
    def to_state(self) -> dict:
        """JSON-safe state: the syslog year and every stream, in order."""
        return {"syslog_year": self.syslog_year,
                "streams": [st.to_state() for st in self.streams.values()]}

    def restore_state(self, state: dict) -> None:
        """Back to ``to_state``'s streams (the parser's time zone is its own)."""
        self.syslog_year = state["syslog_year"]
        self.extractor = Extractor(self.tp, self.syslog_year)
        self.streams = {}
        for st_state in state["streams"]:
            st = _Stream.from_state(st_state)
            self.streams[(st.source.host, st.source.path)] = st

    def _stream(self, source: Source) -> _Stream:
        key = (source.host, source.path)
        st = self.streams.get(key)
        if st is None:
            st = self.streams[key] = _Stream(source)
        return st

    def _events(self, st: _Stream, recs: list) -> list[Event]:
        events = []
        build = self.extractor.build
        hint = needs_redaction
        for rec in recs:
            ev = build(rec, st.source, st.last)
            if ev.kind != "unparsed":
                st.last = (ev.ts, ev.timestamp)
            if self.redact:
                # probe the message and the exception line: scanning whole tracebacks for
                # secrets would cost more than parsing them (frames rarely hold any)
                probe = ev.message or ""
                trace = ev.stack_trace
                if trace:
                    probe += trace[trace.rfind("\n") + 1:]
                if hint(probe):
                    redact_event(ev)
            events.append(ev)
        return events

    def feed(self, raw: bytes | str, source: Source, offset: int | None = None) -> list[Event] | tuple:
        line = decode(raw)
        if line[:1] == "{":
            return self._json(line, source, offset)
        if "\n" in line:                     # a shipper merged a multi-line record
            out: list[Event] = []
            for part in line.split("\n"):
                out.extend(self.feed(part.rstrip("\r"), source, offset))
            return out
        st = self.streams.get((source.host, source.path)) or self._stream(source)
        recs: list = []
        st.folder.feed(line, offset, recs)
        return self._events(st, recs) if recs else EMPTY

    def feed_lines(self, lines, source: Source, offset: int | None = None) -> list[Event]:
        """``feed`` of each line in turn, the offset advancing by each line's
        length (lines as ``split_lines`` or a file reader yields them)."""
        out: list[Event] = []
        feed = self.feed
        for raw in lines:
            evs = feed(raw, source, offset)
            if evs:
                out.extend(evs)
            if offset is not None:
                offset += len(raw)
        return out

    def _json(self, line: str, source: Source, offset: int | None) -> list[Event] | tuple:
        obj = envelope.load(line)
        if obj is None:
            return self._plain(line, source, offset)
        if envelope.is_oslo_record(obj):
            return [self._oslo(obj, source, offset, line)]
        inner = envelope.unwrap(obj)
        if inner is None:
            return [self._unparsed(line, source, offset, "JSON object without a log line "
                                   "(no message/log/@message field)")]
        if inner.path and inner.path != source.path:
            service = inner.service or service_from_path(inner.path)
        else:
            service = inner.service or source.service
        src = Source(inner.host or source.host, service, inner.path or source.path)
        off = inner.offset if inner.offset is not None else offset
        msg = inner.message
        if msg[-1:] == "\n":                 # Fluent Bit / Docker ``log`` keeps the line's newline
            msg = msg[:-2] if msg[-2:] == "\r\n" else msg[:-1]
        if inner.header is None and msg[:1] == " " and msg[1:2].isdigit():
            msg = msg[1:]                      # rsyslog %msg%: the space after the tag; not an indent
        if msg[:1] == "{":
            obj2 = envelope.load(msg)
            if obj2 is not None and envelope.is_oslo_record(obj2):
                return [self._oslo(obj2, src, off, msg)]
        if inner.header is not None:
            msg = inner.header + msg
        out: list[Event] = []
        for part in msg.split("\n"):
            out.extend(self._plain(part.rstrip("\r"), src, off))
        return out

    def _plain(self, line: str, source: Source, offset: int | None):
        st = self._stream(source)
        recs: list = []
        st.folder.feed(line, offset, recs)
        return self._events(st, recs) if recs else EMPTY

    def _oslo(self, obj: dict, source: Source, offset: int | None, line: str) -> Event:
        try:
            ev = envelope.oslo_event(obj, self.tp, source.host, source.service, source.path, offset)
            if self.redact:
                redact_event(ev)
            return ev
        except (InvalidTimestamp, TypeError, ValueError) as exc:
            return self._unparsed(line, source, offset, f"bad oslo.log JSON record: {exc}")

    def _unparsed(self, line: str, source: Source, offset: int | None, reason: str) -> Event:
        last = self._stream(source).last
        if self.redact:
            line = redact_text(line)
        return Event(kind="unparsed", reason=reason, message=line, original=line,
                     host=source.host, service=source.service, file_path=source.path,
                     offset=offset, ts=last[0], timestamp=last[1])

    def flush(self, source: Source | None = None) -> list[Event]:
        """Complete open records: of one stream (the host and file of
        ``source``; the same path on another host is another stream), or of all."""
        if source is not None:
            st = self.streams.pop((source.host, source.path), None)
            return self._flush(st) if st is not None else []
        out: list[Event] = []
        for st in self.streams.values():
            out.extend(self._flush(st))
        return out

    def _flush(self, st: _Stream) -> list[Event]:
        recs: list = []
        st.folder.flush(recs)
        return self._events(st, recs)
