"""Property tests: the parser and the detectors on mutated real log lines.

Inputs are real fixture lines (corpus, seeds, deploy samples) truncated,
spliced with junk bytes and line breaks, given impossible timestamps,
syslog prefixes or shipper envelopes, shuffled, duplicated and interleaved
across pids. Properties: the parser never raises, folding loses no byte,
every event validates against schemas/event.schema.json, and the engine
takes every event without raising.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from jsonschema import Draft202012Validator, FormatChecker

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # pytest's rootdir is not on sys.path
    sys.path.insert(0, str(ROOT))

from detectors import registry  # noqa: E402
from pipeline.codec import event_to_doc  # noqa: E402
from pipeline.parsing.extract import Source  # noqa: E402
from pipeline.parsing.lineformat import HEADER, LEVELS  # noqa: E402
from pipeline.parsing.parser import Parser  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus"
FILES = (sorted(CORPUS.glob("*.log")) + sorted((ROOT / "tests/fixtures/seeds").glob("*/*/*.log"))
         + sorted((ROOT / "deploy/samples").glob("**/*.log")))
FILE_LINES = [p.read_bytes().rstrip(b"\n").split(b"\n") for p in FILES]
JSONL = [ln for p in sorted(CORPUS.glob("*.jsonl")) for ln in p.read_bytes().splitlines() if ln]

VALIDATOR = Draft202012Validator(json.loads((ROOT / "schemas/event.schema.json").read_text()),
                                 format_checker=FormatChecker())
SOURCES = [Source("compute-1", "nova-compute", "/var/log/nova/nova-compute.log"),
           Source("controller-1", None, "/var/log/keystone/keystone.log"),
           Source(None, None, None)]
SETTINGS = settings(max_examples=150, deadline=None)

TS = re.compile(rb"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
# a traceback line: ERROR/TRACE without a context block
TB = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \d+ )(?:ERROR|TRACE) (\S+) (?!\[)")
PID = re.compile(rb"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)? )(\d+) ")
# Where the parser may cut a line: the start of an embedded record header
# (pipeline.parsing.lineformat.EMBEDDED_HEADER, group 1), and either side of a
# run of NUL bytes (pipeline.parsing.fold.NUL_RUN: cut out of its line).
CUT = re.compile(r"(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,9} \d+ (?:" + LEVELS + r") \S)"
                 r"|(?<!\x00)(?=\x00)|(?<=\x00)(?!\x00)")
TB_LINES = [ln for lines in FILE_LINES for ln in lines if TB.match(ln)]
HEADER_LINES = [ln for lines in FILE_LINES for ln in lines if PID.match(ln) and b" [" in ln]
assert len(FILE_LINES) >= 20 and TB_LINES and JSONL, f"real fixtures missing under {CORPUS} / {ROOT}"
JUNK = st.sampled_from([b"\x00", b"\xff\xfe\xc3", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\r", b"\n", b"\r\n",
                        b"\x1b[31m", b"\t", b"\xc3\xa9", b"[", b"]", b'"', b"{", b".", b"0" * 320])
JUNK |= st.binary(max_size=6)
TWO = st.integers(0, 99).map(lambda n: b"%02d" % n)
BAD_TS = st.builds(lambda y, *f: b"%04d-%s-%s %s:%s:%s" % (y, *f), st.integers(0, 9999), TWO, TWO, TWO, TWO, TWO)
SYSLOG = st.builds(lambda mon, day, hms, host, prog: b"%s %2d %s %s %s: " % (mon, day, hms, host, prog),
                   st.sampled_from([b"May", b"Feb", b"Dec", b"Foo"]), st.integers(0, 39),
                   st.sampled_from([b"20:22:34", b"25:61:99", b"00:00:00.123456"]),
                   st.sampled_from([b"controller0", b"compute-1"]),
                   st.sampled_from([b"nova-compute[4499]", b"httpd[1]", b"kernel", b"python3[77]"]))
SYSLOG_ISO = st.sampled_from([b"2017-05-25T11:01:29.577+00:00 ", b"2017-13-45T25:61:99Z "]).map(
    lambda ts: ts + b"controller0 nova-api[123]: ")


# -- strategies --------------------------------------------------------------
@st.composite
def chunk(draw, max_lines=25):
    """A contiguous run of lines of one real file (keeps tracebacks whole)."""
    lines = draw(st.sampled_from(FILE_LINES))
    start = draw(st.integers(0, len(lines) - 1))
    return lines[start:start + draw(st.integers(1, max_lines))]


@st.composite
def mutated(draw, line: bytes) -> bytes:
    for op in draw(st.lists(st.sampled_from(["trunc", "insert", "replace", "ts", "syslog", "iso"]), max_size=3)):
        pos = draw(st.integers(0, len(line)))
        if op == "trunc":
            line = line[:pos]
        elif op == "insert":
            line = line[:pos] + draw(JUNK) + line[pos:]
        elif op == "replace":
            line = line[:pos] + draw(JUNK) + line[pos + draw(st.integers(1, 8)):]
        elif op == "ts":
            line = TS.sub(draw(BAD_TS), line, count=1)
        else:
            line = draw(SYSLOG if op == "syslog" else SYSLOG_ISO) + line
    return line


@st.composite
def line_lists(draw) -> list[bytes]:
    lines = list(draw(chunk()))
    if draw(st.booleans()):                    # a second pid interleaved
        pid = b"%d " % draw(st.integers(1, 99999))
        other = [PID.sub(lambda m: m.group(1) + pid, ln, count=1) for ln in draw(chunk())]
        picks = draw(st.lists(st.booleans(), min_size=len(lines) + len(other), max_size=len(lines) + len(other)))
        merged, ia, ib = [], 0, 0
        for take_a in picks:
            if ib == len(other) or (take_a and ia < len(lines)):
                merged.append(lines[ia])
                ia += 1
            else:
                merged.append(other[ib])
                ib += 1
        lines = merged
    if draw(st.booleans()):
        lines = list(draw(st.permutations(lines + draw(st.lists(st.sampled_from(lines), max_size=4)))))
    for _ in range(draw(st.integers(0, 2))):   # racing writes: two lines glued
        if len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 2))
            lines[i:i + 2] = [lines[i] + draw(st.sampled_from([b"", b" "])) + lines[i + 1]]
    return [draw(mutated(ln)) for ln in lines]


@st.composite
def plain_inputs(draw) -> bytes:
    return b"\n".join(draw(line_lists())) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


@st.composite
def envelope_inputs(draw) -> list[bytes]:
    """Filebeat / Fluent Bit envelopes around mutated lines, plus logstash JSON."""
    out = []
    for group in draw(st.lists(st.lists(st.sampled_from(draw(line_lists())), min_size=1, max_size=3),
                               min_size=1, max_size=8)):
        msg = "\n".join(ln.decode("utf-8", "backslashreplace") for ln in group)
        host = draw(st.sampled_from(["compute-1", "controller-1", ""]))
        path = draw(st.sampled_from(["/var/log/nova/nova-api.log", "/var/log/neutron/server.log", None]))
        if draw(st.booleans()):
            offset = draw(st.integers(0, 2**40))
            env = {"message": msg, "host": {"name": host}, "log": {"file": {"path": path}, "offset": offset}}
        else:
            env = {"log": msg, "kubernetes": {"host": host}, "file": path}
        out.append(json.dumps(env).encode())
    for ln in draw(st.lists(st.sampled_from(TB_LINES + HEADER_LINES), max_size=3)):
        out.append(json.dumps(oslo_json(ln, draw)).encode())
    out += draw(st.lists(st.sampled_from(JSONL), max_size=3))
    return [draw(mutated(ln)) if draw(st.integers(0, 4)) == 0 else ln for ln in out]


def oslo_json(line: bytes, draw) -> dict:
    """An oslo.log JSONFormatter record of a real line, some fields of odd type."""
    ts, pid, level, logger, rest = HEADER.match(line.decode("utf-8", "backslashreplace")).groups()
    rec = {"asctime": ts, "created": 1.5e9, "process": int(pid), "levelname": level, "name": logger,
           "message": rest or "", "funcName": "f", "lineno": 1, "hostname": "h1",
           "context": {"request_id": "req-" + "0" * 8, "instance_uuid": "0" * 8 + "-0000" * 3 + "-" + "0" * 12},
           "traceback": ["Traceback (most recent call last):", "ValueError: x"]}
    odd = st.sampled_from([None, 0, -1, True, 1e300, "", "x", "2017-13-45 25:61:99", [], {}, ["x"]])
    for key in draw(st.lists(st.sampled_from(sorted(rec)), max_size=3)):
        rec[key] = draw(odd)
    return rec


# -- helpers -----------------------------------------------------------------
def split_lines(data: bytes) -> list[bytes]:
    """Lines as a file reader yields them (newline kept, no empty tail)."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    return lines + [parts[-1]] if parts[-1] else lines


