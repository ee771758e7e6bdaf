"""Faults of ``osloscope notify`` (issue 17): the notifier SIGKILLed while a POST is in flight
and started again, started late on a topic that already holds incidents (some resolved), and
its ``notify.state_dir`` on a full filesystem. Each test asserts that every incident is
notified: delivery is at least once, a re-sent notification keeps its Idempotency-Key, and
nothing is taken as delivered that no receiver answered.

Real Kafka (the shared test broker, one incidents topic per test), ``osloscope notify`` as a
process, the recording receiver of tests/alerting/notify_support.py. The full filesystem is a
small tmpfs mounted by the test (root needed; a mount that is refused fails the test).
Two notifiers side by side: test_notify_ha.py.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("kafka")

from alerting.notify_support import Hook  # noqa: E402  (tests/ is on sys.path)
from processes import OSLOSCOPE, Process, wait_for  # noqa: E402
from test_notify_ha import incident  # noqa: E402  (one host, so one group, per incident)
from test_notify_kafka import make_topic, produce  # noqa: E402

pytestmark = pytest.mark.integration

LOUD = "ERROR osloscope.notify: notify: cannot write the notifier state in"


@pytest.fixture
def incidents_topic(services_up, names):
    yield from make_topic(services_up["bootstrap"], names, 1)


def setup_notify(tmp_path: Path, settings_env: dict, hook: Hook, state_dir: Path):
    """The settings file and environment of one ``osloscope notify`` with ``hook`` as receiver."""
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text(f"""
[notify]
group_wait = 0.3
group_interval = 1.0

[[notify.receivers]]
name = "hook"
url = "{hook.url}"
style = "json"
timeout = 30.0
""")
    env = {**settings_env, "OSLOSCOPE_NOTIFY_STATE_DIR": str(state_dir),
           "OSLOSCOPE_WORKER_SESSION_TIMEOUT": "6"}           # a killed notifier's group seat
    return cfg, env


def notify(cfg: Path, env: dict, log: Path) -> Process:
    return Process(OSLOSCOPE + ["notify", "--config", str(cfg)], log, env=env, stop_timeout=30.0,
                   name="osloscope notify").start()


def versions(requests: list[dict]) -> dict[tuple[str, str], set[str]]:
    """(incident id, status) -> the Idempotency-Keys of the requests that carried it."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in requests:
        for d in json.loads(r["body"])["incidents"]:
            out.setdefault((d["id"], d["status"]), set()).add(r["headers"]["Idempotency-Key"])
    return out


def one_body_per_key(requests: list[dict]) -> None:
    bodies: dict[str, bytes] = {}
    for r in requests:
        key = r["headers"]["Idempotency-Key"]
        assert bodies.setdefault(key, r["body"]) == r["body"], \
            f"Idempotency-Key {key} reused for another body"


def test_killed_mid_post_and_restarted_resends_with_the_same_key(
        services_up, names, settings_env, incidents_topic, tmp_path):
    """SIGKILL while the receiver holds a POST: the restarted notifier sends that notification
    again with its Idempotency-Key (and body), and everything published meanwhile too."""
    hook = Hook()
    cfg, env = setup_notify(tmp_path, settings_env, hook, tmp_path / "notify-state")
    log = tmp_path / "notify.log"
    bootstrap = services_up["bootstrap"]
    first = [incident(n, "open") for n in range(3)]
    later = [incident(3, "open"), incident(4, "open"), incident(0, "resolved")]
    want = {(d["id"], d["status"]) for d in first + later}
    hook.hold()
    produce(bootstrap, incidents_topic, first)
    proc = notify(cfg, env, log)
    try:
        held = wait_for(lambda: hook.snapshot(), 60, "a POST in flight", proc, every=0.1)[0]
        proc.kill()                                          # mid-POST: no 2xx, no bookkeeping
        assert held["held"]
        produce(bootstrap, incidents_topic, later)           # while no notifier runs
        hook.release()                                       # (answers a client that is gone)
        proc = notify(cfg, env, log)
        wait_for(lambda: set(versions(hook.delivered)) >= want, 60,
                 "every incident delivered after the restart", proc, every=0.2)
    finally:
        rc = proc.stop()
        hook.close()
    assert rc == 0, proc.tail()

    requests = hook.snapshot()
    one_body_per_key(requests)
    key = held["headers"]["Idempotency-Key"]
    again = [r for r in hook.delivered if r["headers"]["Idempotency-Key"] == key]
    assert again and again[0]["at"] > held["at"], "the notification in flight was not sent again"
    for version, keys in versions(requests).items():       # a re-send, never a new notification
        assert len(keys) == 1, f"{version}: {len(keys)} Idempotency-Keys"


