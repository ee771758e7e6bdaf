"""The state directories on a full filesystem: a small tmpfs (the tests run as root and mount it;
a machine where that is not permitted fails them, it does not skip them), filled to its last byte.

* ``osloscope ship`` with its checkpoint directory on it: it ships on and every line reaches
  the raw topic, it says once (path and ENOSPC, no traceback) that it cannot save its
  checkpoints and leaves no temporary file behind, saves them by itself once the filler is
  deleted, and after a SIGKILL then resumes from the position it saved: nothing is sent twice.
* ``osloscope worker`` with its state directory (faust's datadir) on it, full to the last block
  and inode: it works on, and a restart on the full disk resumes from its committed offsets
  (the stage state lives in Kafka changelog topics: nothing of it needs the disk).
* ``osloscope watch`` with its dead-letter file on it: it goes on detecting, says once that it
  cannot write the dead letters, keeps them and writes every one, once and in order, when
  there is room again.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402
from pipeline_support import (FAST, committed_offsets, counts, es_client, expected,  # noqa: E402
                              load_settings, read_topic, setup_all, wait_drained)
from processes import OSLOSCOPE, Process, wait_for, worker  # noqa: E402

pytestmark = pytest.mark.integration


class SmallFs:
    """A mounted tmpfs of ``size`` bytes (and ``inodes`` inodes, if given)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, *, inodes: bool = False) -> None:
        """Write the filler until the filesystem refuses (ENOSPC); with ``inodes``, then
        create empty files until no inode is left either (a full disk that refuses mkdir)."""
        with open(self.filler, "ab", buffering=0) as fh:
            block = b"\0" * 65536
            try:
                while True:
                    fh.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        n = 0
        while inodes:
            try:
                (self.root / f"inode-{n}").touch()
                n += 1
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        """Space again: the filler (and the inode fillers) deleted."""
        for p in self.root.glob("inode-*"):
            p.unlink()
        self.filler.unlink()


@pytest.fixture
def small_fs(tmp_path):
    root = tmp_path / "small-fs"
    root.mkdir()

    def mount(size: str = "1m", inodes: int | None = None) -> SmallFs:
        opts = f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(root)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {root} (these tests need root and permission to "
                        f"mount: run them as root, in a container with CAP_SYS_ADMIN): "
                        f"{(r.stderr or r.stdout).strip()}")
        mounted.append(root)
        return SmallFs(root)

    mounted: list[Path] = []
    yield mount
    for p in mounted:
        if subprocess.run(["umount", str(p)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(p)], check=True)      # a process still in it


def append_lines(path: Path, n: int, tag: str) -> None:
    """``n`` healthy oslo.log records appended to ``path``, each naming ``tag`` and its number."""
    t = fleet.START + timedelta(minutes=fleet.MINUTES)
    with open(path, "a") as fh:
        for i in range(n):
            fh.write(f"{t + timedelta(milliseconds=10 * i):%Y-%m-%d %H:%M:%S.%f}"[:-3]
                     + f" 2931 INFO nova.compute.manager [-] disk-full probe {tag} line {i}\n")


def lines_on_disk(root: Path) -> dict[tuple[str, int], bytes]:
    """(path, byte offset) -> line without its newline, for every file under ``root``."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        offset = 0
        with open(path, "rb") as fh:
            for line in fh:
                out[(str(path), offset)] = line.rstrip(b"\n")
                offset += len(line)
    return out


def lines_on_topic(settings) -> Counter:
    """(path, offset, line) -> how often the raw topic holds it."""
    return Counter((dict(r.headers)["path"].decode(), int(dict(r.headers)["offset"]), r.value)
                   for r in read_topic(settings, settings.topics.raw))


def said(proc: Process, word: str) -> list[str]:
    """The lines of ``proc``'s output holding ``word``."""
    return [ln for ln in proc.log_path.read_text(errors="replace").splitlines() if word in ln]


def logged(proc: Process, word: str) -> list[str]:
    """Its own log lines (``osloscope ship: ...``, not the incidents it prints) holding ``word``."""
    return [ln for ln in said(proc, word) if ln.startswith("osloscope ")]


def create_raw_topic(settings) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(**settings.kafka.client_kwargs())
    try:
        admin.create_topics([NewTopic(settings.topics.raw, 2, 1)])
    finally:
        admin.close()


# ------------------------------------------------------------------------------ ship

