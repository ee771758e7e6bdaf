"""The native extractor (pipeline/rust/src/extract.rs) against the reference
``pipeline.extract.Extractor.build``: every Event field equal, for every
record of the real logs and for generated near-valid ASCII lines.

Records are folded by the Python ``pipeline.fold.Folder``; each is given to
both extractors with the same ``last`` (threaded as ``Parser._events`` does).
The native module must be built (see pipeline/rust): without it these tests
fail, they do not skip.
"""
from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from support import CORPUS, FIXTURES, SAMPLES

from detectors.model import Event
from pipeline.extract import Extractor, Source
from pipeline.fold import Folder, Record
from pipeline.timefmt import TimeParser

try:
    from pipeline import _native
except ImportError as exc:           # reported by every test, never skipped
    _native = None
    _IMPORT_ERROR = exc

I64_MAX = 2**63 - 1
SRC = Source("h1", None, "/var/log/nova/nova-compute.log")
SOURCES = [SRC, Source("h1", "nova-compute", "/var/log/x.log"), Source(None, "", None), Source("", None, "p")]


def native():
    if _native is None or not hasattr(_native, "extract_record"):
        pytest.fail(f"pipeline._native with extract_record is not built/installed: "
                    f"{_IMPORT_ERROR if _native is None else _native.__file__}")
    return _native


def rec_dict(rec: Record) -> dict:
    return {"ts_text": rec.ts_text, "pid": rec.pid, "level": rec.level, "logger": rec.logger,
            "rest": rec.rest, "lines": list(rec.lines), "cont": list(rec.cont), "tb": list(rec.tb),
            "offset": rec.offset, "orphan": rec.orphan, "host": rec.host, "prog": rec.prog,
            "syslog_ts": list(rec.syslog_ts) if rec.syslog_ts is not None else None, "kind": rec.kind,
            "reason": rec.reason, "access": list(rec.access.groups()) if rec.access is not None else None,
            "tb_last": rec.tb_last}


def _norm(value):
    """Exact comparison: types too (1 != 1.0 != "1"), resources in order."""
    if isinstance(value, dict):
        return [(k, type(v).__name__, list(v)) for k, v in value.items()]
    return (type(value).__name__, value)


def py_fields(ev: Event) -> dict:
    return {name: _norm(getattr(ev, name)) for name in Event.FIELDS} | {"kind": _norm(ev.kind),
                                                                      "reason": _norm(ev.reason)}


def nat_fields(d: dict) -> dict:
    unknown = d.keys() - set(Event.FIELDS)
    assert not unknown, unknown
    return {name: _norm(d.get(name)) for name in Event.FIELDS}


def _has_big_int(ev: Event) -> bool:
    return any(isinstance(getattr(ev, n), int) and getattr(ev, n) > I64_MAX for n in Event.FIELDS)


def compare(records: list[Record], src: Source, tz: str, year: int = 1970) -> int:
    """Build every record both ways; returns how many were compared."""
    nat = native()
    tp = TimeParser(tz)
    ex = Extractor(tp, year)
    last = (None, None)
    n = 0
    for rec in records:
        d = rec_dict(rec)
        try:
            ev = ex.build(rec, src, last)
            err = None
        except Exception as exc:                     # e.g. int() of > 4300 digits
            ev, err = None, exc
        got = nat.extract_record(d, tuple(src), last, tp, year)
        if got is None:
            # Fallback: only where Python makes an int beyond i64 or raises
            assert err is not None or _has_big_int(ev), (rec.lines, py_fields(ev))
        else:
            assert err is None, (rec.lines, err)
            want = py_fields(ev)
            have = nat_fields(got)
            diff = {k: (want[k], have[k]) for k in want if want[k] != have[k]}
            assert not diff, (rec.lines, diff)
            n += 1
        if ev is not None and ev.kind != "unparsed":
            last = (ev.ts, ev.timestamp)
    return n


def fold_lines(lines: list[str], offset0: int = 0) -> list[Record]:
    f = Folder()
    out: list[Record] = []
    off = offset0
    for line in lines:
        f.feed(line, off, out)
        off += len(line) + 1
    f.flush(out)
    return out


def _ascii_logs() -> list[Path]:
    paths = sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.rglob("*.log")) + sorted(SAMPLES.rglob("*.log"))
    return [p for p in paths if p.read_bytes().isascii()]


def _file_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("ascii")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


# -- 1. the real logs -----------------------------------------------------------------

def test_native_module_is_the_one_built_here():
    nat = native()
    assert callable(nat.extract_record)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Oslo"])
