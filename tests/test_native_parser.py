"""The native core behind the Parser (pipeline/accel.py): the same events,
field for field, as the pure-Python parser, whatever mix of text arrives,
and state that survives switching paths and pickling."""
from __future__ import annotations

import os
import pickle
import random

import pytest

from detectors.hints import hints_of
from detectors.model import Event, event_to_doc
from pipeline import accel
from pipeline.extract import Source
from pipeline.parser import Parser
from tests.support import CORPUS, FIXTURES, SAMPLES, analyze_paths, require_shared

SRC = Source("h1", None, "/var/log/nova/nova-compute.log")


def _files():
    require_shared()
    return (sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.glob("seeds/*/*/*.log"))
            + sorted(SAMPLES.glob("**/*.log")))


def _doc(ev: Event) -> dict:
    return {**event_to_doc(ev), "_ts": ev.ts}


def _run(lines: list[bytes], native: bool, chunk: int = 97, pickle_every: int = 0) -> list[dict]:
    p = Parser("Europe/Oslo", native=native)
    out, off = [], 0
    for n, i in enumerate(range(0, len(lines), chunk)):
        part = lines[i:i + chunk]
        out.extend(p.feed_lines(part, SRC, off))
        off += sum(map(len, part))
        if pickle_every and n % pickle_every == pickle_every - 1:
            p = pickle.loads(pickle.dumps(p))
    out.extend(p.flush())
    return out


def test_the_native_core_is_built():
    if os.environ.get("OSLOSCOPE_NATIVE") == "0":
        pytest.fail("OSLOSCOPE_NATIVE=0: this run does not test the native core")
    assert accel.available(), ("pipeline._native is not built: install with a Rust toolchain "
                               "(`make install` with cargo on the PATH) or run with OSLOSCOPE_NATIVE=0")
    assert Parser().native


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_same_events_as_python_on_every_fixture_file(chunk):
    hinted = total = 0
    for path in _files():
        lines = path.read_bytes().splitlines(keepends=True)
        py = [_doc(e) for e in _run(lines, native=False, chunk=chunk)]
        nat_events = _run(lines, native=True, chunk=chunk)
        assert [_doc(e) for e in nat_events] == py, path
        for ev in nat_events:                  # bits where known, and exact
            assert ev.hints is None or ev.hints == hints_of(ev.text()), (path, ev.message)
        hinted += sum(ev.hints is not None for ev in nat_events)
        total += len(nat_events)
    # the native core built them (only it sets hints; not on DEBUG records, redacted or non-ASCII ones)
    assert hinted >= 0.6 * total


def test_switching_between_ascii_and_other_text_keeps_the_records_whole():
    """Non-ASCII chunks go down the Python path: the open records (a traceback
    in the middle) move across and back."""
    rng = random.Random(7)
    lines = []
    for path in _files():
        lines.extend(path.read_bytes().splitlines(keepends=True))
    lines = lines[:6000]
    for i in rng.sample(range(len(lines)), 60):     # sprinkle UTF-8 and invalid bytes
        lines[i] = lines[i].rstrip(b"\n") + rng.choice([" ünïcode".encode(), b" \xff\xfe", b" \xe2\x82"]) + b"\n"
    for chunk in (3, 50):
        assert [_doc(e) for e in _run(lines, True, chunk)] == [_doc(e) for e in _run(lines, False, chunk)]


def test_pickled_mid_stream_parser_goes_on_the_same():
    lines = []
    for path in _files()[:12]:
        lines.extend(path.read_bytes().splitlines(keepends=True))
    expected = [_doc(e) for e in _run(lines, False, 40)]
    assert [_doc(e) for e in _run(lines, True, 40, pickle_every=3)] == expected


def test_per_line_feed_after_native_chunks():
    """Single lines (shippers, JSON envelopes) take the Python path mid-stream."""
    lines = []
    for path in _files()[:8]:
        lines.extend(path.read_bytes().splitlines(keepends=True))

    def run(native):
        p = Parser("UTC", native=native)
        out, off = [], 0
        for i in range(0, len(lines), 30):
            part = lines[i:i + 30]
            if i // 30 % 3 == 1:
                for ln in part:
                    out.extend(p.feed(ln, SRC, off))
                    off += len(ln)
            else:
                out.extend(p.feed_lines(part, SRC, off))
                off += sum(map(len, part))
        return [_doc(e) for e in out + p.flush()]

    assert run(True) == run(False)


def test_analyze_gives_the_same_incidents_either_way(monkeypatch):
    require_shared()
    native = analyze_paths(SAMPLES, CORPUS)
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "0")
    python = analyze_paths(SAMPLES, CORPUS)
    assert len(python) >= 4
    assert native == python


@pytest.mark.parametrize("tz", ["UTC", "+05:30", "-08:00", "America/New_York"])
def test_times_in_fixed_and_ruled_zones_and_impossible_dates(tz):
    """The core converts seconds itself for fixed offsets, and asks the
    TimeParser for zones with rules and for dates that do not exist."""
    stamps = ["2016-02-29 23:59:59.999", "2017-02-29 10:00:00.000", "1900-02-29 00:00:00.1",
              "2000-02-29 00:00:00", "0001-01-01 00:00:00.5", "9999-12-31 23:59:59.999999",
              "2024-03-10 02:30:00.000", "2024-11-03 01:30:00.000", "2017-06-06 24:00:00.000",
              "2017-04-31 10:00:00.000", "2017-06-06 10:61:00.000", "2017-06-06T10:00:00.123",
              "2017-06-06 10:00:00,456"]
    text = "".join(f"{s} {1000 + i} INFO nova.compute.manager [-] stamp {i}\n" for i, s in enumerate(stamps))
    lines = [ln.encode() for ln in text.splitlines(keepends=True)]

    def run(native):
        p = Parser(tz, native=native)
        return [_doc(e) for e in p.feed_lines(lines, SRC, 0) + p.flush()]

    python = run(False)
    assert sum(d["event"]["kind"] == "pipeline_error" for d in python) >= 4   # the impossible ones
    assert run(True) == python


def test_the_switch(monkeypatch):
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "0")
    assert not Parser().native and not accel.enabled()
    assert Parser(native=True).native          # an explicit request wins over the environment
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "1")
    assert Parser().native
    monkeypatch.setattr(accel, "_native", None)  # as on a machine without a Rust toolchain
    with pytest.raises(RuntimeError, match="not built"):
        Parser()
    monkeypatch.delenv("OSLOSCOPE_NATIVE")
    assert not Parser().native                 # silently pure Python


def test_every_detector_gives_the_same_incidents_either_way(monkeypatch):
    """analyze with all detectors (the known-issue signatures read the
    native core's bits through the vocabulary) as without the core."""
    from detectors import Engine
    from pipeline import detection
    from pipeline.analyze import analyze
    from pipeline.sources import discover

    require_shared()
    paths = [str(SAMPLES), str(CORPUS), str(FIXTURES / "seeds")]

    def run():
        return analyze(discover(paths), engine=Engine(detection.build())).incidents

    native = run()
    monkeypatch.setenv("OSLOSCOPE_NATIVE", "0")
    python = run()
    assert {d["type"] for d in python} >= {"known_issue", "auth_failure", "disk_full", "retry_exhausted"}
    assert native == python
