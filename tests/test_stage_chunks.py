"""The parse stage feeds runs of consecutive lines of one file as one chunk
(through the native core when it is built): its output must be exactly what
feeding every message on its own, in pure Python, gives -- events byte for
byte, incidents, dead letters, and the state across snapshots."""
from __future__ import annotations

import json
import random

import pytest

from support import CORPUS, FIXTURES, SAMPLES, require_shared

from pipeline import accel
from pipeline.settings import load
from pipeline.stages import ParseStage, RawMessage

ENVELOPE = json.dumps({"@timestamp": "2024-05-02T10:00:00Z", "host": {"name": "cmp9"},
                       "log": {"file": {"path": "/var/log/nova/nova-compute.log"}},
                       "message": "2024-05-02 10:00:00.000 7 ERROR nova.compute.manager [-] "
                                  "Instance failed to spawn: IOError: [Errno 28] No space left on device"})


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5"})


def file_messages(path, host, service, *, offsets=True):
    """One message per line as ``osloscope ship`` sends them."""
    out, off = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        headers = {"host": host.encode(), "path": str(path).encode(), "service": service.encode()}
        if offsets:
            headers["offset"] = str(off).encode()
        out.append((line.rstrip(b"\n"), headers))
        off += len(line)
    return out


def corpus(seed: int) -> list[tuple[bytes, dict]]:
    """Real files, one after the other and interleaved, with the awkward
    messages a shipper can send spliced in."""
    rng = random.Random(seed)
    files = sorted(SAMPLES.glob("**/*.log")) + sorted(FIXTURES.glob("seeds/*/*/*.log"))
    if CORPUS.exists():
        files += sorted(CORPUS.glob("*.log"))
    msgs: list[tuple[bytes, dict]] = []
    for i, path in enumerate(files):
        msgs += file_messages(path, f"host{i % 3}", path.stem, offsets=i % 4 != 3)
    # two files interleaved line by line, then in blocks
    a = file_messages(files[0], "mix", "nova-compute")
    b = file_messages(files[1], "mix", "cinder-volume")
    for j in range(max(len(a), len(b))):
        msgs += a[j:j + 1] + b[j:j + 1]
    # a line that is no log record at all: a dead letter either way
    out: list[tuple[bytes, dict]] = [(b"\x00\x01 binary garbage, not a log line", {"host": b"g", "path": b"/x.log"})]
    for value, headers in msgs:
        r = rng.random()
        if r < 0.01:
            continue                                   # a lost line: the offsets jump
        if r < 0.02:
            out.append((ENVELOPE.encode(), {}))        # a JSON envelope from another shipper
        elif r < 0.03:
            out.append((b"", dict(headers)))           # an empty line
        elif r < 0.04:
            value = value + b"\r"                      # CRLF
        elif r < 0.05:
            value = value + " caf\u00e9 \u2603".encode()  # UTF-8
        elif r < 0.055:
            value = value + b" \xff\xfe\x00bad"         # invalid UTF-8, a NUL
        elif r < 0.06:
            value = value + b"\n" + value              # a shipper merged two lines
        out.append((value, headers))
    return out


def as_raw(msgs, start=0):
    return [RawMessage("raw", 0, start + i, None, v, h) for i, (v, h) in enumerate(msgs)]


def outputs(out):
    return ([(k, v) for k, v in out.events], [json.dumps(d, sort_keys=True) for d in out.incidents],
            [json.dumps(d, sort_keys=True) for d in out.deadletters])


def run_stage(settings, raws, batch: int, cuts=()):
    """The stage over ``raws`` in batches of ``batch`` messages, snapshot and
    restored into a fresh stage before every index in ``cuts``."""
    stage = ParseStage(settings)
    events, incidents, dead = [], [], []
    native_seen = False
    for i in range(0, len(raws), batch):
        if any(i <= c < i + batch for c in cuts):
            blob = stage.snapshot()
            stage = ParseStage(settings)
            stage.restore(blob, 0.0)
        e, inc, d = outputs(stage.process(raws[i:i + batch], 0.0))
        native_seen = native_seen or any(st.nat is not None for p in stage.parsers.values()
                                         for st in p.streams.values())
        events += e
        incidents += inc
        dead += d
    e, inc, d = outputs(stage.tick(1e9))
    return events + e, incidents + inc, dead + d, native_seen


@pytest.mark.parametrize("seed", [1, 2])
def test_chunked_parse_stage_equals_line_by_line_python(settings, monkeypatch, seed):
    require_shared()
    raws = as_raw(corpus(seed))
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "0")
    reference = run_stage(settings, raws, 1)
    monkeypatch.delenv("OSLOSCOPE_NATIVE")
    chunked = run_stage(settings, raws, 2000)
    assert chunked[:3] == reference[:3]
    assert chunked[3] == accel.available()       # the chunks did reach the native core
    assert len(reference[0]) > 200 and reference[1] and reference[2]