def as_parser_sees(raw: bytes) -> str:
    text = raw.decode("utf-8", "backslashreplace").removesuffix("\n")
    return text.removesuffix("\r")


def parse(lines: list[bytes], src: Source = SOURCES[0]) -> list:
    p = Parser(tz="UTC", redact=False)      # byte-exactness; masking is tested in test_redact.py
    events, off = [], 0
    for raw in lines:
        events.extend(p.feed(raw, src, off))
        off += len(raw)
    return events + p.flush()


def check_schema(events) -> None:
    for ev in events:
        doc = event_to_doc(ev)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
        assert not errors, f"{errors} in {doc}"


def check_engine(events) -> None:
    engine = registry.engine("all")
    for ev in events:
        assert isinstance(engine.feed(ev).incidents, list)
    stamps = [ev.ts for ev in events if ev.ts is not None]
    assert isinstance(engine.advance(max(stamps, default=0.0) + 7200.0).incidents, list)


def rebuild(line: str, extra: Counter) -> bool:
    """Take from ``extra`` pieces that concatenate to ``line``, cut only where
    an embedded header starts (iterative backtracking)."""
    cuts = [m.start() for m in CUT.finditer(line) if m.start() > 0] + [len(line)]
    taken: list[tuple[int, int]] = []
    i, k = 0, 0
    while i < len(line) or not taken:
        while k < len(cuts) and (cuts[k] <= i or extra[line[i:cuts[k]]] <= 0):
            k += 1
        if k < len(cuts):
            extra[line[i:cuts[k]]] -= 1
            taken.append((i, k))
            i, k = cuts[k], k + 1
        elif taken:
            i, k = taken.pop()
            extra[line[i:cuts[k]]] += 1
            k += 1
        else:
            return False
    return True