def test_ship_with_its_checkpoints_on_a_full_disk(settings_env, small_fs, tmp_path):
    fs = small_fs("1m")
    logs = tmp_path / "logs"
    fleet.generate(logs)
    checkpoints = fs.root / "ship"
    env = {**settings_env, "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": str(checkpoints),
           "OSLOSCOPE_SHIPPER_POLL_INTERVAL": "0.1"}
    settings = load_settings(env)
    create_raw_topic(settings)
    argv = OSLOSCOPE + ["ship", str(logs), "--from-start", "--layout-hosts", "--stats-interval", "1"]
    fs.fill()
    shipper = Process(argv, tmp_path / "ship.log", env=env, name="osloscope ship").start()
    try:
        # a full disk: every line still goes out, and the shipper says why it cannot save
        wait_for(lambda: logged(shipper, "ENOSPC"), 30, "the shipper to say it cannot save", shipper)
        grown = logs / "compute-1" / "nova" / "nova-compute.log"
        append_lines(grown, 200, "while full")
        want = lines_on_disk(logs)
        wait_for(lambda: set(want) <= {(p, o) for p, o, _v in lines_on_topic(settings)}, 30,
                 "every line on the raw topic while the disk is full", shipper)
        # it tries again every second, and says it once
        wait_for(lambda: logged(shipper, "3 checkpoint save(s) failed"), 30, "three failed saves", shipper)
        assert not (checkpoints / "checkpoints.json").exists()
        leftovers = [p.name for p in checkpoints.iterdir() if p.name != "lock"]
        assert not leftovers, f"files left in the checkpoint directory by failed saves: {leftovers}"

        # room again: the checkpoints are saved by themselves, at the end of every file
        fs.free()

        def saved():
            try:
                files = json.loads((checkpoints / "checkpoints.json").read_bytes())["files"]
            except FileNotFoundError:
                return None
            at = {f["path"]: f["offset"] for f in files}
            return all(at.get(str(p)) == p.stat().st_size for p in logs.rglob("*.log")) or None

        wait_for(saved, 30, "the checkpoints saved at the end of every file once there is room", shipper)
        wait_for(lambda: logged(shipper, "saved again"), 10, "the shipper to say it saves again", shipper)
        shipper.kill()                          # a crash: only the saved position counts now
    finally:
        shipper.stop()
    loud = logged(shipper, "ENOSPC")
    assert len(loud) == 1 and str(checkpoints / "checkpoints.json") in loud[0], loud
    assert not said(shipper, "Traceback"), shipper.tail()
    assert not [p.name for p in checkpoints.iterdir() if p.name not in ("lock", "checkpoints.json")]

    # a restart resumes from the saved position: the new lines go out, nothing twice; the
    # temporary file of a save cut short by a crash is removed (it would hold space)
    append_lines(grown, 100, "after the restart")
    want = lines_on_disk(logs)
    stale = checkpoints / "checkpoints.json.tmp.99999"
    stale.write_bytes(b'{"version": 1, "fi')
    again = Process(argv, tmp_path / "ship-2.log", env=env, name="osloscope ship (restarted)").start()
    try:
        wait_for(lambda: set(want) <= {(p, o) for p, o, _v in lines_on_topic(settings)}, 30,
                 "the lines written while the shipper was down", again)
    finally:
        assert again.stop() == 0, again.tail()
    assert not stale.exists()
    got = lines_on_topic(settings)
    assert {(p, o): v for p, o, v in got} == want
    assert not [k for k, n in got.items() if n > 1], "lines sent twice after the restart"


# ---------------------------------------------------------------------------- worker

