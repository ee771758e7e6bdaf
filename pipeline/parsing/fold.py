"""Folding: physical lines -> records.

oslo.log prints a record's multi-line message as is (continuation lines
carry no prefix) and prefixes every traceback line with
``asctime pid ERROR|TRACE logger [instance: X]`` -- the *first* line's
timestamp and pid, no request context. So, per stream (one file of one
host) and per pid:

* a header line with a context block (``[-]``, ``[req-...]``) starts a record;
* an ERROR/TRACE header line without a context block and with the open
  record's timestamp, pid and logger is a traceback line of that record;
  without such a record it starts an *orphan* traceback that later prefix
  lines of the same key join (excerpts that begin mid-traceback);
* a line with no header continues the stream's most recent record; with
  none open it becomes an ``unparsed`` record (nothing is dropped);
* a line with no header that is *binary* (``is_binary``: control characters
  and bytes that are not UTF-8 make up at least 30% of it) is never folded
  into a record: it becomes an ``unparsed`` record of its own, and the open
  record stays open for the lines that follow. NUL bytes never reach the
  folder: the parser cuts every run of them out of its line first
  (``NUL_RUN``; see ``pipeline.parsing.parser``). A NUL block is what a crash
  leaves where a file's last writes were lost, not text of the record before
  it; the dead letter keeps it, with its length. Text after a NUL block in
  the same line folds only if it starts a record (the restarted service's
  next record); else it goes into the NUL block's dead letter.

Several worker pids interleaved in one file fold independently.

Accounting: every line fed is counted in exactly one record, the one that
takes its first character (``Record.nlines``, with the line's bytes in
``Record.nbytes``). A record that starts in the middle of a line (glued on
after another record, or after a NUL block) counts no line of its own; the
records of a stream together count every line and every byte fed.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from pipeline.parsing.lineformat import APACHE, EMBEDDED_HEADER, HEADER, SHORT, SYSLOG, SYSLOG_ISO, context_end

MAX_RECORD_LINES = 5000
# A record completes when the next record of its pid starts. A process that
# goes quiet (it died, or was restarted under another pid) would hold its last
# record until the end of the input, long after the detectors needed it: once
# the stream's time is EXPIRE_SECONDS past an open record, that record is
# complete. Its own traceback lines carry its timestamp and are written with
# it, within milliseconds, so a few seconds of slack lose none of them.
EXPIRE_SECONDS = 5
# Looking for such records costs a few microseconds per open pid, so it is
# done once every SWEEP_SECONDS of the stream's time: a quiet record
# completes 5 to 10 s after its time. (It was 30 s, which made a live
# worker's incident wait up to 35 s for a record of a quiet pid.)
SWEEP_SECONDS = 5
_SLACK = timedelta(seconds=EXPIRE_SECONDS)
_SWEEP = timedelta(seconds=SWEEP_SECONDS)
_HEX_START = frozenset("abcdefABCDEF:")
MAX_SPLIT_CHARS = 1 << 16

# A run of NUL bytes: never text (oslo.log cannot write one); cut out of its line.
NUL_RUN = re.compile(rb"\x00+")
NUL_RUN_TEXT = re.compile(r"\x00+")
# Control characters that text does not hold: C0 except tab, line feed, form
# feed, carriage return and ESC (terminal colours), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
# a byte that is not UTF-8, as the parser's decoding ("backslashreplace") shows it
_NOT_UTF8 = re.compile(r"\\x[89a-f][0-9a-f]")
BINARY_SHARE = 0.3


def is_binary(line: str) -> bool:
    """A line that is not text: it holds a control character, and control
    characters plus bytes that are not UTF-8 make up at least BINARY_SHARE of
    its bytes. Latin-1 or other 8-bit text (no control characters) is text."""
    if line.isprintable() or _CONTROL.search(line) is None:
        return False
    ctrl = len(_CONTROL.findall(line))
    bad = len(_NOT_UTF8.findall(line))
    size = len(line) - 3 * bad           # each such byte shows as 4 characters
    return ctrl + bad >= BINARY_SHARE * size


def nul_reason(n: int, text: bool = False) -> str:
    """The reason of a NUL block's dead letter (``text``: with text that starts no record)."""
    return (f"{n} NUL byte{'s' if n != 1 else ''}{' and text that starts no record' if text else ''}: "
            "what a crash leaves where a file's last writes were lost, not part of any record")