def check_no_loss(lines: list[bytes], events) -> None:
    expected = Counter(as_parser_sees(raw) for raw in lines)
    emitted = Counter(part for ev in events for part in ev.original.split("\n"))
    extra = emitted - expected
    for line, n in (expected - emitted).items():
        for _ in range(n):
            assert rebuild(line, extra), f"input line lost or altered: {line[:300]!r}"
    assert not +extra, f"emitted lines that are no input line: {list((+extra).elements())[:5]}"


def check_accounting(lines: list[bytes], events) -> None:
    """Each input line counts once, with its bytes, in exactly one event."""
    assert sum(ev.lines for ev in events) == len(lines)
    assert sum(ev.nbytes for ev in events) == sum(len(raw) - raw.endswith(b"\n") for raw in lines)


# -- properties --------------------------------------------------------------
# Minimal inputs of parser bugs found by these properties (regression examples).
HDR = b"2017-06-06 10:07:43.280 160 INFO nova.compute.manager "
GLUED = b" ".join([b"2015-01-05 10:00:00.123 1234 ERROR nova.compute.manager Traceback (x)"] * 1200)
RAISES = {
    "glued-traceback-recursion": b"2015-01-05 10:00:00.123 1234 ERROR nova.compute.manager [-] boom\n" + GLUED,
    "json-name-not-str": b'{"levelname": "INFO", "name": 5, "message": "x", "created": 1.0}',
    "access-time-two-dots": HDR + b'[-] 10.0.0.1 "GET /v2 HTTP/1.1" status: 200 len: 1 time: 0.1.2',
    "access-time-overflow": HDR + b'[-] 10.0.0.1 "GET /v2 HTTP/1.1" status: 200 len: 1 time: 1' + b"0" * 320,
}
JSON_REC = b'{"levelname": "INFO", "name": "nova", "message": "x", "created": 1.0, '
INVALID = {
    "req-id": HDR + b"[req-x - - - - -] hi",
    "instance-id-chars": HDR + b"[-] [instance: zzzzzzzz-9f3a-4b5c-8d6e-7f8091a2b3c4] hi",
    "instance-id-layout": HDR + b"[-] [instance: 0000000000000000000000000000000000-0] hi",
    "apache-status": b'10.0.0.1 - - [29/Oct/2015:10:51:09 +0000] "GET /v3 HTTP/1.1" 999 12',
    "oslo-status": HDR + b'[-] 10.0.0.1 "GET /v2 HTTP/1.1" status: 000 len: 1 time: 0.1',
    "envelope-offset": b'{"message": "x", "log": {"offset": -5}}',
    "json-funcname": JSON_REC + b'"funcName": 7}',
    "json-lineno-bool": JSON_REC + b'"lineno": true}',
    "json-process-bool": JSON_REC + b'"process": true}',
    "json-instance": JSON_REC + b'"context": {"instance_uuid": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"}}',
}


