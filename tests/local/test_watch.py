"""``osloscope watch``: live embedded detection over growing files (no Kafka); its command line:
tests/cli/test_watch.py."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from support import FIXTURES, ROOT
from pipeline.settings import load
from pipeline.local.watch import Watcher, watch

SEEDS = FIXTURES / "seeds"
S04 = (SEEDS / "S04/compute/nova-compute.log").read_bytes().splitlines(keepends=True)
S16 = (SEEDS / "S16/controller/nova-manage.log").read_bytes()


def settings(**env):
    base = {"OSLOSCOPE_WORKER_IDLE_FLUSH": "5", "OSLOSCOPE_SHIPPER_POLL_INTERVAL": "0.05"}
    base.update({f"OSLOSCOPE_{k.upper()}": str(v) for k, v in env.items()})
    return load(None, env=base)


class Clock:
    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def docs_of(out: io.BytesIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_incident_appears_while_lines_are_appended(tmp_path):
    host = tmp_path / "compute"
    host.mkdir()
    log = host / "nova-compute.log"
    log.write_bytes(b"")
    out = tmp_path / "out.jsonl"       # our output and dead letters inside the watched directory:
    stop, ready = threading.Event(), threading.Event()   # they must not be read back
    result = {}
    with open(out, "wb") as fh:
        th = threading.Thread(target=lambda: result.update(watch(
            [str(tmp_path)], settings(worker_idle_flush=0.5), out=fh, stop_event=stop, ready=ready,
            dead_letter=str(tmp_path / "dl.jsonl"), log=lambda m: None)))
        th.start()
        try:
            assert ready.wait(10)
            with open(log, "ab", buffering=0) as w:
                for line in S04:                      # a writer adding one line at a time
                    w.write(line)
                    time.sleep(0.03)

            def disk_full():
                return [d for d in map(json.loads, out.read_bytes().splitlines()) if d["type"] == "disk_full"]
            assert wait_for(disk_full)
        finally:
            stop.set()
            th.join(10)
    (doc,) = [d for d in map(json.loads, out.read_bytes().splitlines()) if d["type"] == "disk_full"]
    assert doc["status"] == "open" and doc["host"] == "compute" and doc["service"] == "nova-compute"
    assert doc["details"]["filesystem"] == "/var/lib/nova/instances"
    assert result["lines"] == len(S04) and result["unparsed"] == 0
    assert not (tmp_path / "dl.jsonl").exists()


def test_the_last_record_of_an_idle_stream_is_flushed_without_a_following_line(tmp_path):
    log = tmp_path / "nova-manage.log"
    log.write_bytes(b"")
    clock, out = Clock(), io.BytesIO()
    w = Watcher([str(log)], settings(), out=out, host="controller-9", clock=clock, wall=lambda: 0.0,
                log=lambda m: None)
    w.step()
    with open(log, "ab") as fh:
        fh.write(S16)                  # one CRITICAL record and its traceback; nothing after it
    w.step()
    assert docs_of(out) == []          # the record may still grow
    clock.t += 4.9
    w.step()
    assert docs_of(out) == []
    clock.t += 0.2                     # idle_flush (5 s) without a line: the record is complete
    w.step()
    (doc,) = docs_of(out)
    assert doc["type"] == "auth_failure" and doc["host"] == "controller-9" and doc["status"] == "open"
    assert "nova_api" in json.dumps(doc["evidence"])
    w.close()


def test_a_replayed_file_is_complete_at_once(tmp_path):
    (tmp_path / "controller").mkdir()
    log = tmp_path / "controller" / "nova-manage.log"
    log.write_bytes(S16)
    os.utime(log, (1_500_000_000, 1_500_000_000))
    out = io.BytesIO()
    w = Watcher([str(tmp_path)], settings(), out=out, from_start=True, clock=Clock(), log=lambda m: None)
    w.step()                           # read to its end, unmodified for long: no idle wait
    assert [d["type"] for d in docs_of(out)] == ["auth_failure"]
    w.close()


def test_idle_time_advances_the_watermark_but_resolves_nothing_early(tmp_path):
    log = tmp_path / "nova-compute.log"
    log.write_bytes(b"")
    clock, out = Clock(), io.BytesIO()
    w = Watcher([str(log)], settings(), out=out, host="compute-3", clock=clock, wall=lambda: 0.0,
                log=lambda m: None)
    w.step()
    with open(log, "ab") as fh:
        fh.writelines(S04)
    w.step()
    clock.t += 6
    w.step()                           # the last record flushed
    opened = docs_of(out)
    assert [(d["type"], d["status"]) for d in opened] == [("disk_full", "open")]
    wm = w.event_wm
    assert wm is not None and wm < 1.6e9       # log time (2017), not the wall clock
    for _ in range(100):               # 1000 s of idle: less than disk_full's 1800 s quiet period
        clock.t += 10
        w.step()
    assert w.engine.watermark == pytest.approx(wm + 1000, abs=1)
    assert [d["status"] for d in docs_of(out)] == ["open"]
    clock.t += 900                     # quiet for more than 30 minutes of log time: resolved
    w.step()
    assert [d["status"] for d in docs_of(out)] == ["open", "resolved"]
    w.close()


def test_events_move_time_and_the_timer_waits_for_silence(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    clock, out = Clock(), io.BytesIO()
    w = Watcher([str(log)], settings(), out=out, clock=clock, wall=lambda: 0.0, log=lambda m: None)
    w.step()
    with open(log, "ab") as fh:
        fh.write(b"2017-06-06 10:00:00.000 1 INFO nova.compute.manager [-] one\n"
                 b"2017-06-06 10:00:05.000 1 INFO nova.compute.manager [-] two\n")
    w.step()
    first = w.engine.watermark
    clock.t += 0.5
    w.step()                           # idle for less than a tick: no timer advance
    assert w.engine.watermark == first
    clock.t += 1.0
    w.step()
    assert w.engine.watermark == pytest.approx(first + 1.5)
    w.close()


def test_table_format_dead_letters_and_index_sink(tmp_path):
    log = tmp_path / "nova-compute.log"
    log.write_bytes(b"")
    clock, out = Clock(), io.StringIO()

    class Sink:
        def __init__(self):
            self.events, self.incidents, self.closed = [], [], False

        def add(self, events, incidents):
            self.events.extend(events)
            self.incidents.extend(incidents)

        def close(self):
            self.closed = True

    sink = Sink()
    dl = tmp_path / "dead.jsonl"
    w = Watcher([str(log)], settings(), out=out, fmt="table", host="cmp", clock=clock, wall=lambda: 0.0,
                dead_letter=str(dl), index_sink=sink, log=lambda m: None)
    w.step()
    with open(log, "ab") as fh:
        fh.write(b"\x00\xffgarbage that fits no record\n")
        fh.writelines(S04)
    w.step()
    clock.t += 6
    w.step()
    w.close()
    text = out.getvalue().splitlines()
    assert text[0].split()[:3] == ["SEVERITY", "TYPE", "HOST"]
    assert text[1].split()[:3] == ["critical", "disk_full", "cmp"]
    assert any(line.strip().startswith("fix:") for line in text)
    assert sum(line.startswith("SEVERITY") for line in text) == 1
    (dead,) = [json.loads(x) for x in dl.read_text().splitlines()]
    assert dead["offset"] == 0 and "garbage" in dead["raw"]
    assert sink.closed and [d["type"] for d in sink.incidents] == ["disk_full"]
    assert sink.events and all(ev.kind != "unparsed" for ev in sink.events)


def test_watch_imports_no_streaming_library():
    code = ("import sys, pipeline.local.watch, pipeline.cli.watch, pipeline.sources.tail, pipeline.streaming.ship; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('kafka', 'aiokafka', 'faust', 'elasticsearch')]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
