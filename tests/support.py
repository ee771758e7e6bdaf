"""Shared helpers: paths to the real fixtures, small parse/analyze wrappers and
(from events.py) the event builder for detector tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import events as _events

# The one event builder for detector tests (tests/events.py): Events made directly, no parser.
T0, at, by_time, ev = _events.T0, _events.at, _events.by_time, _events.ev

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = FIXTURES / "corpus"          # real oslo.log excerpts; sources in its README.md
SAMPLES = ROOT / "deploy" / "samples"


def parse_text(text: str | bytes, host: str = "h1", service: str = "nova-compute",
               path: str = "/var/log/nova/nova-compute.log", tz: str = "UTC"):
    """All events of ``text`` fed line by line to a fresh parser, then flushed."""
    from pipeline.parsing.extract import Source
    from pipeline.parsing.parser import Parser

    p = Parser(tz)
    src = Source(host, service, path)
    raw = text.encode() if isinstance(text, str) else text
    events = []
    offset = 0
    for line in raw.splitlines(keepends=True):
        events.extend(p.feed(line, src, offset))
        offset += len(line)
    events.extend(p.flush())
    return events


def oslo_line(t, pid: int, level: str, logger: str, ctx: str, msg: str) -> str:
    """One oslo.log line (``asctime.msecs pid LEVEL logger [context] message``) at datetime ``t``."""
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {pid} {level} {logger} {ctx} {msg}\n"


def raw_messages(paths, topic: str = "raw", partitions: int = 1, inode: bool = False) -> list:
    """The lines of the files under ``paths`` as ``osloscope ship`` puts them on
    the raw topic (headers host/path/service/offset, and inode if ``inode``; key
    the host), each host in one of ``partitions`` partitions (the sorted hosts
    dealt round them), file after file, offsets per partition."""
    import zlib

    from pipeline.sources.files import discover
    from pipeline.streaming.stages import RawMessage

    msgs, next_offset = [], [0] * partitions
    files = discover([str(p) for p in paths])
    hosts = sorted({lf.source.host for lf in files})           # hosts dealt round the partitions
    for lf in files:
        key = lf.source.host.encode()
        part = hosts.index(lf.source.host) % partitions
        off = 0
        with open(lf.path, "rb") as fh:
            for line in fh:
                headers = {"host": lf.source.host.encode(), "path": lf.path.encode(),
                           "service": (lf.source.service or "").encode(), "offset": str(off).encode()}
                if inode:
                    headers["inode"] = f"2049:{zlib.crc32(lf.path.encode())}".encode()
                msgs.append(RawMessage(topic, part, next_offset[part], key, line.rstrip(b"\n"), headers))
                next_offset[part] += 1
                off += len(line)
    return msgs


def events_topic(outputs, partitions: int = 1, topic: str = "events") -> list:
    """The events topic as the worker fills it from parse-stage ``outputs``
    (one Output per delivery, in order): each event in partition crc32(key) % n
    with its upstream header, the events routed to fleet detectors likewise, then the delivery's watermark markers in every
    partition. Offsets per partition."""
    import zlib

    from pipeline.streaming.stage import FLEET_HEADER, MARKER_HEADER, UPSTREAM_HEADER, RawMessage

    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    msgs, offsets = [], [0] * partitions
    for out in outputs:
        for key, value, upstream in out.events:
            part = zlib.crc32(key) % partitions
            msgs.append(RawMessage(topic, part, offsets[part], key, value,
                                   {UPSTREAM_HEADER: upstream.encode()}))
            offsets[part] += 1
        for key, value, upstream, fleet in out.fleet:
            part = zlib.crc32(key) % partitions
            msgs.append(RawMessage(topic, part, offsets[part], key, value,
                                   {UPSTREAM_HEADER: upstream.encode(), FLEET_HEADER: fleet.encode()}))
            offsets[part] += 1
        for _upstream, value in out.markers:
            for part in range(partitions):
                msgs.append(RawMessage(topic, part, offsets[part], None, value, {MARKER_HEADER: b"1"}))
                offsets[part] += 1
    return msgs


# settings for stage tests about parsing, not event time: an event goes on as soon as
# its own source has passed it (no warm-up, no slack, no lateness)
PROMPT_EVENT_TIME = {"OSLOSCOPE_WORKER_SOURCE_WARMUP": "0", "OSLOSCOPE_WORKER_SOURCE_SLACK": "0",
                     "OSLOSCOPE_WORKER_ALLOWED_LATENESS": "0"}


def parse_file(path: Path, **kw):
    return parse_text(path.read_bytes(), path=str(path), **kw)


def engine(scope: str = "all", *, windows: bool = False):
    """The registry's detectors for ``scope`` (bundled signatures, default
    settings) in one engine; request windows and root causes if ``windows``."""
    from pipeline.signatures import engine as build

    return build(scope, windows=windows)


def analyze_paths(*paths, host=None, **kw):
    from pipeline.local.analyze import analyze
    from pipeline.sources.files import discover

    return analyze(discover([str(p) for p in paths], host=host), **kw).incidents


def _validator(name: str):
    from jsonschema import Draft202012Validator, FormatChecker

    schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.fixture(scope="session")
def event_validator():
    return _validator("event")


@pytest.fixture(scope="session")
def incident_validator():
    return _validator("incident")


@pytest.fixture(scope="session")
def request_validator():
    return _validator("request")



def osloscope(*args, cwd=None, env=None):
    """``python -m pipeline.cli ARGS`` as a user runs it (text output, never raises)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, env=env)


def run_main(capsys, *argv):
    """``pipeline.cli.main(ARGV)`` in this process: (exit code, stdout, stderr)."""
    from pipeline.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err