@pytest.mark.parametrize("data", RAISES.values(), ids=RAISES.keys())
def test_found_inputs_never_raise(data):
    parse(split_lines(data))


@pytest.mark.parametrize("data", INVALID.values(), ids=INVALID.keys())
def test_found_inputs_validate(data):
    check_schema(parse(split_lines(data)))


@SETTINGS
@given(plain_inputs() | envelope_inputs().map(b"\n".join), st.sampled_from(SOURCES))
def test_feed_and_flush_never_raise(data, src):
    events = parse(split_lines(data), src)
    assert all(ev.kind in ("log", "access", "unparsed") for ev in events)


@SETTINGS
@given(plain_inputs())
def test_folding_loses_no_byte(data):
    lines = split_lines(data)
    check_no_loss(lines, parse(lines))


@SETTINGS
@given(plain_inputs() | envelope_inputs().map(b"\n".join), st.sampled_from(SOURCES))
def test_every_line_and_byte_is_counted_once(data, src):
    """log.lines / log.bytes: over all events (dead letters included) every
    line fed counts once and every byte once, whatever folding did with it."""
    lines = split_lines(data)
    check_accounting(lines, parse(lines, src))


@SETTINGS
@given(plain_inputs() | envelope_inputs().map(b"\n".join), st.sampled_from(SOURCES))
def test_events_validate_against_schema(data, src):
    check_schema(parse(split_lines(data), src))


@SETTINGS
@given(plain_inputs() | envelope_inputs().map(b"\n".join))
def test_engine_takes_every_event(data):
    check_engine(parse(split_lines(data)))


@SETTINGS
@given(plain_inputs() | envelope_inputs().map(b"\n".join), st.data())
def test_parser_state_through_json_mid_input_changes_nothing(data, draw):
    """The worker saves a parser's open records as JSON between batches: a
    parser rebuilt from that JSON goes on exactly as the original would."""
    import orjson

    lines = split_lines(data)
    cut = draw.draw(st.integers(0, len(lines)))
    first, second = Parser(tz="UTC", redact=False), Parser(tz="UTC", redact=False)
    before, off = [], 0
    for raw in lines[:cut]:
        before.extend(first.feed(raw, SOURCES[0], off))
        off += len(raw)
    second.restore_state(orjson.loads(orjson.dumps(first.to_state())))
    after = []
    for raw in lines[cut:]:
        after.extend(second.feed(raw, SOURCES[0], off))
        off += len(raw)
    got = [event_to_doc(ev) for ev in before + after + second.flush()]
    assert got == [event_to_doc(ev) for ev in parse(lines)]


@settings(max_examples=6, deadline=None)
# no newline in the filler: a file reader never yields a line with one inside
@given(st.sampled_from(TB_LINES), st.binary(max_size=64).map(lambda b: b.replace(b"\n", b"")), st.booleans())
def test_one_mib_line(tb_line, filler, glued):
    """A 1 MiB line after an open record: that record's traceback lines glued
    together (racing writes), or one traceback line with 1 MiB of junk."""
    m = TB.match(tb_line)
    opener = m.group(1) + b"ERROR " + m.group(2) + b" [-] boom\n"
    piece = b" " + (tb_line if glued else filler + b" lorem \xff")
    line = (tb_line + piece * ((1 << 20) // len(piece) + 1))[: 1 << 20]
    events = parse([opener, line])
    check_no_loss([opener, line], events)
    check_accounting([opener, line], events)
    check_schema(events)
    check_engine(events)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=4096))
def test_random_binary_line(garbage):
    lines = split_lines(garbage)
    events = parse(lines)
    check_no_loss(lines, events)
    check_accounting(lines, events)
    check_schema(events)
    check_engine(events)