class Record:
    """A record under construction; ``pipeline.parsing.extract`` turns it into an Event."""

    # rarely set fields default at class level
    orphan = False
    host = None
    prog = None
    syslog_ts = None
    kind = "log"
    reason = None
    access = None
    nlines = 0          # lines fed that start in this record
    nbytes = 0          # their bytes (as read, without the line terminator)

    def __init__(self, ts_text, pid, level, logger, rest, line, offset, *, orphan=False,
                 host=None, prog=None, syslog_ts=None, kind="log", reason=None, access=None):
        self.ts_text = ts_text
        self.pid = pid
        self.level = level
        self.logger = logger
        self.rest = rest
        self.lines = [line]
        self.cont: list[str] = []
        self.tb: list[str] = [rest] if orphan else []
        self.offset = offset
        self.orphan = orphan
        self.host = host
        self.prog = prog
        self.syslog_ts = syslog_ts
        self.kind = kind
        self.reason = reason
        self.access = access
        self.tb_last = orphan     # the last line went to the traceback

    @property
    def original(self) -> str:
        return "\n".join(self.lines)

    # -- state (JSON-safe: the worker snapshots open records) ----------------
    # constructor fields first, then what folding grows; ``access`` is left out:
    # an access-log record is complete when read and never stays open
    _STATE = ("ts_text", "pid", "level", "logger", "rest", "offset", "orphan", "host", "prog",
              "syslog_ts", "kind", "reason", "lines", "cont", "tb", "tb_last", "nlines", "nbytes")
    _COUNTS = frozenset(("nlines", "nbytes"))       # absent from states saved before they existed

    def to_state(self) -> dict:
        return {name: getattr(self, name) for name in self._STATE}

    @classmethod
    def from_state(cls, state: dict) -> "Record":
        rec = cls.__new__(cls)
        for name in cls._STATE:
            if name in cls._COUNTS and name not in state:
                continue
            setattr(rec, name, state[name])
        if rec.syslog_ts is not None:
            rec.syslog_ts = tuple(rec.syslog_ts)
        return rec


def _is_prefix_level(level: str) -> bool:
    return level == "ERROR" or level == "TRACE"