def test_every_record_of_the_ascii_logs(tz):
    paths = _ascii_logs()
    assert len(paths) >= 10, paths
    total = 0
    for path in paths:
        src = Source("h1", None, str(path))
        lines = _file_lines(path)
        total += compare(fold_lines(lines), src, tz)
        # the batch fold (BLOCK) builds its records another way
        f = Folder()
        out: list[Record] = []
        f.feed_text("\n".join(lines) + "\n", 0, None, out)
        f.flush(out)
        total += compare(out, Source("h2", "svc", str(path)), tz, 2019)
    assert total > 500


# -- 2. generated lines ---------------------------------------------------------------

HEX = "0123456789abcdef"
uuids = st.builds(lambda s, up: ("-".join((s[:8], s[8:12], s[12:16], s[16:20], s[20:32]))).upper()
                  if up else "-".join((s[:8], s[8:12], s[12:16], s[16:20], s[20:32])),
                  st.text(HEX, min_size=32, max_size=32), st.booleans())
U1 = "8d6c1f8e-1b2b-4c33-9a55-0123456789ab"
U2 = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
fixed_uuids = st.sampled_from([U1, U2, U1.upper()])
any_uuid = st.one_of(fixed_uuids, uuids)
req = any_uuid.map(lambda u: "req-" + u)
hex32 = st.text(HEX, min_size=32, max_size=32)
ident = st.sampled_from(["-", "None", "admin", "demo", "u1", "p1", "0123456789abcdef0123456789abcdef",
                         "req-abc", "x" * 40])

CONTROL = "".join(chr(c) for c in range(32) if c != 10) + "\x7f"
ascii_text = st.text(alphabet=string.printable.replace("\n", "") + CONTROL, max_size=40)

TIMES = ["2019-01-01 16:00:00.123", "2019-01-01 16:00:00.123", "2019-01-01 16:00:01", "2019-01-01T16:00:00.5",
         "2019-01-01 16:00:00,999", "2019-01-01T16:00:00", "2019-02-30 10:00:00.000", "2019-13-01 10:00:00.000",
         "0000-01-01 00:00:00.000", "2019-03-31 02:30:00.000", "2019-10-27 02:30:00.000",
         "9999-12-31 23:59:29.999999999", "2019-01-01 24:00:00.000", "2019-01-01 16:61:00.000",
         "2016-02-29 16:00:00.1", "1969-12-31 23:59:59.999"]
VALID = ["2019-01-01 16:00:00.123", "2019-01-01 16:00:01", "2019-01-01T16:00:00.5", "2019-01-01 16:00:00,999",
         "2019-01-01T16:00:00", "2019-03-31 02:30:00.000"]
times = st.one_of(st.sampled_from(VALID), st.sampled_from(VALID), st.sampled_from(TIMES))
pids = st.one_of(st.sampled_from(["123", "600", "0", "007", "9" * 25, "1" * 19, "9223372036854775808"]),
                 st.integers(0, 99999).map(str))
