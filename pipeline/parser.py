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

import copy
from datetime import timezone
from itertools import accumulate, count, repeat
from operator import add

from detectors.hints import BASE as BASE_VOCAB, Vocabulary
from detectors.model import Event

from . import accel, envelope
from .extract import Extractor, Source
from .fold import Folder
from .naming import service_from_path
from .redact import needs_redaction, redact_event, redact_text
from .timefmt import InvalidTimestamp, TimeParser, offset_text

EMPTY: tuple = ()


class _Stream:
    """One stream's folding state: in the Python ``folder``, or, while ASCII
    chunks arrive, in the native core's ``nat`` (then ``last`` lives there)."""

    __slots__ = ("folder", "source", "last", "nat")

    def __init__(self, source: Source) -> None:
        self.folder = Folder()
        self.source = source
        self.last: tuple[float | None, str | None] = (None, None)
        self.nat = None


def decode(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    if raw.endswith("\n"):
        raw = raw[:-1]
    if raw.endswith("\r"):
        raw = raw[:-1]
    return raw


def _folder_of(state: dict) -> Folder:
    """A Python Folder holding a native stream's exported state."""
    folder = Folder()
    folder.open = {key: accel.record_from_dict(d) for key, d in state["open"]}
    folder.last = folder.open[state["last"]] if state["last"] is not None else None
    folder.sweep_at = state["sweep_at"]
    return folder


def _split_lines(data: bytes) -> list[bytes]:
    """Lines as a file reader yields them: split after each newline."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _line_starts(data: bytes) -> list[int]:
    """Byte offset of each line of ``data`` from its start."""
    return list(map(add, accumulate(map(len, data.split(b"\n")), initial=0), count()))


class Parser:
    def __init__(self, tz: str | None = "UTC", syslog_year: int = 1970, *, redact: bool = True,
                 native: bool | None = None, vocab: Vocabulary | None = None) -> None:
        self.redact = redact             # mask passwords/tokens (pipeline/redact.py) in every event
        self.tp = TimeParser(tz)
        self.syslog_year = syslog_year
        self.extractor = Extractor(self.tp, syslog_year)
        self.streams: dict[tuple, _Stream] = {}
        # the native core (pipeline/accel.py) for ASCII chunks; None: when built
        self.native = accel.enabled(native)
        # the keywords the native core tests for the detectors (Event.hints)
        self.vocab = vocab or BASE_VOCAB

    def __getstate__(self) -> dict:
        """Pickled with every stream's state in Python form: the native
        core's objects do not pickle."""
        self.python_streams()
        return dict(self.__dict__)

    def python_streams(self) -> dict[tuple, _Stream]:
        """``streams`` with every stream's state in Python form, ready to
        pickle (the worker's snapshots); the next ASCII chunk of a stream
        hands its state back to the native core."""
        for st in self.streams.values():
            if st.nat is not None:
                self._to_python(st)
        return self.streams

    def save_stream(self, source: Source):
        """A copy of one stream's state, for ``restore_stream`` (None: no stream yet)."""
        st = self.streams.get((source.host, source.path))
        if st is None:
            return None
        if st.nat is not None:
            return (True, st.nat.export_state(), st.nat.last)
        return (False, copy.deepcopy(st.folder), st.last)

    def restore_stream(self, source: Source, saved) -> None:
        """Put a stream back as ``save_stream`` found it (in Python form);
        ``saved`` is used up."""
        key = (source.host, source.path)
        old = self.streams.pop(key, None)
        if saved is None:
            return
        st = _Stream(old.source if old is not None else source)
        native, state, last = saved
        st.folder = _folder_of(state) if native else state
        st.last = last
        self.streams[key] = st

    # -- handing a stream between the Python folder and the native core --------
    def _to_python(self, st: _Stream) -> None:
        nat, st.nat = st.nat, None
        st.folder = _folder_of(nat.export_state())
        st.last = nat.last

    def _to_native(self, st: _Stream) -> None:
        src = st.source
        nat = accel._native.Stream(self.tp, src.host, src.service, src.path, self.syslog_year, self.redact,
                                   Event,
                                   lambda d, last, st=st: self._build_one(st, accel.record_from_dict(d), last),
                                   accel.keywords(self.vocab.words), self.vocab)
        folder = st.folder
        last_key = next((k for k, r in folder.open.items() if r is folder.last), None)
        nat.import_state({"open": [[k, accel.record_to_dict(r)] for k, r in folder.open.items()],
                          "last": last_key, "sweep_at": folder.sweep_at})
        nat.last = st.last
        tz = self.tp.tz
        if isinstance(tz, timezone):         # one fixed offset: the core converts seconds itself
            off = tz.utcoffset(None)
            nat.set_fixed_zone(int(off.total_seconds()), offset_text(off))
        st.nat = nat

    def _build_one(self, st: _Stream, rec, last) -> Event:
        """One record the native extractor leaves to Python, as ``_events`` builds it."""
        saved, st.last = st.last, last
        try:
            return self._events(st, [rec])[0]
        finally:
            st.last = saved

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
        if st.nat is not None:
            self._to_python(st)
        recs: list = []
        st.folder.feed(line, offset, recs)
        return self._events(st, recs) if recs else EMPTY

    def feed_chunk(self, data: bytes, source: Source, offset: int | None = None) -> list[Event] | tuple:
        """The events completed by a chunk of lines: exactly what ``feed`` of
        each of its lines in turn (split after every ``\\n``, offsets counted
        on from ``offset``) would return, concatenated, but decoded and folded
        a chunk at a time. A chunk ends at a line end; at the end of input the
        last line may lack its newline.
        """
        if not data:
            return EMPTY
        ascii_ = data.isascii()
        text = data.decode("ascii") if ascii_ else data.decode("utf-8", "backslashreplace")
        if text[:1] == "{" or "\n{" in text:
            return self._feed_each(_split_lines(data), source, offset)     # JSON lines: one by one
        starts = None
        if "\r" in text:
            # feed() drops one \r before each newline and at the very end
            text = text.replace("\r\n", "\n")
            if text[-1] == "\r":
                text = text[:-1] + "\n"
            if offset is not None:
                starts = _line_starts(data)
        elif not ascii_ and offset is not None:
            starts = _line_starts(data)
        st = self.streams.get((source.host, source.path)) or self._stream(source)
        if ascii_ and self.native:
            if st.nat is None:
                self._to_native(st)
            return st.nat.feed_text(text, offset, starts) or EMPTY
        if st.nat is not None:
            self._to_python(st)
        recs: list = []
        st.folder.feed_text(text, offset, starts, recs)
        return self._events(st, recs) if recs else EMPTY

    def feed_lines(self, lines: list, source: Source, first_offset: int | None = None) -> list[Event] | tuple:
        """``feed`` of each line in turn (the offset advancing by each line's
        length), concatenated. Byte lines as a file reader yields them (with
        their newline) are joined and folded a chunk at a time."""
        n = len(lines)
        if not n:
            return EMPTY
        if not all(map(isinstance, lines, repeat(bytes))):
            return self._feed_each(lines, source, first_offset)
        ends = list(map(bytes.endswith, lines, repeat(b"\n")))
        out: list[Event] = []
        off = first_offset
        i = 0
        while i < n:
            try:
                j = ends.index(False, i) + 1    # a line without newline ends a chunk
            except ValueError:
                j = n
            run = lines[i:j] if i or j < n else lines
            data = b"".join(run)
            if run[-1] and data.count(b"\n") == j - i - (not ends[j - 1]):
                evs = self.feed_chunk(data, source, off)
            else:                               # an empty line, or newlines inside one
                evs = self._feed_each(run, source, off)
            if evs:
                out.extend(evs)
            if off is not None:
                off += len(data)
            i = j
        return out

    def _feed_each(self, lines: list, source: Source, offset: int | None) -> list[Event]:
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
        if st.nat is not None:
            self._to_python(st)
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
        st = self._stream(source)
        last = st.nat.last if st.nat is not None else st.last
        if self.redact:
            line = redact_text(line)
        return Event(kind="unparsed", reason=reason, message=line, original=line,
                     host=source.host, service=source.service, file_path=source.path,
                     offset=offset, ts=last[0], timestamp=last[1])

    def flush(self, source: Source | None = None) -> list[Event]:
        """Complete open records: of one source's streams, or of all."""
        out: list[Event] = []
        for key, st in list(self.streams.items()):
            if source is not None and st.source.path != source.path:
                continue
            if st.nat is not None:
                out.extend(st.nat.flush())
            else:
                recs: list = []
                st.folder.flush(recs)
                out.extend(self._events(st, recs))
            if source is not None:
                del self.streams[key]
        return out
