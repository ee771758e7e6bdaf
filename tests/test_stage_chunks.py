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
