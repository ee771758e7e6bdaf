"""Shared helpers: paths to the real fixtures and small parse/analyze wrappers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
    ``host|path``), each file in one of ``partitions`` partitions (by its key),
    offsets per partition."""
    import zlib

    from pipeline.sources.files import discover
    from pipeline.streaming.stages import RawMessage

    msgs, next_offset = [], [0] * partitions
    for lf in discover([str(p) for p in paths]):
        key = f"{lf.source.host}|{lf.path}".encode()
        # the partition follows the path below the checkout, so it is the same in every clone
        where = os.path.relpath(lf.path, ROOT) if lf.path.startswith(str(ROOT)) else lf.path
        part = zlib.crc32(f"{lf.source.host}|{where}".encode()) % partitions
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
