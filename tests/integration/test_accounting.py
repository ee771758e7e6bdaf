"""Every line accounted for, end to end on the real Kafka and Elasticsearch.

A hostile probe (impossible and far-future dates, a crash-truncated record followed
by NUL bytes and the restarted service's next record, truncated JSON followed by a
long run of NUL bytes, a 5 MB line, invalid UTF-8, Latin-1, binary garbage, a last
line without its newline) is shipped by ``osloscope ship`` among the healthy sample
files; a real worker runs. ``osloscope account`` then finds every line of every file
in an indexed event or a dead letter, and every byte, as counted here from the files
themselves; the worker's /metrics agree; and in embedded mode ``osloscope analyze``
with its dead-letter file accounts for every line too, with the same dead letters.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

from processes import OSLOSCOPE, ROOT, worker

SAMPLES = ROOT / "deploy" / "samples"
SHIP_PIECE = 1_000_000          # osloscope ship cuts longer lines into pieces of this size
READ_PIECE = 1 << 20            # analyze reads longer lines in pieces of this size
HDR = "2017-06-06 10:{m:02d}:{s:02d}.{ms:03d} {pid} {level} nova.compute.manager [-] "


def rec(m: int, s: int, msg: str, pid: int = 4242, level: str = "INFO", ms: int = 0) -> bytes:
    return (HDR.format(m=m, s=s, ms=ms, pid=pid, level=level) + msg).encode()


def probe_lines() -> list[bytes]:
    rng = random.Random(14)
    garbage = bytes(rng.randrange(256) for _ in range(2000))
    garbage = garbage.replace(b"\n", b"").replace(b"\r", b"").replace(b"\x00", b"\x07")
    return [
        rec(0, 0, "Auditing locally available compute resources"),
        rec(0, 1, "Unexpected error while running command.", level="ERROR"),
        b"Command: qemu-img convert -O raw /var/lib/nova/instances/_base/x",
        b"Stderr: u'qemu-img: error while writing sector 1234: No space left on device'",
        b"2017-13-45 25:61:99.000 4242 ERROR nova.compute.manager [-] impossible date",
        b"  a continuation of the impossible record",
        b"9999-12-31 23:59:59.999 4242 WARNING nova.compute.manager [-] far-future timestamp",
        b"0000-01-01 00:00:00.000 4242 INFO nova.compute.manager [-] year zero",
        rec(0, 2, "Instance spawned successfully; resuming") + b"\x00" * 8192
        + rec(0, 9, "nova-compute starting after a crash", pid=5151),
        b"\x00" * 4096,
        rec(0, 10, "a five megabyte line: ") + b"x" * 5_000_123,
        rec(0, 11, "invalid UTF-8 in a record: ") + b"\xff\xfe\xc3(",
        "  Latin-1 continuation: caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"),
        garbage,
        b"\xff\xfe\xfd invalid UTF-8 that fits no record",
        rec(0, 12, "Traceback follows", level="ERROR"),
        rec(0, 12, "Traceback (most recent call last):", level="ERROR").replace(b" [-] ", b" "),
        rec(0, 12, "OSError: [Errno 28] No space left on device", level="ERROR").replace(b" [-] ", b" "),
        rec(0, 13, "the last line, without its newline"),
    ]


def json_probe_lines() -> list[bytes]:
    def oslo(n: int, msg: str) -> bytes:
        return json.dumps({"levelname": "INFO", "name": "nova.api", "message": msg, "created": 1496743200.0 + n,
                           "process": 99, "context": {"request_id": "req-" + "0" * 8}}).encode()
    return [oslo(0, "first"), oslo(1, "second"),
            b'{"levelname": "ERROR", "name": "nova.api", "message": "Unexpected excep' + b"\x00" * 200_000,
            oslo(2, "after the crash"), b'{"levelname": "INFO", "name": "nova.api", "message": "m", "created": "soon"}',
            b'{"json": "without a message field"}']


def write(path: Path, lines: list[bytes], newline_at_end: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))


def expected(path: Path, piece: int) -> tuple[int, int]:
    """(lines, bytes) a reader that cuts lines longer than ``piece`` sends for the file:
    a line of L bytes is L // piece pieces plus its end; bytes exclude the newlines."""
    data = path.read_bytes()
    parts = data.split(b"\n")
    n = sum(len(p) // piece + 1 for p in parts[:-1])
    if parts[-1]:
        n += len(parts[-1]) // piece + (1 if len(parts[-1]) % piece else 0)
    return n, len(data) - data.count(b"\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(OSLOSCOPE + [str(a) for a in args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, timeout=timeout)


def metrics(port: int) -> dict[tuple, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    got = {}
    for m in re.finditer(r'osloscope_lines_total\{stage="(\w+)",outcome="(\w+)",host="([^"]*)"\} (\d+)', text):
        got[("total",) + m.groups()[:3]] = int(m.group(4))
    for m in re.finditer(r'osloscope_lines_pending\{stage="(\w+)",host="([^"]*)"\} (\d+)', text):
        got[("pending",) + m.groups()[:2]] = int(m.group(3))
    return got


def test_every_line_of_a_hostile_probe_among_healthy_files_is_accounted_for(settings_env, tmp_path):
    t0 = time.monotonic()
    root = tmp_path / "logs"
    shutil.copytree(SAMPLES, root)
    probe = root / "compute-9" / "nova" / "nova-compute.log"
    write(probe, probe_lines(), newline_at_end=False)
    json_probe = root / "compute-9" / "nova" / "nova-api.log"
    write(json_probe, json_probe_lines())
    old = time.time() - 3600            # files at rest: the shipper sends a last line without newline
    for p in root.rglob("*.log"):
        os.utime(p, (old, old))
    files = sorted(root.rglob("*.log"))

    port = free_port()
    env = {**settings_env, "OSLOSCOPE_WORKER_METRICS_PORT": str(port),
           "OSLOSCOPE_WORKER_SOURCE_IDLE_TIMEOUT": "3", "OSLOSCOPE_WORKER_SOURCE_WARMUP": "0",
           "OSLOSCOPE_WORKER_IDLE_FLUSH": "2", "OSLOSCOPE_WORKER_SESSION_TIMEOUT": "8"}
    from pipeline.operations.setup import setup
    from pipeline.settings import load
    setup(load(None, env=env), log=lambda _m: None)
    w = worker(env, tmp_path / "worker.log").start()
    try:
        shipped = run(["ship", root, "--layout-hosts", "--from-start", "--once"], env, timeout=120)
        assert shipped.returncode == 0, shipped.stderr.decode()

        acc = run(["account", "--wait", "90", "--format", "json"], env, timeout=150)
        assert not w.exited(), f"the worker died on the probe:\n{w.tail()}"
        assert acc.returncode == 0, (acc.stdout.decode()[-3000:], acc.stderr.decode()[-2000:], w.tail())
        doc = json.loads(acc.stdout)
        assert doc["status"] == "accounted" and doc["drained"] and doc["mode"] == "pipeline"
        got = {(f["host"], f["file"]): f for f in doc["files"]}
        assert len(got) == len(files)
        for path in files:
            host = path.relative_to(root).parts[0]
            f = got[(host, str(path))]
            lines, nbytes = expected(path, SHIP_PIECE)
            assert (f["sent"]["lines"], f["sent"]["bytes"]) == (lines, nbytes), path
            assert f["indexed"]["lines"] + f["dead_lettered"]["lines"] == lines, path
            assert f["indexed"]["bytes"] + f["dead_lettered"]["bytes"] == nbytes, path
            assert f["missing"] == {"lines": 0, "bytes": 0} and f["sent"]["resent_lines"] == 0
        p = got[("compute-9", str(probe))]
        # (invalid UTF-8 that is text, like Latin-1, folds into the record before it)
        assert set(p["dead_lettered"]["reasons"]) == {"invalid timestamp …", "N NUL bytes", "binary data"}
        assert p["dead_lettered"]["reasons"]["invalid timestamp …"] == 2      # month 13, year 0
        j = got[("compute-9", str(json_probe))]
        assert set(j["dead_lettered"]["reasons"]) == {
            "invalid or truncated JSON, and no record to join", "N NUL bytes", "bad oslo.log JSON record",
            "JSON object without a log line (no message/log/@message field)"}
        healthy = [f for k, f in got.items() if k[0] != "compute-9"]
        assert healthy and all(f["dead_lettered"]["letters"] == 0 for f in healthy)

        table = run(["account", "--problems"], env, timeout=120)
        text = table.stdout.decode()
        assert table.returncode == 0 and "every line accounted for" in text and "worker: drained" in text
        assert "compute-9" in text and "controller-1" not in text.split("TOTAL")[0]

        # the worker's own counters say the same
        m = metrics(port)
        total = doc["totals"]
        assert sum(n for k, n in m.items() if k[:3] == ("total", "parse", "in")) == total["sent"]["lines"]
        assert sum(n for k, n in m.items() if k[:3] == ("total", "parse", "event")) == total["indexed"]["lines"]
        assert sum(n for k, n in m.items() if k[:3] == ("total", "parse", "dead_letter")) \
            == total["dead_lettered"]["lines"]
        assert sum(n for k, n in m.items() if k[:3] == ("total", "correlate", "indexed")) == total["indexed"]["lines"]
        assert sum(n for k, n in m.items() if k[0] == "pending") == 0
        assert m[("total", "parse", "dead_letter", "compute-9")] == total["dead_lettered"]["lines"]
    finally:
        w.stop()

    # embedded mode: analyze and its dead-letter file account for every line as well
    dl = tmp_path / "analyze-dead.jsonl"
    res = run(["analyze", root, "--dead-letter", dl, "--format", "jsonl", "--jobs", "2"], {}, timeout=120)
    assert res.returncode in (0, 1), res.stderr.decode()
    letters = [json.loads(x) for x in dl.read_text().splitlines()]
    n_read = sum(expected(p, READ_PIECE)[0] for p in files)
    dead = sum(d["lines"] for d in letters)
    summary = re.search(r"(\d+) lines \((\d+) in (\d+) records, (\d+) in (\d+) dead letters\)", res.stderr.decode())
    assert summary, res.stderr.decode()
    assert [int(x) for x in summary.groups()][:2] == [n_read, n_read - dead]
    assert [int(x) for x in summary.groups()][3:] == [dead, len(letters)]
    local = json.loads(run(["account", root, "--format", "json"], {}, timeout=120).stdout)
    assert local["status"] == "accounted"
    by_file = Counter()
    for d in letters:
        by_file[d["file"]] += d["lines"]
    for f in local["files"]:
        lines, nbytes = expected(Path(f["file"]), READ_PIECE)
        assert (f["sent"]["lines"], f["sent"]["bytes"]) == (lines, nbytes)
        assert f["dead_lettered"]["lines"] == by_file[f["file"]]
        assert f["indexed"]["lines"] + by_file[f["file"]] == lines
        # the same dead letters as the pipeline wrote (the 5 MB line is cut differently, but
        # all its pieces fold into its record in both)
        assert f["dead_lettered"]["reasons"] == got[(f["host"], f["file"])]["dead_lettered"]["reasons"]
        assert f["dead_lettered"]["lines"] == got[(f["host"], f["file"])]["dead_lettered"]["lines"]
    assert time.monotonic() - t0 < 150