LEVEL_NAMES = ["TRACE", "DEBUG", "INFO", "AUDIT", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"]
levels = st.sampled_from(LEVEL_NAMES + ["ERROR", "ERROR", "DEBUG"])
loggers = st.sampled_from(["nova.compute.manager", "nova.api.openstack.wsgi", "neutron.wsgi", "keystone.common.wsgi",
                           "cinder.volume.manager", "oslo_db.sqlalchemy.engines", "glance.registry.api",
                           "placement.wsgi", "nova.osapi_compute.wsgi.server", ".odd", "x", "nova.virt.libvirt"])


@st.composite
def contexts(draw):
    r, g = draw(req), draw(req)
    u, p = draw(ident), draw(ident)
    return draw(st.sampled_from([
        "[-]", "[-] ", f"[{r} ]", f"[{r} None]", f"[{r} {u} {p}]", f"[{r} {u} {p} - - -]",
        f"[{r} {u} {p} - default default]", f"[None {r} - - - - - -]", f"[{g} {r} {u} {p} - - -]",
        f"[- {r} {u} {p}]", f"[{r}]", "[req-]", f"[{r}", "[-", "[req-x y]", f"[{r} {u}\x1c{p}]",
        f"[None req-{draw(hex32)} {u} {p}]", f"[\x1b[01;36m{r} {u}\x1b[00;36m]", "", "[foo] ",
    ]))


@st.composite
def instances(draw):
    u = draw(any_uuid)
    return draw(st.sampled_from(["", f"[instance: {u}] ", f"[instance: {u}]", f"[instance: {u[:-1]}] ",
                                 f"[instance: {u}]x", "[instance: ", f"[instance: {u.upper()}] "]))


EXC = ["nova.exception.NoValidHost", "NoValidHost", "InvalidBDM", "StorageFull", "GlanceConnectionFailed",
       "MaxRetriesExceeded", "ValueError", "OSError", "oslo_messaging.exceptions.MessagingTimeout",
       "ConnectionRefused", "Failed", "Invalid", "Note", "NoSuchThing", "Noop", "InvalidX", "KeyError",
       "x.y.Z", "_private.Mod.Err", "BuildAbortException", "DBConnectionError"]


@st.composite
def fragments(draw):
    u, u2 = draw(any_uuid), draw(any_uuid)
    ip = draw(st.sampled_from(["10.0.0.1", "10.0.0.1,10.0.0.2", "-", "::1", "fd00::1", "abc"]))
    url = draw(st.sampled_from(["/v2.1/servers", "/v2.1/servers?all=1", "http://ctl:8774/v2.1/x?y",
                                "http://ctl:8774", "https://h/", "/", "x?", "/a\"b", "/a\x1cb?c", "/x\x1f",
                                "http://h\x1d/y", "/v\x0b1", "/a\tb"]))
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "PUT", "get", "FOO"]))
    status = draw(st.sampled_from(["200", "404", "500", "599", "600", "099"]))
    size = draw(st.sampled_from(["0", "1234", "-", "9" * 30, "1" * 19]))
    secs = draw(st.sampled_from(["0.1234567", "1", "123456789.999999999", "1234567890.1", "0.000000001",
                                 "2.5", "0.30000000000000004"]))
    exc = draw(st.sampled_from(EXC))
    return draw(st.sampled_from([
        f'{ip} "{method} {url} HTTP/1.1" status: {status} len: {size} time: {secs}',
        f'{ip} "{method} {url}" status: {status}\x1c len: {size} microversion: 2.1 time: {secs}',
        f'{ip} - - [29/Oct/2015 10:51:09] "{method} {url} HTTP/1.1" {status} {size} {secs}',
        f"{url} returned with HTTP {status}", f"x\x1e{url} returned with HTTP {status}", f"{method} {url}", f"{method} {url} ",
        f"{exc}: {draw(ascii_text)}", f"Error: {exc}: boom: x", f"failed: {exc}: No valid host",
        f"instance {u} failed", f"Instance {u2}", f"server: u'{u}'", f"volume_id={u}", f"vol/{u}",
        f"snapshots {u}", f'image "{u}"', f"port_ID:{u}", f"networkid='{u}'", f"xinstance {u}",
        f"instances: {u}, {u2}", f"req-{u} and req-{u2}", f"[Errno 28] No space left", "[Errno 2",
        f"[Errno {'9' * 30}]", " func /usr/lib/python3/dist-packages/nova/x.py:123",
        f" {{{{(pid={draw(pids)}) func /opt/stack/nova/x.py:{draw(pids)}}}}}",
        "\x1b[01;31m", "\x1b[00m", "\x1b[", "Traceback (most recent call last):",
        "", " ", ": ", "No", "Invalid", "Full: disk", draw(ascii_text), draw(ascii_text),
    ]))



@st.composite
def suffixes(draw):
    """What ends a message: DEBUG ``func path:line`` of each era, or nothing."""
    return draw(st.sampled_from([
        "", "", " func /usr/lib/python3/dist-packages/nova/x.py:123", " _run /opt/x.py:7",
        f" {{{{(pid={draw(pids)}) func /opt/stack/nova/x.py:{draw(pids)}}}}}", " {{(pid=1) f a:b:c}}",
        " {{(pid=1) f a}}", " {{(pid=1) f a:x}}", "{{(pid=1) f a:1}}", " {{(pid=) }}", "}}", "x.py:12",
        "\nfoo bar.py:9", " f .py:0", " f x.py:", f" f x.py:{'9' * 30}", " \x1c f\x1fx.py:3",
    ]))


messages = st.builds(lambda frags, suffix: " ".join(frags) + suffix, st.lists(fragments(), max_size=5), suffixes())


@st.composite
def header_lines(draw):
    ts = draw(times)
    return (f"{ts} {draw(pids)} {draw(levels)} {draw(loggers)} "
            f"{draw(contexts())}{draw(instances())}{draw(messages)}")