def test_worker_with_its_datadir_on_a_full_disk(settings_env, names, small_fs, tmp_path):
    from pipeline.streaming.ship import ship

    fs = small_fs("1m", inodes=64)
    logs = tmp_path / "logs"
    fleet.generate(logs)
    env = {**settings_env, **FAST, "OSLOSCOPE_KAFKA_PARTITIONS": "2",
           "OSLOSCOPE_WORKER_SOURCE_IDLE_TIMEOUT": "3", "OSLOSCOPE_WORKER_SOURCE_WARMUP": "1",
           "OSLOSCOPE_WORKER_STATE_DIR": str(fs.root / "worker")}
    settings = load_settings(env)
    setup_all(settings)
    client = es_client(settings)
    n_events = expected(logs, settings=settings)[1]

    # the worker starts with room (its directories are made), then the disk fills up under it
    first = worker(env, tmp_path / "worker-1.log").start()
    try:
        wait_for(lambda: said(first, "Worker]: Ready"), 60, "the worker to start", first)
        fs.fill(inodes=True)                # no block and no inode left
        stats = ship([str(logs)], settings, from_start=True, once=True, layout_hosts=True,
                     log=lambda _m: None)
        assert stats["error"] is None and stats["lines"] == stats["acked"] > 0
        wait_for(lambda: any(c for c, _end in committed_offsets(settings, settings.topics.raw).values()),
                 60, "the worker to commit raw records on the full disk", first)
        assert first.stop() == 0, first.tail()
    finally:
        first.stop()

    # a restart on the full disk resumes from the committed offsets and the saved stage state
    second = worker(env, tmp_path / "worker-2.log").start()
    try:
        wait_for(lambda: counts(client, settings)[0] >= n_events, 60,
                 "every record indexed after a restart on the full disk", second)
        wait_drained(settings, second, timeout=60)
        assert counts(client, settings)[0] == n_events
    finally:
        assert second.stop() == 0, second.tail()
    assert os.statvfs(fs.root).f_bavail == 0 and os.statvfs(fs.root).f_favail == 0
    assert not said(first, "Traceback") and not said(second, "Traceback")

    # a first start where not even the directory can be made: it says so and waits for room
    third = worker({**env, "OSLOSCOPE_WORKER_STATE_DIR": str(fs.root / "new")}, tmp_path / "worker-3.log").start()
    try:
        wait_for(lambda: said(third, "cannot create the worker's directory"), 60,
                 "the worker to say its directory cannot be made", third)
        assert not third.exited() and "No space left on device" in said(third, "cannot create")[0]
        fs.free()
        wait_for(lambda: said(third, "Worker]: Ready"), 60, "the worker to start once there is room", third)
    finally:
        assert third.stop() == 0, third.tail()
    assert not said(third, "Traceback")


# ----------------------------------------------------------------------------- watch

def test_watch_with_its_dead_letters_on_a_full_disk(small_fs, tmp_path):
    fs = small_fs("1m")
    logs = tmp_path / "logs"
    fleet.generate(logs)
    junk = logs / "compute-9" / "nova" / "nova-compute.log"
    junk.parent.mkdir(parents=True)
    junk.write_text("".join(f'{{"garbage": {i}}}\n' for i in range(50)))
    dead = fs.root / "deadletter.jsonl"
    fs.fill()
    env = {"OSLOSCOPE_SHIPPER_POLL_INTERVAL": "0.1"}
    w = Process(OSLOSCOPE + ["watch", str(logs), "--from-start", "--format", "jsonl", "--dead-letter",
                             str(dead)], tmp_path / "watch.log", env=env, name="osloscope watch").start()
    try:
        wait_for(lambda: logged(w, "ENOSPC"), 30, "watch to say it cannot write the dead letters", w)
        # it goes on: more garbage, then an incident, are taken in while the disk is full
        with open(junk, "a") as fh:
            fh.write("".join(f'{{"garbage": {i}}}\n' for i in range(50, 80)))
            fh.write(f"{fleet.START:%Y-%m-%d %H:%M:%S}.003 2511 ERROR nova.image.glance [-] Error writing to "
                     "/var/lib/nova/instances/_base/3f78.part: [Errno 28] No space left on device\n"
                     f"{fleet.START:%Y-%m-%d %H:%M:%S}.004 2511 INFO nova.compute.manager [-] next record\n")
        wait_for(lambda: said(w, '"type":"disk_full"'), 30, "the incident after the garbage", w)
        assert not dead.exists() or dead.stat().st_size == 0
        fs.free()

        def written():
            try:
                return sum(1 for _ in open(dead, "rb")) >= 80 or None
            except FileNotFoundError:
                return None

        wait_for(written, 30, "every dead letter written once there is room", w)
        wait_for(lambda: logged(w, "written again"), 10, "watch to say it writes them again", w)
    finally:
        rc = w.stop()
    assert rc == 0, w.tail()
    letters = [json.loads(ln) for ln in dead.read_bytes().splitlines()]
    assert [(d["file"], d["raw"]) for d in letters] == [(str(junk), f'{{"garbage": {i}}}') for i in range(80)]
    loud = logged(w, "ENOSPC")
    assert len(loud) == 1 and str(dead) in loud[0], loud
    assert not said(w, "Traceback"), w.tail()