def test_chunked_parse_stage_is_exact_across_snapshots(settings):
    raws = as_raw(corpus(3))
    whole = run_stage(settings, raws, 500)
    cut = run_stage(settings, raws, 500, cuts=(500, 1500, 4000))
    assert cut[:3] == whole[:3]
    with_python = run_stage(settings, raws, 1, cuts=(700,))
    assert with_python[:3] == whole[:3]


def test_a_gap_in_the_offsets_ends_a_chunk(settings):
    """Offsets that do not follow on mean lines are missing: the records
    before and after must not fold into one."""
    head = "2024-05-02 10:00:0{} 7 ERROR nova.compute.manager [-] boom: ValueError: x"
    lines = [head.format(0).encode(), b"Traceback (most recent call last):",
             head.format(1).encode(), b"  File \"x.py\", line 1, in f", b"ValueError: x"]
    msgs, off = [], 0
    for i, line in enumerate(lines):
        if i == 2:
            off += 500                                 # a lost piece of the file
        msgs.append((line, {"host": b"h", "path": b"/var/log/nova/nova-compute.log", "offset": str(off).encode()}))
        off += len(line) + 1
    raws = as_raw(msgs)
    chunked = run_stage(settings, raws, 100)
    single = run_stage(settings, raws, 1)
    assert chunked[:3] == single[:3]
    offsets = [json.loads(v)["log"]["offset"] for _k, v in chunked[0]]
    assert offsets == [0, 500 + len(lines[0]) + len(lines[1]) + 2]


def _lines(lines, start=0, **extra):
    out, off = [], start
    for line in lines:
        headers = {"host": b"h", "path": b"/var/log/nova/nova-compute.log", "offset": str(off).encode(), **extra}
        out.append((line, headers))
        off += len(line) + 1
    return out


def _line(sec, msg, pid=7):
    return f"2024-05-02 10:00:0{sec}.000 {pid} INFO nova.compute.manager [-] {msg}".encode()


def test_a_rotation_inside_a_batch_keeps_the_old_files_ids(settings):
    """The old file's records (the open one included) take the old file's
    identity into their ids; the new file starts again at offset 0."""
    old = _lines([_line(0, "a"), _line(1, "b"), _line(2, "c")], inode=b"1:100")
    new = _lines([_line(3, "d"), _line(4, "e"), _line(5, "f")], inode=b"1:200")
    chunked = run_stage(settings, as_raw(old + new), 100)
    single = run_stage(settings, as_raw(old + new), 1)
    assert chunked[:3] == single[:3]
    ids = [json.loads(v)["_id"] for _k, v in chunked[0]]
    assert len(set(ids)) == 6
    alone = run_stage(settings, as_raw(old), 100)          # the old file, never rotated
    assert ids[:3] == [json.loads(v)["_id"] for _k, v in alone[0]]


def test_a_parser_failure_inside_a_chunk_loses_only_its_line(settings, monkeypatch):
    from pipeline import parser as parser_module

    build = parser_module.Parser._events

    def failing(self, st, recs):
        if any("POISON" in line for rec in recs for line in rec.lines):
            raise RuntimeError("simulated parser bug")
        return build(self, st, recs)

    monkeypatch.setattr(parser_module.Parser, "_events", failing)
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "0")      # records are built in Python
    raws = as_raw(_lines([_line(0, "a"), _line(1, "POISON"), _line(2, "b"), _line(3, "c")]))
    single = run_stage(settings, raws, 1)
    chunked = run_stage(settings, raws, 100)
    assert chunked[:3] == single[:3]
    assert [json.loads(v)["message"] for _k, v in chunked[0]] == ["a", "b", "c"]
    (dead,) = chunked[2]
    assert "simulated parser bug" in json.loads(dead)["reason"]


def test_a_pid_beyond_64_bits_does_not_stop_the_stage(settings):
    """orjson refuses integers beyond 64 bits: the event still goes out (the
    number as a string, for Elasticsearch to reject into the dead letters),
    and the Elasticsearch client serializes it too."""
    from pipeline.elasticsearch_sink import make_client

    big = "123456789012345678901234"
    line = f"2024-05-02 10:00:00.000 {big} ERROR nova.compute.manager [-] No space left on device".encode()
    events, _inc, _dead, _nat = run_stage(settings, as_raw(_lines([line, line])), 100)
    docs = [json.loads(v) for _k, v in events]
    assert [d["process"]["pid"] for d in docs] == [big, big]
    client = make_client(settings.elasticsearch)
    body = client.transport.serializers.dumps({"process": {"pid": int(big)}, "message": "x"})
    assert json.loads(body) == {"process": {"pid": big}, "message": "x"}