class Folder:
    """Folds one stream's lines into records (see module doc)."""

    __slots__ = ("open", "last", "sweep_at", "_lines", "_bytes")

    def __init__(self) -> None:
        self.open: dict[str, Record] = {}
        self.last: Record | None = None
        self.sweep_at = ""               # asctime at which to look for quiet records next
        self._lines = self._bytes = 0    # the line being fed, until a record takes it

    def _take(self, rec: Record) -> None:
        """``rec`` took the first character of the line being fed: it counts the line."""
        if self._lines or self._bytes:
            rec.nlines += self._lines
            rec.nbytes += self._bytes
            self._lines = self._bytes = 0

    def to_state(self) -> dict:
        """The open records (in order), which of them is the last, and the next sweep."""
        last = next((key for key, rec in self.open.items() if rec is self.last), None)
        return {"open": [[key, rec.to_state()] for key, rec in self.open.items()], "last": last,
                "sweep_at": self.sweep_at}

    @classmethod
    def from_state(cls, state: dict) -> "Folder":
        folder = cls()
        folder.open = {key: Record.from_state(rec) for key, rec in state["open"]}
        folder.last = folder.open.get(state["last"]) if state["last"] is not None else None
        folder.sweep_at = state["sweep_at"]
        return folder

    def _expire(self, ts: str, out: list) -> None:
        """Complete the open records of other pids more than EXPIRE_SECONDS
        older than header time ``ts`` (see EXPIRE_SECONDS). Called when the
        stream's time reaches ``sweep_at``, which then moves SWEEP_SECONDS on
        (so a traceback line of the same time never sweeps again)."""
        try:
            now = datetime(int(ts[:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
                           int(ts[17:19]))
        except ValueError:       # an impossible date: the record goes unparsed, time does not move
            self.sweep_at = ts[:19] + "\x7f"
            return
        sep = ts[10]
        try:
            nxt = now + _SWEEP
            self.sweep_at = f"{nxt:%Y-%m-%d}{sep}{nxt:%H:%M:%S}"
        except OverflowError:    # the last seconds of year 9999: no later sweep
            self.sweep_at = ts[:19] + "\x7f"
        try:
            cut = now - _SLACK
        except OverflowError:    # the first seconds of year 1: nothing is older
            return
        if len(self.open) < 2:
            return
        # asctime texts of one format compare as their times do
        threshold = f"{cut:%Y-%m-%d}{sep}{cut:%H:%M:%S}"
        last = self.last
        stale = [key for key, rec in self.open.items()
                 if rec is not last and (t := rec.ts_text) is not None and t < threshold and t[10] == sep]
        for key in stale:
            out.append(self.open.pop(key))

    def feed(self, line: str, offset: int | None, out: list, lines: int = 1, nbytes: int = 0) -> None:
        """Fold one line; the record that takes its first character counts
        ``lines`` and ``nbytes`` (the line's size as read)."""
        self._lines, self._bytes = lines, nbytes
        rest = self._feed(line, offset, out)
        while rest is not None:            # records glued into one line, one by one
            rest = self._feed(*rest, out)

    def _feed(self, line: str, offset: int | None, out: list):
        m = HEADER.match(line)
        if m is not None:
            ts, pid, level, logger, rest = m.groups()
            return self._header(ts, pid, level, logger, rest or "", line, offset, out)
        c = line[:1]
        if c.isupper() and line[3:4] == " " and (m := SYSLOG.match(line)):
            return self._syslog(m, line, offset, out, iso=False)
        if c.isdigit():
            if line[10:11] == "T" and (m := SYSLOG_ISO.match(line)):
                return self._syslog(m, line, offset, out, iso=True)
            if '] "' in line and (m := APACHE.match(line)):
                return self._alone(Record(None, None, "INFO", None, line, line, offset, kind="access",
                                          access=m), out)
        elif c in _HEX_START and '] "' in line and (m := APACHE.match(line)):    # IPv6 client
            return self._alone(Record(None, None, "INFO", None, line, line, offset, kind="access",
                                      access=m), out)
        rec = self.last
        binary = is_binary(line)
        if rec is None or binary:
            if binary:
                reason = "binary data: not folded into the record before it" if rec is not None \
                    else "binary data with no record before it"
            elif c == "{":
                reason = "invalid or truncated JSON, and no record to join"
            else:
                reason = "continuation line with no record to join"
            return self._alone(Record(None, None, None, None, line, line, offset, kind="unparsed",
                                      reason=reason), out)
        if self._lines or self._bytes:          # _take, inline: the common continuation line
            rec.nlines += self._lines
            rec.nbytes += self._bytes
            self._lines = self._bytes = 0
        rec.lines.append(line)
        # A prefix-less line after a traceback line continues that traceback
        # line (hard-wrapped copies, racing writes); otherwise the message.
        (rec.tb if rec.tb_last else rec.cont).append(line)
        if len(rec.lines) >= MAX_RECORD_LINES:
            self._split(rec, out)

    def _alone(self, rec: Record, out: list) -> None:
        """A record complete on its own line (access line, unparsed text)."""
        self._take(rec)
        out.append(rec)

    @staticmethod
    def starts_record(line: str) -> bool:
        """The line starts a record of its own (a header, syslog or access line):
        ``_feed`` would not take it as a continuation."""
        if HEADER.match(line) is not None:
            return True
        c = line[:1]
        if c.isupper() and line[3:4] == " " and SYSLOG.match(line):
            return True
        if c.isdigit():
            return bool((line[10:11] == "T" and SYSLOG_ISO.match(line))
                        or ('] "' in line and APACHE.match(line)))
        return bool(c in _HEX_START and '] "' in line and APACHE.match(line))

    # -- header lines -----------------------------------------------------
    def _header(self, ts, pid, level, logger, rest, line, offset, out, *, host=None, prog=None,
                syslog_ts=None):
        """Fold one header line; returns ``(line, offset)`` of a glued-on
        record still to be fed, else None."""
        if ts is not None and ts >= self.sweep_at:
            self._expire(ts, out)
        key = pid if host is None else f"{host}\x00{pid}"
        rec = self.open.get(key)
        if _is_prefix_level(level) and not context_end(rest):
            if rec is not None and rec.logger == logger and (
                    rec.ts_text == ts or (syslog_ts is not None and rec.syslog_ts is not None)):
                # another process's record glued on (racing writes); very long
                # lines are not split, which bounds the cost of repeated cuts
                cut = EMBEDDED_HEADER.search(rest) if len(rest) < MAX_SPLIT_CHARS else None
                if cut is not None:
                    head = len(line) - len(rest) + cut.start(1)
                    self._append_tb(rec, line[:head], rest[:cut.start(1)])
                    if len(rec.lines) >= MAX_RECORD_LINES:
                        self._split(rec, out)
                    return line[head:], None if offset is None else offset + head
                self._append_tb(rec, line, rest)
                if len(rec.lines) >= MAX_RECORD_LINES:
                    self._split(rec, out)
                return
            if level == "TRACE" or rest.startswith("Traceback") or "] Traceback" in rest[:60]:
                if rec is not None:
                    out.append(self.open.pop(key))
                new = Record(ts, pid, "ERROR", logger, rest, line, offset, orphan=True, host=host,
                             prog=prog, syslog_ts=syslog_ts)
                self._take(new)
                self.open[key] = self.last = new
                return
        if rec is not None:
            out.append(self.open.pop(key))
        new = Record(ts, pid, level, logger, rest, line, offset, host=host, prog=prog,
                     syslog_ts=syslog_ts)
        new.nlines, new.nbytes = self._lines, self._bytes       # _take, inline: every record
        self._lines = self._bytes = 0
        self.open[key] = self.last = new

    def _append_tb(self, rec: Record, line: str, body: str) -> None:
        self._take(rec)
        rec.lines.append(line)
        rec.tb.append(body)
        rec.tb_last = True
        self.last = rec

    def _syslog(self, m, line, offset, out, *, iso: bool) -> None:
        stamp, host, prog, spid, body = m.groups()
        inner = HEADER.match(body)
        if inner is not None:
            ts, pid, level, logger, rest = inner.groups()
            return self._header(ts, pid, level, logger, rest or "", line, offset, out, host=host,
                                prog=prog)
        short = SHORT.match(body)
        if short is None:
            # a syslog line of a non-oslo program: its own record, INFO
            return self._header(None, spid or "0", "INFO", prog, body, line, offset, out, host=host,
                                prog=prog, syslog_ts=(stamp, iso))
        level, logger, rest = short.groups()
        return self._header(None, spid or "0", level, logger, rest or "", line, offset, out,
                            host=host, prog=prog, syslog_ts=(stamp, iso))

    def _split(self, rec: Record, out: list) -> None:
        """Emit an oversized record; later lines continue in a new orphan record."""
        for key, r in list(self.open.items()):
            if r is rec:
                del self.open[key]
                out.append(rec)
                cont = Record(rec.ts_text, rec.pid, rec.level, rec.logger, "", "", None, orphan=True,
                              host=rec.host, prog=rec.prog, syslog_ts=rec.syslog_ts)
                cont.lines.clear()
                cont.tb.clear()
                self.open[key] = self.last = cont
                return

    def flush(self, out: list) -> None:
        """Emit every open record (end of input, or idle stream)."""
        recs = sorted(self.open.values(), key=lambda r: r.offset if r.offset is not None else -1)
        self.open.clear()
        self.last = None
        out.extend(r for r in recs if r.lines)
