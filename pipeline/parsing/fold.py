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
  none open it becomes an ``unparsed`` record (nothing is dropped).

Several worker pids interleaved in one file fold independently.
"""
from __future__ import annotations

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
# completes 5 to 35 s after its time (analyze reorders 300 s).
SWEEP_SECONDS = 30
_SLACK = timedelta(seconds=EXPIRE_SECONDS)
_SWEEP = timedelta(seconds=SWEEP_SECONDS)
_HEX_START = frozenset("abcdefABCDEF:")
MAX_SPLIT_CHARS = 1 << 16

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
              "syslog_ts", "kind", "reason", "lines", "cont", "tb", "tb_last")

    def to_state(self) -> dict:
        return {name: getattr(self, name) for name in self._STATE}

    @classmethod
    def from_state(cls, state: dict) -> "Record":
        rec = cls.__new__(cls)
        for name in cls._STATE:
            setattr(rec, name, state[name])
        if rec.syslog_ts is not None:
            rec.syslog_ts = tuple(rec.syslog_ts)
        return rec


def _is_prefix_level(level: str) -> bool:
    return level == "ERROR" or level == "TRACE"


class Folder:
    """Folds one stream's lines into records (see module doc)."""

    __slots__ = ("open", "last", "sweep_at")

    def __init__(self) -> None:
        self.open: dict[str, Record] = {}
        self.last: Record | None = None
        self.sweep_at = ""               # asctime at which to look for quiet records next

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

    def feed(self, line: str, offset: int | None, out: list) -> None:
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
                out.append(Record(None, None, "INFO", None, line, line, offset, kind="access", access=m))
                return
        elif c in _HEX_START and '] "' in line and (m := APACHE.match(line)):    # IPv6 client
            out.append(Record(None, None, "INFO", None, line, line, offset, kind="access", access=m))
            return
        rec = self.last
        if rec is None:
            out.append(Record(None, None, None, None, line, line, offset, kind="unparsed",
                              reason="continuation line with no record to join"))
            return
        rec.lines.append(line)
        # A prefix-less line after a traceback line continues that traceback
        # line (hard-wrapped copies, racing writes); otherwise the message.
        (rec.tb if rec.tb_last else rec.cont).append(line)
        if len(rec.lines) >= MAX_RECORD_LINES:
            self._split(rec, out)

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
                self.open[key] = self.last = new
                return
        if rec is not None:
            out.append(self.open.pop(key))
        new = Record(ts, pid, level, logger, rest, line, offset, host=host, prog=prog,
                     syslog_ts=syslog_ts)
        self.open[key] = self.last = new

    def _append_tb(self, rec: Record, line: str, body: str) -> None:
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