def test_started_late_delivers_what_the_topic_holds_resolved_as_resolved(
        services_up, names, settings_env, incidents_topic, tmp_path):
    """Incidents published before the notifier starts, some resolved since (with or without
    their open version in the topic), all reach a receiver that fails the first attempt."""
    hook = Hook(statuses=(503,))
    cfg, env = setup_notify(tmp_path, settings_env, hook, tmp_path / "notify-state")
    docs = [incident(10, "open"), incident(11, "open"), incident(11, "resolved"),
            incident(12, "resolved"), incident(13, "open"), incident(14, "open"), incident(14, "resolved")]
    final = {d["id"]: d for d in docs}                  # the newest version of each
    produce(services_up["bootstrap"], incidents_topic, docs)
    proc = notify(cfg, env, tmp_path / "notify.log")
    try:
        wait_for(lambda: set(versions(hook.delivered)) >= {(i, d["status"]) for i, d in final.items()},
                 60, "every incident delivered in its newest status", proc, every=0.2)
    finally:
        rc = proc.stop()
        hook.close()
    assert rc == 0, proc.tail()
    assert hook.snapshot()[0]["status"] == 503
    one_body_per_key(hook.snapshot())
    sent = {(d["id"], d["status"]): d for r in hook.delivered for d in json.loads(r["body"])["incidents"]}
    for iid, d in final.items():
        got = sent[(iid, d["status"])]
        assert (got["first_seen"], got["last_seen"], got["count"]) == \
            (d["first_seen"], d["last_seen"], d["count"])
    assert sum(d["status"] == "resolved" for d in final.values()) == 3


# --- notify.state_dir on a full filesystem ------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    where = tmp_path / "small-fs"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {where} (the notify full-disk test needs root and "
                    f"mount permission): mount exited {r.returncode}: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


def fill(fs: Path) -> Path:
    """A file taking every free block of ``fs``."""
    path = fs / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) == 0:
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0
    return path


def test_state_dir_on_a_full_disk_waits_loudly_then_delivers_everything(
        services_up, names, settings_env, incidents_topic, tmp_path, small_fs):
    """Full before the start (the state file cannot even be created), then full again while
    running: no exit, an error line while it lasts, nothing sent or acknowledged that is not
    stored, and everything delivered by the same process once the filler file is deleted."""
    hook = Hook()
    state_dir = small_fs / "notify"
    cfg, env = setup_notify(tmp_path, settings_env, hook, state_dir)
    log = tmp_path / "notify.log"
    bootstrap = services_up["bootstrap"]
    before = [incident(20, "open"), incident(21, "open"), incident(21, "resolved")]   # [::2]: newest
    during = [incident(22, "open"), incident(23, "open"), incident(20, "resolved")]
    filler = fill(small_fs)
    produce(bootstrap, incidents_topic, before)
    proc = notify(cfg, env, log)
    loud = lambda: log.read_text().count(LOUD)      # noqa: E731
    try:
        wait_for(loud, 60, "an error about the full state_dir", proc, every=0.2)
        assert hook.snapshot() == []
        filler.unlink()
        wait_for(lambda: set(versions(hook.delivered)) >= {(d["id"], d["status"]) for d in before[::2]},
                 60, "the incidents published before the start delivered", proc, every=0.2)

        filler = fill(small_fs)                     # full while running
        errors, sent = loud(), len(hook.snapshot())
        produce(bootstrap, incidents_topic, during)
        wait_for(lambda: loud() > errors, 30, "an error about the full state_dir again", proc, every=0.2)
        assert len(hook.snapshot()) == sent, "sent a notification it could not store"
        filler.unlink()
        wait_for(lambda: set(versions(hook.delivered)) >= {(d["id"], d["status"]) for d in during},
                 60, "the incidents published while the disk was full delivered", proc, every=0.2)
        assert not proc.exited()
    finally:
        rc = proc.stop()
        hook.close()
    assert rc == 0, proc.tail()

    requests = hook.snapshot()
    one_body_per_key(requests)
    for version, keys in versions(requests).items():
        assert len(keys) == 1, f"{version}: {len(keys)} Idempotency-Keys"
    answered = {r["headers"]["Idempotency-Key"] for r in hook.delivered}
    db = sqlite3.connect(f"file:{state_dir / 'notify.sqlite3'}?mode=ro", uri=True)
    try:
        outbox = dict(db.execute("SELECT idempotency_key, status FROM outbox").fetchall())
    finally:
        db.close()
    delivered = {k for k, status in outbox.items() if status == "delivered"}
    assert delivered <= answered, f"marked delivered, never answered 2xx: {delivered - answered}"
    assert "pending" not in outbox.values()
