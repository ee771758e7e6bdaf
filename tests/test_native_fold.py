"""The native folder (pipeline._native.Folder, pipeline/rust/src/fold.rs)
folds ASCII text exactly as pipeline.fold.Folder: the same records in the
same order, the same state (open records in order, last, sweep_at), and a
state handed from one to the other and back folds on the same."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support import CORPUS, FIXTURES, SAMPLES

from pipeline import fold as pyfold
from pipeline.fold import MAX_RECORD_LINES, MAX_SPLIT_CHARS, Folder, Record
from pipeline.lineformat import APACHE

import pipeline._native as _native  # noqa: E402  -- ImportError here fails the module, it does not skip

NFolder = _native.Folder

FIELDS = ("ts_text", "pid", "level", "logger", "rest", "lines", "cont", "tb", "offset", "orphan", "host", "prog",
          "syslog_ts", "kind", "reason", "access", "tb_last")


# -- conversions ------------------------------------------------------------------
def rec_to_dict(rec: Record) -> dict:
    d = {name: getattr(rec, name) for name in FIELDS}
    d["lines"], d["cont"], d["tb"] = list(rec.lines), list(rec.cont), list(rec.tb)
    d["syslog_ts"] = None if rec.syslog_ts is None else list(rec.syslog_ts)
    d["access"] = None if rec.access is None else list(rec.access.groups())
    return d


def dict_to_rec(d: dict) -> Record:
    rec = object.__new__(Record)
    for name in FIELDS:
        setattr(rec, name, d[name])
    rec.lines, rec.cont, rec.tb = list(d["lines"]), list(d["cont"]), list(d["tb"])
    rec.syslog_ts = None if d["syslog_ts"] is None else tuple(d["syslog_ts"])
    if d["access"] is not None:
        m = APACHE.match(d["lines"][0])
        assert m is not None and list(m.groups()) == d["access"]
        rec.access = m
    return rec


def py_state(f: Folder) -> dict:
    last = None
    for key, rec in f.open.items():
        if rec is f.last:
            last = key
    assert f.last is None or last is not None
    return {"open": [[k, rec_to_dict(r)] for k, r in f.open.items()], "last": last, "sweep_at": f.sweep_at}


def py_folder_from(state: dict) -> Folder:
    f = Folder()
    f.open = {k: dict_to_rec(d) for k, d in state["open"]}
    f.last = None if state["last"] is None else f.open[state["last"]]
    f.sweep_at = state["sweep_at"]
    return f


def assert_same(got: list, want: list, what: str = "records") -> None:
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{what}[{i}] differs:\nnative {g}\npython {w}"
    assert len(got) == len(want), f"{what}: native {len(got)}, python {len(want)}"


# -- running both -----------------------------------------------------------------
def split_lines(text: str) -> list[tuple[str, int]]:
    """lines of ``text`` as feed_text cuts them, with character positions"""
    if not text:
        return []
    if text[-1] != "\n":
        text += "\n"
    out, pos = [], 0
    while pos < len(text):
        e = text.index("\n", pos)
        out.append((text[pos:e], pos))
        pos = e + 1
    return out


class Run:
    """One folder and what it emitted; a Python exception ends the run."""

    def __init__(self, folder, is_native: bool):
        self.f, self.native, self.recs, self.error = folder, is_native, [], None

    def _call(self, name, *args):
        if self.error is not None:
            return
        try:
            if self.native:
                self.recs += getattr(self.f, name)(*args)
            else:
                out: list = []
                getattr(self.f, name)(*args, out)
                self.recs += [rec_to_dict(r) for r in out]
        except (OverflowError, IndexError) as e:      # datetime's ends (the Python caller loses that out)
            self.error = type(e)

    def feed(self, line, offset):
        self._call("feed", line, offset)

    def feed_text(self, text, base, starts):
        self._call("feed_text", text, base, starts)

    def flush(self):
        if self.error is None:
            if self.native:
                self.recs += self.f.flush()
            else:
                out: list = []
                self.f.flush(out)
                self.recs += [rec_to_dict(r) for r in out]

    def state(self):
        return self.f.export_state() if self.native else py_state(self.f)


def compare(a: Run, b: Run, flush: bool = True) -> None:
    assert a.error == b.error
    assert_same(a.recs, b.recs)
    assert a.state() == b.state()
    if flush:
        a.flush()
        b.flush()
        assert_same(a.recs, b.recs)
        assert a.state() == b.state()


def fold_lines(lines: list[str], base: int | None = 0) -> tuple[Run, Run]:
    nat, py = Run(NFolder(), True), Run(Folder(), False)
    off = base
    for ln in lines:
        nat.feed(ln, off)
        py.feed(ln, off)
        if off is not None:
            off += len(ln) + 1
    return nat, py


def fold_chunks(text: str, size: int, base: int | None, with_starts: bool) -> tuple[Run, Run]:
    nat, py = Run(NFolder(), True), Run(Folder(), False)
    lines = text.splitlines(keepends=True)
    pos = 0
    for i in range(0, len(lines), size):
        chunk = "".join(lines[i:i + size])
        b = None if base is None else base + pos
        starts = None
        if with_starts:
            starts, p = [], 0
            for ln in lines[i:i + size]:
                starts.append(p)
                p += len(ln)
        nat.feed_text(chunk, b, starts)
        py.feed_text(chunk, b, starts)
        pos += len(chunk)
    return nat, py


# -- 1. the corpus ----------------------------------------------------------------------
def _ascii_logs() -> list[Path]:
    paths = sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.rglob("*.log")) + sorted(SAMPLES.rglob("*.log"))
    return [p for p in paths if p.read_bytes().isascii()]


LOGS = _ascii_logs()


def test_the_corpus_has_ascii_logs():
    assert len(LOGS) >= 10


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_corpus_file_line_by_line(path):
    text = path.read_bytes().decode("ascii")
    nat = Run(NFolder(), True)
    py = Run(Folder(), False)
    for ln, pos in split_lines(text):        # byte offsets (ASCII: one byte per character)
        nat.feed(ln, 1000 + pos)
        py.feed(ln, 1000 + pos)
    compare(nat, py)
    assert nat.recs and sum(len(r["lines"]) for r in nat.recs) >= len(split_lines(text)) - 1


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_corpus_file_in_chunks(path):
    text = path.read_bytes().decode("ascii")
    for base, with_starts in ((7, False), (123, True), (None, False)):
        nat, py = fold_chunks(text, 64, base, with_starts)
        compare(nat, py)
    # the batch fold equals the line-by-line fold
    nat, _ = fold_chunks(text, 64, 0, False)
    nat.flush()
    _, py = fold_lines([ln for ln, _ in split_lines(text)], base=0)
    py.flush()
    assert_same(nat.recs, py.recs)


def test_corpus_concatenated_in_one_text():
    text = "".join(p.read_bytes().decode("ascii") for p in LOGS)
    nat, py = fold_chunks(text, 10**9, 0, False)
    compare(nat, py)


# -- 2. generated near-valid lines -------------------------------------------------------------
LEVELS = pyfold.LEVELS.split("|")
UUID = "8d6c1f8e-1b2b-4c33-9a55-0123456789ab"
CTRL = "\x1c\x1d\x1e\x1f\x0b\x0c\x1b\t\r\x00\x7f"
ASCII = st.text(st.characters(min_codepoint=0, max_codepoint=127, blacklist_characters="\n"), max_size=12)
FRAGMENT = st.sampled_from([
    "", " ", "x", "Traceback (most recent call last):", "  File \"x.py\", line 1, in f", "ValueError: boom",
    "] Traceback", "[-]", "[-] ", "[req-" + UUID + " - - -] ", "[None req-1 a b] ", "[- req-2] ", "[req-open ",
    '] "', "\x1b[31mred\x1b[0m", "{\"a\": 1}", "May 25 11:01:29 ", "fd00::1 - - [01/", "2019-01-01 ",
    " 42 ERROR nova.x ", "\x1c", "\x1f", "\x0b", "\x0c", "\x1b", "\t", "\r", "|", "WARNING", ":",
]) | ASCII
TEXT = st.lists(FRAGMENT, max_size=4).map("".join)
SEP = st.sampled_from([" "] * 6 + ["\t", "\x1c", "\x1f", "\x0b", "", "  "])
PIDS = st.sampled_from(["600", "700", "800", "1", "0600"])
LOGGERS = st.sampled_from(["nova.compute.manager", "nova", "oslo_db.sqlalchemy.engines", "a\x1cb", "x-y_z.1",
                           "keystone.common.wsgi"])
LEVEL = st.sampled_from(LEVELS + ["ERROR", "ERROR", "TRACE", "TRACE", "WARNINGS", "error", "Info"])
STEPS = st.sampled_from([0, 0, 0, 0.001, 1, 4, 5, 6, 25, 29, 30, 31, 35, 36, 300, 86400 - 3])
BAD_TS = st.sampled_from([
    "2019-13-01 00:00:00", "2019-00-10 10:00:00", "2019-02-29 10:00:00", "2016-02-29 23:59:58",
    "2019-04-31 10:00:00", "2019-01-01 24:00:00", "2019-01-01 23:60:00", "2019-01-01 23:59:60",
    "0000-01-01 00:00:00", "9999-12-31 23:59:29", "9999-12-31 23:59:31", "0001-01-01 00:00:04",
    "0001-01-01 00:00:05", "0999-06-01 00:00:02", "2019-01-01T12:00:00", "1999-12-31 23:59:59",
    "1900-02-29 10:00:00", "2100-02-29 10:00:00", "2000-02-29 23:59:50", "1900-02-28 23:59:40",
])


def stamp(t: float, year: int = 2019) -> str:
    s = int(t)
    day = s // 86400
    return f"{year}-01-{1 + day % 28:02d} {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


@st.composite
def ts_text(draw, t: float) -> str:
    base = draw(BAD_TS) if draw(st.integers(0, 15)) == 0 else stamp(t)
    if draw(st.integers(0, 5)) == 0:
        base = base[:10] + "T" + base[11:]
    frac = draw(st.sampled_from([f".{int(t * 1000) % 1000:03d}"] * 6 + ["", ",5", ".123456789", ".1234567890",
                                                                        ".", ".12a"]))
    return base + frac


@st.composite
def log_lines(draw) -> list[str]:
    t = 0.0
    lines: list[str] = []
    prefixes: list[str] = []        # "ts pid" of headers so far, for traceback lines
    for _ in range(draw(st.integers(1, 40))):
        t += draw(STEPS)
        kind = draw(st.sampled_from(["hdr", "hdr", "hdr", "tb", "tb", "tb", "cont", "cont", "syslog", "syslog",
                                     "iso", "apache", "apache", "glued", "empty", "short_tb"]))
        if kind == "hdr":
            ts, pid = draw(ts_text(t)), draw(PIDS)
            prefixes.append(f"{ts} {pid}")
            lines.append(f"{ts} {pid} {draw(LEVEL)} {draw(LOGGERS)}{draw(SEP)}{draw(FRAGMENT)}{draw(TEXT)}")
        elif kind in ("tb", "short_tb"):
            prefix = draw(st.sampled_from(prefixes)) if prefixes and draw(st.booleans()) else \
                f"{draw(ts_text(t))} {draw(PIDS)}"
            level = draw(st.sampled_from(["ERROR", "TRACE", "ERROR", "CRITICAL"]))
            body = "" if kind == "short_tb" else draw(SEP) + draw(TEXT)
            lines.append(f"{prefix} {level} {draw(LOGGERS)}{body}")
        elif kind == "cont":
            lines.append(draw(TEXT))
        elif kind == "syslog":
            mon = draw(st.sampled_from(["May", "Feb", "Foo", "MAY"]))
            day = draw(st.sampled_from([" 5", "25", "5", "  "]))
            hms = draw(st.sampled_from(["11:01:29", "11:01:29.123456", "25:61:99"]))
            host = draw(st.sampled_from(["ctl-1", "cmp", "h\x1cx"]))
            prog = draw(st.sampled_from(["nova-compute", "httpd", "kernel", "a:b", "p[x]"]))
            spid = draw(st.sampled_from(["", "[4499]", "[1]", "[]"]))
            colon = draw(st.sampled_from([": ", ":", " "]))
            body = draw(st.sampled_from(["inner", "short", "text"]))
            if body == "inner":
                body = f"{draw(ts_text(t))} {draw(PIDS)} {draw(LEVEL)} {draw(LOGGERS)} {draw(TEXT)}"
            elif body == "short":
                body = f"{draw(LEVEL)} {draw(LOGGERS)}{draw(SEP)}{draw(TEXT)}"
            else:
                body = draw(TEXT)
            lines.append(f"{mon} {day} {hms} {host} {prog}{spid}{colon}{body}")
        elif kind == "iso":
            st_ = draw(st.sampled_from(["2017-05-25T11:01:29.577+00:00", "2017-05-25T11:01:29Z",
                                        "2017-05-25T11:01:29+0200", "2017-05-25T11:01:29"]))
            body = f"{draw(LEVEL)} {draw(LOGGERS)} {draw(TEXT)}" if draw(st.booleans()) else draw(TEXT)
            lines.append(f"{st_} {draw(st.sampled_from(['ctl', 'cmp']))} nova-api[{draw(PIDS)}]: {body}")
        elif kind == "apache":
            ip = draw(st.sampled_from(["10.0.0.1", "::1", "fd00::1", "FE80::2", "-", "abc", "g::1", "2001:db8::5"]))
            when = draw(st.sampled_from(["01/Jan/2019:16:00:00 +0000", "1/Jan/2019:16:00:00 +0000"]))
            req = draw(st.sampled_from(["GET /v3/users HTTP/1.1", "POST /x", "get /", "GET  /"]))
            status = draw(st.sampled_from(["200", "401", "503", "600", "20"]))
            size = draw(st.sampled_from(["500", "-", "x"]))
            tail = draw(st.sampled_from(["", ' "-" "curl/7"', ' "-" "curl/7" 2345', " 12(us)",
                                         ' "r" "a" 12(us)', ' "x"', " 12 ", draw(TEXT)]))
            lines.append(f'{ip} - {draw(st.sampled_from(["-", "alice"]))} [{when}] "{req}" {status} {size}{tail}')
        elif kind == "glued":
            ts = draw(ts_text(t))
            pid = draw(PIDS)
            lg = draw(LOGGERS)
            if draw(st.booleans()):
                lines.append(f"{ts} {pid} ERROR {lg} [-] failed")
            prefixes.append(f"{ts} {pid}")
            other = f"{draw(ts_text(t))} {draw(PIDS)} {draw(LEVEL)} {draw(LOGGERS)} {draw(TEXT)}"
            lines.append(f"{ts} {pid} {draw(st.sampled_from(['ERROR', 'TRACE']))} {lg} {draw(TEXT)}"
                         f"{draw(st.sampled_from(['', ' ', 'x']))}{other}")
        else:
            lines.append("")
    return lines


HSETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))


@HSETTINGS
@given(log_lines(), st.sampled_from([None, 0, 5000]))
def test_generated_lines_fold_the_same_line_by_line(lines, base):
    nat, py = fold_lines(lines, base)
    compare(nat, py)


@HSETTINGS
@given(log_lines(), st.integers(1, 9), st.booleans())
def test_generated_lines_fold_the_same_in_chunks(lines, size, with_starts):
    text = "\n".join(lines) + "\n"
    nat, py = fold_chunks(text, size, 100, with_starts)
    compare(nat, py)


@st.composite
def timed_lines(draw) -> list[str]:
    """several pids over time, steps around EXPIRE_SECONDS and SWEEP_SECONDS"""
    t = draw(st.sampled_from([0.0, 86400 - 40.0, 31 * 86400 - 40.0]))
    lines = []
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.sampled_from([0, 0.001, 0.5, 1, 4.5, 4.999, 5, 5.001, 5.5, 6, 25, 29.5, 30, 30.5, 31]))
        s = int(t)
        day = 1 + s // 86400
        ts = f"2016-{1 + (day - 1) // 31:02d}-{1 + (day - 1) % 31:02d} {s // 3600 % 24:02d}:{s // 60 % 60:02d}:" \
             f"{s % 60:02d}.{int(round(t * 1000)) % 1000:03d}"
        if draw(st.integers(0, 7)) == 0:
            ts = ts[:10] + "T" + ts[11:]
        pid = draw(st.sampled_from(["1", "2", "3", "4"]))
        kind = draw(st.sampled_from(["info", "info", "tb", "cont", "late"]))
        if kind == "info":
            lines.append(f"{ts} {pid} INFO nova [-] step")
        elif kind == "tb":
            lines.append(f"{ts} {pid} ERROR nova [-] failed")
            lines += [f"{ts} {pid} ERROR nova   frame"] * draw(st.integers(0, 2))
        elif kind == "cont":
            lines.append("  more")
        else:
            lines.append(f"2016-01-01 00:00:00.000 {pid} TRACE nova late")
    return lines


@HSETTINGS
@given(timed_lines(), st.integers(1, 5))
def test_generated_pids_over_time_fold_the_same(lines, size):
    compare(*fold_lines(lines, 0))
    compare(*fold_chunks("\n".join(lines), size, 0, False))


@pytest.mark.parametrize("age", [4.0, 4.5, 4.999, 5.0, 5.001, 5.5, 6.0, 6.5])
@pytest.mark.parametrize("sep", [" ", "T"])
def test_expiry_at_its_boundary(age, sep):
    def ts(t):
        s = int(t)
        return f"2016-02-29{sep}23:59:{s % 60:02d}.{int(round(t * 1000)) % 1000:03d}" if s < 60 else \
            f"2016-03-01{sep}00:00:{s % 60:02d}.{int(round(t * 1000)) % 1000:03d}"
    lines = [f"{ts(0)} 1 INFO nova [-] first",                  # sweeps: next at 23:59:30
             f"{ts(30 - age)} 2 INFO nova [-] quiet soon",
             f"{ts(30 - age)} 4 INFO nova [-] another",
             f"{ts(30)} 3 INFO nova [-] sweeping",              # sweeps pid 1, maybe 2
             f"{ts(60 - age)} 4 INFO nova [-] again",
             f"{ts(60)} 1 INFO nova [-] sweeping across the day"]
    nat, py = fold_lines(lines, 0)
    compare(nat, py, flush=False)
    assert py.state()["sweep_at"] == f"2016-03-01{sep}00:00:30"
    compare(nat, py)


# -- 3. handing the state over and back -------------------------------------------------------
def handover_run(lines: list[str], k1: int, k2: int) -> Run:
    """native for lines[:k1], Python for lines[k1:k2], native again for the rest"""
    nat = Run(NFolder(), True)
    off = 0
    offs = []
    for ln in lines:
        offs.append(off)
        off += len(ln) + 1
    for i in range(k1):
        nat.feed(lines[i], offs[i])
    py = Run(py_folder_from(nat.state()), False)
    assert py.state() == nat.state()
    py.recs, py.error = nat.recs, nat.error
    for i in range(k1, k2):
        py.feed(lines[i], offs[i])
    back = Run(NFolder(), True)
    back.f.import_state(py.state())
    assert back.state() == py.state()
    back.recs, back.error = py.recs, py.error
    for i in range(k2, len(lines)):
        back.feed(lines[i], offs[i])
    return back


@HSETTINGS
@given(log_lines(), st.integers(0, 40), st.integers(0, 40))
def test_state_handed_to_python_and_back_folds_the_same(lines, a, b):
    k1, k2 = sorted((min(a, len(lines)), min(b, len(lines))))
    got = handover_run(lines, k1, k2)
    _, want = fold_lines(lines, 0)
    compare(got, want)


@pytest.mark.parametrize("path", LOGS[:6], ids=lambda p: p.name)
def test_corpus_state_handover(path):
    lines = [ln for ln, _ in split_lines(path.read_bytes().decode("ascii"))]
    got = handover_run(lines, len(lines) // 3, 2 * len(lines) // 3)
    _, want = fold_lines(lines, 0)
    compare(got, want)


def test_import_state_rejects_a_last_that_is_not_open():
    with pytest.raises(ValueError):
        NFolder().import_state({"open": [], "last": "1", "sweep_at": ""})


# -- 4. MAX_RECORD_LINES and MAX_SPLIT_CHARS ---------------------------------------------------
def test_an_oversized_record_splits_and_the_empty_rest_expires():
    t0 = "2019-01-01 10:00:00.000"
    lines = [f"{t0} 3 INFO nova [-] other", f"{t0} 1 INFO nova [-] big"]
    lines += [f"  line {i}" for i in range(MAX_RECORD_LINES + 10)]      # split after MAX_RECORD_LINES
    lines += [f"{t0} 1 ERROR nova Traceback (most recent call last):"]
    lines += [f"{t0} 1 ERROR nova   frame {i}" for i in range(MAX_RECORD_LINES)]
    lines += ["2019-01-01 10:00:40.000 2 INFO nova [-] later",
              "2019-01-01 10:01:20.000 4 INFO nova [-] much later",
              f"{t0} 4 ERROR nova   stray"]
    nat, py = fold_lines(lines, 0)
    compare(nat, py, flush=False)
    assert any(len(r["lines"]) == MAX_RECORD_LINES for r in py.recs)
    nat2, py2 = fold_lines(lines[:MAX_RECORD_LINES + 1], 0)   # ends right at the split: an empty open record
    compare(nat2, py2, flush=False)
    assert any(not d["lines"] for _, d in py2.state()["open"])
    compare(nat2, py2)
    compare(nat, py)
    text = "\n".join(lines) + "\n"
    for size in (64, 10**6):
        compare(*fold_chunks(text, size, 0, False))


@pytest.mark.parametrize("pad", [MAX_SPLIT_CHARS - 200, MAX_SPLIT_CHARS - 1, MAX_SPLIT_CHARS, MAX_SPLIT_CHARS + 5])
def test_glued_records_split_only_below_max_split_chars(pad):
    t0 = "2019-01-01 10:00:00.000"
    glued = "2019-01-01 10:00:01.500 7 INFO nova.api [-] glued on"
    head = f"{t0} 5 ERROR nova.compute "
    for total in (pad - 1, pad, pad + 1):
        rest = "x" * (total - len(glued)) + glued
        assert len(rest) == total
        lines = [f"{t0} 5 ERROR nova.compute [req-1] failed", head + rest, "  cont", head + "y" + glued]
        nat, py = fold_lines(lines, 0)
        compare(nat, py)
        compare(*fold_chunks("\n".join(lines), 2, 10, True))


def test_missing_native_module_would_fail_not_skip():
    assert hasattr(_native, "Folder")