@st.composite
def record_groups(draw):
    """A header line, then continuation and traceback lines of its prefix."""
    ts, pid, logger = draw(times), draw(pids), draw(loggers)
    ctx = draw(contexts())
    lines = [f"{ts} {pid} {draw(levels)} {logger} {ctx}{draw(instances())}{draw(messages)}"]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["tb", "tb", "cont", "empty", "exc"]))
        lvl = draw(st.sampled_from(["ERROR", "TRACE"]))
        inst = draw(instances())
        if kind == "tb":
            body = draw(st.sampled_from(["Traceback (most recent call last):", '  File "x.py", line 1, in f',
                                         "    raise X", "\tat y", "", " "]))
            lines.append(f"{ts} {pid} {lvl} {logger} {inst}{body}")
        elif kind == "exc":
            exc = draw(st.sampled_from(EXC + ["9bad", "a.b.", "Foo Bar"]))
            tail = draw(st.sampled_from(["", ": ", f": {draw(messages)}", ":x", "\x0b"]))
            lines.append(f"{ts} {pid} {lvl} {logger} {inst}{exc}{tail}")
        elif kind == "cont":
            lines.append(draw(messages))
        else:
            lines.append("")
    return lines


SYSLOG_STAMPS = ["Jan  5 10:00:00", "Feb 29 10:00:00", "Feb 30 10:00:00", "Jun 15 23:59:59.123456", "Xyz  1 00:00:00",
                 "Mar 31 02:30:00"]
ISO_STAMPS = ["2017-05-25T11:01:29.577+00:00", "2017-05-25T11:01:29Z", "2017-02-30T11:01:29+0100",
              "2017-05-25T11:01:29.123456789-05:30"]


@st.composite
def syslog_lines(draw):
    stamp = draw(st.sampled_from(SYSLOG_STAMPS + ISO_STAMPS))
    prog = draw(st.sampled_from(["nova-compute", "python", "python3", "uwsgi", "httpd", "kernel", "cinder-volume"]))
    pid = draw(st.sampled_from(["", "[123]", f"[{'9' * 25}]"]))
    body = draw(st.sampled_from([
        f"{draw(times)} {draw(pids)} {draw(levels)} {draw(loggers)} {draw(contexts())}{draw(messages)}",
        f"{draw(levels)} {draw(loggers)} {draw(contexts())}{draw(messages)}",
        f"{draw(levels)} {draw(loggers)}", draw(messages),
    ]))
    return f"{stamp} {draw(st.sampled_from(['ctl-1', 'cmp-2']))} {prog}{pid}: {body}"


@st.composite
def apache_lines(draw):
    ip = draw(st.sampled_from(["10.0.0.1", "-", "::1", "fd00::1", "FE80::2", "2001:db8::5"]))
    user = draw(st.sampled_from(["-", "alice", "x-y"]))
    stamp = draw(st.sampled_from(["29/Oct/2015:10:51:09 +0000", "29/Oct/2015:10:51:09 +0100"] * 4 + [
                                  "31/Feb/2015:10:51:09 +0000", "29/Foo/2015:10:51:09 +0000",
                                  "29/Oct/2015:25:51:09 +0000", "29/Oct/2015:10:51:09 -9999"]))
    method = draw(st.sampled_from(["GET", "POST", "DELETE"]))
    url = draw(st.sampled_from(["/v3/users", "/v3/auth/tokens?nocatalog", "http://h:5000/v3", "http://h"]))
    status = draw(st.sampled_from(["200", "401", "503"]))
    size = draw(st.sampled_from(["500", "-", "0", "9" * 30]))
    tail = draw(st.sampled_from(["", ' "-" "curl/7"', ' "-" "curl/7" 2345', ' "-" "curl/7" 2345(us)', " 12",
                                 f" {'9' * 17}", f" {'9' * 30}", ' "ref" "agent with spaces" 7', " x"]))
    return f'{ip} {draw(st.sampled_from(["-", "x"]))} {user} [{stamp}] "{method} {url} HTTP/1.1" {status} {size}{tail}'


line_groups = st.one_of(
    record_groups(), header_lines().map(lambda x: [x]), syslog_lines().map(lambda x: [x]),
    apache_lines().map(lambda x: [x]), ascii_text.map(lambda x: [x]), messages.map(lambda x: [x]))
streams = st.lists(line_groups, min_size=1, max_size=6).map(lambda gs: [ln for g in gs for ln in g])

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(streams, st.sampled_from(["UTC", "Europe/Oslo"]), st.sampled_from(SOURCES))
def test_generated_streams(lines, tz, src):
    compare(fold_lines(lines), src, tz, 2019)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(streams)
