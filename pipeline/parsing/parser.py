"""The parser: bytes in, events out, for any number of streams.

``Parser.feed(line, source, offset)`` returns the events completed by that
line (usually zero or one: a record completes when the next record of the
same pid starts). ``flush()`` completes everything still open (end of file,
idle stream). A stream is one file of one host; lines that arrive in a
shipper envelope are routed to the stream of the host and file the envelope
names. The parser never raises on input: invalid UTF-8 is kept as
backslash escapes, and what fits no record becomes an ``unparsed`` event
carrying the raw text and the reason.

NUL bytes are cut out of their line before folding (``fold.NUL_RUN``): the
text before the first run is folded as usual; the NULs, with any text after
them that starts no record, make one ``unparsed`` event; text after them that
starts a record is that record (after a crash, the restarted service's next
record follows the NUL block on the same line).

Accounting: each line fed counts once, with its bytes, in the event that
takes its first character (``Event.lines``/``Event.nbytes``, ``log.lines``
and ``log.bytes`` in the document): the events of a file count all its lines
and bytes (see ``pipeline.parsing.fold``).
"""
from __future__ import annotations

from detectors.model import Event

from pipeline.parsing import envelope
from pipeline.parsing.extract import Extractor, Source
from pipeline.parsing.fold import NUL_RUN, NUL_RUN_TEXT, Folder, nul_reason
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
            ev.lines, ev.nbytes = rec.nlines, rec.nbytes
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
        """The events completed by one line (``raw``: as read, a final newline
        allowed); the line counts once, with its bytes, in the event that takes
        its first character."""
        if type(raw) is bytes:
            if b"\x00" in raw:
                return self._nul_blocks(raw, source, offset, 1, len(raw) - (raw[-1:] == b"\n"))
            size = len(raw)
            line = raw.decode("utf-8", "backslashreplace")
        else:
            if "\x00" in raw:
                size = len(raw.encode("utf-8", "surrogatepass")) - (raw[-1:] == "\n")
                return self._nul_blocks(raw, source, offset, 1, size)
            line = raw
            size = len(raw.encode("utf-8", "surrogatepass"))
        if line[-1:] == "\n":
            line = line[:-1]
            size -= 1
        if line[-1:] == "\r":
            line = line[:-1]
        if line[:1] == "{" or "\n" in line:
            return self._line(line, source, offset, 1, size)
        st = self.streams.get((source.host, source.path)) or self._stream(source)
        recs: list = []
        st.folder.feed(line, offset, recs, 1, size)
        return self._events(st, recs) if recs else EMPTY

    def _line(self, line: str, source: Source, offset: int | None, lines: int,
              size: int) -> list[Event] | tuple:
        if line[:1] == "{":
            return self._json(line, source, offset, lines, size)
        if "\n" in line:                     # a shipper merged a multi-line record
            out: list[Event] = []
            for part in line.split("\n"):
                out.extend(self._line(part.rstrip("\r"), source, offset, lines, size))
                lines = size = 0
            return out
        st = self.streams.get((source.host, source.path)) or self._stream(source)
        recs: list = []
        st.folder.feed(line, offset, recs, lines, size)
        return self._events(st, recs) if recs else EMPTY

    def _nul_blocks(self, raw: bytes | str, source: Source, offset: int | None, lines: int,
                    size: int) -> list[Event]:
        """A line with NUL bytes. The text before the first run of NULs is
        folded as usual; from there on, the NULs and any text that starts no
        record (a header, syslog, access or JSON line) make one unparsed event,
        up to the next text that starts a record, which is folded as a line of
        its own (after a crash, the restarted service's next record follows the
        NUL block on the same line). Offsets are exact for bytes, of the UTF-8
        encoding for text."""
        text = type(raw) is not bytes
        body = raw[:-1] if raw[-1:] == ("\n" if text else b"\n") else raw
        out: list[Event] = []
        junk_at, junk, nuls = None, [], 0
        pos = 0

        def at(i: int) -> int | None:
            if offset is None:
                return None
            return offset + (len(body[:i].encode("utf-8", "surrogatepass")) if text else i)

        def flush_junk() -> None:
            nonlocal junk_at, junk, nuls, lines, size
            if junk_at is None:
                return
            reason = nul_reason(nuls, text=len(junk) > 1)
            out.append(self._unparsed("".join(junk), source, at(junk_at), reason, lines, size))
            lines = size = 0
            junk_at, junk, nuls = None, [], 0

        pieces = []
        for m in (NUL_RUN_TEXT if text else NUL_RUN).finditer(body):
            if m.start() > pos:
                pieces.append((pos, body[pos:m.start()], False))
            pieces.append((m.start(), m.end() - m.start(), True))
            pos = m.end()
        if pos < len(body):
            pieces.append((pos, body[pos:], False))
        last = len(pieces) - 1
        for i, (start, piece, is_nul) in enumerate(pieces):
            if is_nul:
                if junk_at is None:
                    junk_at = start
                junk.append("\x00" * piece)
                nuls += piece
                continue
            if text:
                line = piece if i < last else decode(piece)
            else:
                line = decode(piece) if i == last else piece.decode("utf-8", "backslashreplace")
            if not line:
                continue
            if junk_at is not None and not self._starts_record(line):
                junk.append(line)
                continue
            flush_junk()
            out.extend(self._line(line, source, at(start), lines, size))
            lines = size = 0
        flush_junk()
        return out

    @staticmethod
    def _starts_record(line: str) -> bool:
        if line[:1] == "{":
            return envelope.load(line) is not None
        return Folder.starts_record(line)

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

    def _json(self, line: str, source: Source, offset: int | None, lines: int = 1,
              size: int = 0) -> list[Event] | tuple:
        obj = envelope.load(line)
        if obj is None:
            return self._plain(line, source, offset, lines, size)
        if envelope.is_oslo_record(obj):
            return [self._oslo(obj, source, offset, line, lines, size)]
        inner = envelope.unwrap(obj)
        if inner is None:
            return [self._unparsed(line, source, offset, "JSON object without a log line "
                                   "(no message/log/@message field)", lines, size)]
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
                return [self._oslo(obj2, src, off, msg, lines, size)]
        if inner.header is not None:
            msg = inner.header + msg
        out: list[Event] = []
        for part in msg.split("\n"):
            out.extend(self._plain(part.rstrip("\r"), src, off, lines, size))
            lines = size = 0
        return out

    def _plain(self, line: str, source: Source, offset: int | None, lines: int = 1, size: int = 0):
        st = self._stream(source)
        recs: list = []
        if "\x00" in line:                  # NULs inside an envelope's line: cut out as above
            return self._nul_blocks(line, source, offset, lines, size)
        st.folder.feed(line, offset, recs, lines, size)
        return self._events(st, recs) if recs else EMPTY

    def _oslo(self, obj: dict, source: Source, offset: int | None, line: str, lines: int = 1,
              size: int = 0) -> Event:
        try:
            ev = envelope.oslo_event(obj, self.tp, source.host, source.service, source.path, offset)
            if self.redact:
                redact_event(ev)
        except (InvalidTimestamp, TypeError, ValueError) as exc:
            return self._unparsed(line, source, offset, f"bad oslo.log JSON record: {exc}", lines, size)
        ev.lines, ev.nbytes = lines, size
        return ev

    def _unparsed(self, line: str, source: Source, offset: int | None, reason: str, lines: int = 1,
                  size: int = 0) -> Event:
        last = self._stream(source).last
        if self.redact:
            line = redact_text(line)
        return Event(kind="unparsed", reason=reason, message=line, original=line,
                     host=source.host, service=source.service, file_path=source.path,
                     offset=offset, ts=last[0], timestamp=last[1], lines=lines, nbytes=size)

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
