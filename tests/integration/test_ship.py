"""``osloscope ship`` against the real Kafka: exact lines, keys and headers;
restarts (SIGTERM: nothing twice; SIGKILL: only the unacknowledged tail
again) while files grow, rotate by rename and are copytruncated."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

pytest.importorskip("kafka")

from kafka import KafkaConsumer  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from pipeline.parsing.naming import service_from_path  # noqa: E402
from pipeline.settings import load  # noqa: E402
from pipeline.streaming.ship import SHIP_MAX_LINE, ship  # noqa: E402
from pipeline.sources.files import LogFile, read_lines  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


@pytest.fixture
def raw_topic(services_up, names):
    """This test's raw topic (3 partitions), deleted afterwards."""
    create_topic(services_up["bootstrap"], names.raw)
    yield names.raw
    admin = KafkaAdminClient(bootstrap_servers=services_up["bootstrap"])
    try:
        admin.delete_topics([names.raw])
    finally:
        admin.close()


def consume(bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0, settle: float = 1.0):
    """Every record of ``topic`` (from the beginning), waiting until ``expect`` arrived."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    records = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
            if len(records) >= expect:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return records


def expected_records(root: Path) -> dict[tuple[str, int], bytes]:
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lf = LogFile(str(path), None, path.stat().st_size)
        for offset, raw in read_lines(lf, max_line=SHIP_MAX_LINE):
            out[(str(path), offset)] = raw[:-1] if raw.endswith(b"\n") else raw
    return out


def test_once_ships_every_line_exactly_with_keys_and_headers(services_up, names, raw_topic, settings_env,
                                                             tmp_path):
    bootstrap = services_up["bootstrap"]
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLES, logs)
    nova = logs / "compute-1" / "nova"
    with gzip.open(nova / "nova-compute.log.2.gz", "wb") as fh:
        fh.write((SAMPLES / "compute-2/nova/nova-compute.log").read_bytes())
    odd = logs / "compute-9" / "odd.log"
    odd.parent.mkdir()
    odd.write_bytes(b"crlf line\r\n\n\x00\xff\xfe binary garbage\n" + b"L" * 1_500_000 + b"\nno newline at end")
    os.utime(odd, (1_500_000_000, 1_500_000_000))
    settings = load(None, env=settings_env)

    stats = ship([str(logs)], settings, from_start=True, once=True, layout_hosts=True, log=lambda m: None)
    expected = expected_records(logs)
    assert stats["error"] is None and stats["lines"] == stats["acked"] == len(expected)

    records = consume(bootstrap, names.raw, expect=len(expected))
    got = {}
    last_offset: dict[str, int] = {}
    for r in records:
        h = dict(r.headers)
        path, offset = h["path"].decode(), int(h["offset"])
        host = Path(path).relative_to(logs).parts[0]
        assert r.key == host.encode()            # keyed by host: one host's files in one partition
        assert h["host"] == host.encode() and h["shipper"] == b"osloscope/0.1"
        assert h["service"] == (service_from_path(path) or "").encode()
        st = os.stat(path)
        assert h["inode"] == f"{st.st_dev}:{st.st_ino}".encode()
        assert offset > last_offset.get(path, -1)            # one file, one partition, in order
        last_offset[path] = offset
        assert (path, offset) not in got
        got[(path, offset)] = r.value
    assert got == expected
    assert got[(str(odd), 11)] == b"" and max(len(v) for v in got.values()) == SHIP_MAX_LINE
    assert got[(str(odd), max(o for p, o in got if p == str(odd)))] == b"no newline at end"

    # again, through the command line: everything is checkpointed, nothing is sent twice
    r = subprocess.run([sys.executable, "-m", "pipeline.streaming.ship", str(logs), "--once", "--from-start"],
                       env=dict(os.environ, **settings_env), cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "done: 0 lines" in r.stderr
    assert len(consume(bootstrap, names.raw, expect=len(expected), settle=2.0)) == len(expected)


def test_bad_paths_and_settings_exit_2(settings_env, tmp_path):
    env = dict(os.environ, **settings_env)
    r = subprocess.run([sys.executable, "-m", "pipeline.streaming.ship", str(tmp_path / "missing.log")],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.log: no such file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pipeline.streaming.ship", str(tmp_path)],
                       env=dict(env, OSLOSCOPE_SHIPPER_COMPRESSION="zip"), cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "shipper.compression" in r.stderr.replace("OSLOSCOPE_SHIPPER_COMPRESSION",
                                                                              "shipper.compression")


# ---------------------------------------------------------------- restarts

class Writer(threading.Thread):
    """Two services writing numbered oslo.log lines; logrotate-like rotations on request."""

    RATE = 300          # lines per second per stream

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.files = {"api": root / "nova-api.log", "vol": root / "cinder-volume.log"}
        self.fh = {name: open(path, "ab", buffering=0) for name, path in self.files.items()}
        self.seq = Counter()
        self.stop = threading.Event()
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def line(self, name: str) -> bytes:
        n = self.seq[name]
        self.seq[name] += 1
        return (b"2017-06-06 10:%02d:%02d.%03d 4242 INFO %s.test [-] stream=%s seq=%d %s\n"
                % (n // 60000 % 60, n // 1000 % 60, n % 1000, name.encode(), name.encode(), n, b"x" * 60))

    def rotate_rename(self, name: str) -> None:
        with self.lock:
            path = self.files[name]
            for i in (3, 2, 1):
                old = Path(f"{path}.{i}")
                if old.exists():
                    os.rename(old, f"{path}.{i + 1}")
            os.rename(path, f"{path}.1")
            self.fh[name].write(self.line(name))     # the service writes on before it reopens
            self.fh[name].close()
            self.fh[name] = open(path, "ab", buffering=0)

    def copytruncate(self, name: str) -> None:
        with self.lock:
            path = self.files[name]
            for i in (3, 2, 1):
                old = Path(f"{path}.{i}")
                if old.exists():
                    os.rename(old, f"{path}.{i + 1}")
            shutil.copyfile(path, f"{path}.1")
            os.truncate(path, 0)

    def run(self) -> None:
        period = 1.0 / self.RATE
        while not self.stop.is_set():
            with self.lock:
                for name in self.files:
                    self.fh[name].write(self.line(name))
            time.sleep(period)
        for fh in self.fh.values():
            fh.close()


def start_shipper(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.streaming.ship", str(root), "--from-start",
                             "--host", "it-host", "--stats-interval", "1"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def seqs_by_stream(records) -> dict[str, list[int]]:
    out = defaultdict(list)
    for r in records:
        words = dict(w.split(b"=", 1) for w in r.value.split() if b"=" in w)
        out[words[b"stream"].decode()].append(int(words[b"seq"]))
    return out


def run_restart_scenario(services_up, names, settings_env, tmp_path, kill_signal):
    bootstrap = services_up["bootstrap"]
    root = tmp_path / "logs"
    root.mkdir()
    env = dict(os.environ, **settings_env, OSLOSCOPE_SHIPPER_POLL_INTERVAL="0.1")
    writer = Writer(root)
    shipper = start_shipper(root, env)
    writer.start()
    logs = []
    try:
        time.sleep(2.0)
        writer.rotate_rename("api")
        time.sleep(1.0)
        shipper.send_signal(kill_signal)                 # midway, data still flowing
        out, err = shipper.communicate(timeout=40)
        logs.append(err.decode())
        first_rc = shipper.returncode
        time.sleep(0.5)
        writer.copytruncate("vol")                       # rotated while the shipper is down
        writer.rotate_rename("api")
        time.sleep(0.5)
        shipper = start_shipper(root, env)
        time.sleep(2.0)
        writer.copytruncate("vol")                       # and while it runs
        time.sleep(1.0)
        writer.rotate_rename("api")
        time.sleep(1.0)
    finally:
        writer.stop.set()
        writer.join(10)
    total = sum(writer.seq.values())
    try:
        records = consume(bootstrap, names.raw, expect=total, timeout=40, settle=2.0)
    finally:
        shipper.send_signal(signal.SIGTERM)
        out, err = shipper.communicate(timeout=40)
        logs.append(err.decode())
    assert shipper.returncode == 0, logs
    got = seqs_by_stream(records)
    for name in ("api", "vol"):
        missing = set(range(writer.seq[name])) - set(got[name])
        assert not missing, (name, sorted(missing)[:20], logs)
    return first_rc, got, writer, records, logs


def test_sigterm_restart_with_rotations_loses_nothing_and_sends_nothing_twice(
        services_up, names, raw_topic, settings_env, tmp_path):
    first_rc, got, writer, records, logs = run_restart_scenario(
        services_up, names, settings_env, tmp_path, signal.SIGTERM)
    assert first_rc == 0, logs
    print(f"SIGTERM: {len(records)} records; shipper said:", *logs, sep="\n")
    for name in ("api", "vol"):
        dups = [s for s, c in Counter(got[name]).items() if c > 1]
        assert not dups, (name, dups[:20], logs)
    # a stream keeps its name across rotations (path header) and its host's key, in order in the partition
    for name in ("api", "vol"):
        keys = {r.key for r in records if f"stream={name} ".encode() in r.value}
        assert keys == {b"it-host"}
        paths = {dict(r.headers)["path"] for r in records if f"stream={name} ".encode() in r.value}
        assert paths == {str(writer.files[name]).encode()}
        in_partition = [s for r in sorted(records, key=lambda r: r.offset)
                        if f"stream={name} ".encode() in r.value
                        for s in [int(r.value.split(b"seq=")[1].split()[0])]]
        assert in_partition == sorted(in_partition)


def test_sigkill_restart_resends_at_most_the_unacknowledged_tail(services_up, names, raw_topic, settings_env,
                                                                 tmp_path):
    first_rc, got, writer, records, logs = run_restart_scenario(
        services_up, names, settings_env, tmp_path, signal.SIGKILL)
    assert first_rc == -signal.SIGKILL
    total_dups = 0
    for name in ("api", "vol"):
        dups = sorted(s for s, c in Counter(got[name]).items() if c > 1)
        assert all(Counter(got[name])[s] == 2 for s in dups)
        if dups:                                         # one contiguous block: the tail at the kill
            assert dups == list(range(dups[0], dups[-1] + 1)), (name, dups[:5], dups[-5:])
        total_dups += len(dups)
    print(f"SIGKILL: {len(records)} records, {total_dups} resent; shipper said:", *logs, sep="\n")
    # checkpoints are written every second: at most ~1 s of acknowledged lines (plus in flight)
    assert total_dups <= 2 * Writer.RATE * 2, total_dups


def test_unreachable_broker_is_reported_and_retried_until_stopped(settings_env, tmp_path):
    (tmp_path / "a.log").write_bytes(b"one\n")
    settings = load(None, env=dict(settings_env, OSLOSCOPE_KAFKA_BOOTSTRAP="127.0.0.1:1"))
    stop, said = threading.Event(), []

    def log(msg):
        said.append(msg)
        if "unreachable" in msg:
            stop.set()

    t0 = time.monotonic()
    stats = ship([str(tmp_path)], settings, from_start=True, stop_event=stop, log=log)
    assert time.monotonic() - t0 < 30
    assert any(m.startswith("broker 127.0.0.1:1 unreachable, retrying in 1s") for m in said), said
    assert stats["lines"] == 0 and stats["error"] is None
    # the start positions were fixed (and saved) before waiting for the broker
    saved = json.loads((Path(settings_env["OSLOSCOPE_SHIPPER_CHECKPOINT_DIR"]) / "checkpoints.json").read_text())
    assert [(f["path"], f["offset"]) for f in saved["files"]] == [(str(tmp_path / "a.log"), 0)]