def test_generated_streams_batch_fold(lines):
    f = Folder()
    out: list[Record] = []
    f.feed_text("\n".join(lines) + "\n", 0, None, out)
    f.flush(out)
    compare(out, SRC, "UTC")


# records no fold makes (newlines inside lines, any rest/tb/cont text): the
# extractor alone, Python's `$` before a final newline included
raw_text = st.one_of(messages, ascii_text, st.text(alphabet=string.printable + CONTROL, max_size=30),
                     messages.map(lambda m: m + "\n"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(ts=st.one_of(st.none(), times), pid=st.one_of(st.none(), pids, st.just("12a")),
       level=st.one_of(st.none(), levels), logger=st.one_of(st.none(), loggers, st.just("")),
       rest=st.one_of(raw_text, st.builds(lambda c, i, m: c + i + m, contexts(), instances(), raw_text)),
       cont=st.lists(raw_text, max_size=3), tb=st.lists(st.one_of(raw_text, st.sampled_from(
           ["Traceback (most recent call last):", "  File x", "ValueError: bad\n", "Foo\n", "a.b.C: x\ny"])),
           max_size=4),
       orphan=st.booleans(), host=st.sampled_from([None, "", "ctl-1"]),
       prog=st.sampled_from([None, "", "python", "nova-api"]),
       syslog=st.sampled_from([None] + [(s, False) for s in SYSLOG_STAMPS] + [(s, True) for s in ISO_STAMPS]),
       src=st.sampled_from(SOURCES), tz=st.sampled_from(["UTC", "Europe/Oslo"]))
def test_generated_records(ts, pid, level, logger, rest, cont, tb, orphan, host, prog, syslog, src, tz):
    assume(ts is not None or syslog is not None)
    rec = Record(ts, pid, level, logger, rest, "first line", 7, orphan=orphan, host=host, prog=prog,
                 syslog_ts=syslog if ts is None else None)
    rec.lines.extend(cont)
    rec.cont = list(cont)
    rec.tb = list(tb) if not orphan else [rest] + list(tb)
    compare([rec], src, tz)


def test_unparsed_and_last_and_oddities():
    recs = fold_lines([
        "continuation with no record",
        "2019-02-30 10:00:00.000 1 INFO nova.compute.manager [-] impossible date",
        "2019-01-01 10:00:00.000 1 INFO nova.compute.manager [-] fine",
        "2019-02-30 10:00:00.000 2 INFO nova.compute.manager [-] impossible again",
        '10.0.0.1 - alice [31/Feb/2015:10:51:09 +0000] "GET /v3 HTTP/1.1" 200 5 "-" "c" 12',
        '10.0.0.1 - alice [28/Feb/2015:10:51:09 +0000] "GET http://h:5000/v3?x HTTP/1.1" 200 - "-" "c" 12(us)',
        f"2019-01-01 10:00:01.000 3 DEBUG nova.api.openstack.wsgi [req-{U1} - - - - -] GET /v2.1/x",
        "",
        f"2019-01-01 10:00:02.000 4 ERROR nova.compute.manager [instance: {U1.upper()}] Instance failed",
        "2019-01-01 10:00:02.000 4 ERROR nova.compute.manager Traceback (most recent call last):",
        "2019-01-01 10:00:02.000 4 ERROR nova.compute.manager   File \"x.py\", line 1, in f",
        f"2019-01-01 10:00:02.000 4 ERROR nova.compute.manager [instance: {U1}] OSError: [Errno 28] full",
        "2019-01-01 10:00:03.000 5 TRACE nova.compute.manager Foo",
        f"2019-01-01 10:00:04.000 6 DEBUG x [-] a {{{{(pid=6) f /opt/x.py:{'9' * 30}}}}}",
        f"2019-01-01 10:00:04.000 7 INFO x [-] {'x' * 5000} instance {U2}",
    ])
    assert len(recs) >= 10
    compare(recs, SRC, "Europe/Oslo")


def test_fallback_for_ints_beyond_i64():
    nat = native()
    tp = TimeParser("UTC")
    recs = fold_lines([f"2019-01-01 10:00:00.000 {'9' * 25} INFO x [-] hi",
                       '10.0.0.1 - - [28/Feb/2015:10:51:09 +0000] "GET / HTTP/1.1" 200 1 "-" "c" 9223372036854776'])
    for rec in recs:
        assert nat.extract_record(rec_dict(rec), tuple(SRC), (None, None), tp, 1970) is None
