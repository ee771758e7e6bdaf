"""Two ``osloscope notify`` processes side by side (issue 14): one is active, the other stands by;
the active one is SIGKILLed mid-stream and the standby takes over with its state (groups, incident
versions, pending notifications) from the state topic. Every incident is notified, none twice
under different Idempotency-Keys, and a key is only ever repeated with the same body (the one
notification in flight at the kill may come again: delivery is at least once, deduplicable).

Real Kafka (the shared test broker, a three-partition incidents topic), a real HTTP receiver on
loopback. The logic of state records and restore is unit-tested in tests/alerting/test_ha.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

pytest.importorskip("kafka")

from kafka import KafkaProducer  # noqa: E402

from alerting.notify_support import Hook  # noqa: E402  (tests/ is on sys.path)
from processes import OSLOSCOPE, Process  # noqa: E402
from test_notify_kafka import make_topic  # noqa: E402

pytestmark = pytest.mark.integration

INCIDENTS = 40
STEP = 0.15                 # seconds between two incidents opening
GROUP_WAIT = 1.5
# seconds from an incident's open document to its resolved one: even incidents resolve within
# group_wait (only the active's state knows them until their group is flushed), odd ones after
# their firing notification
RESOLVE_AFTER = {0: 0.6, 1: 4.0}
RECEIVER_DELAY = 0.1        # the receiver answers slowly: notifications wait in the outbox


def incident(n: int, status: str) -> dict:
    host = f"compute-{n:02d}"                       # a group of its own per incident
    first = f"2024-05-01T12:{n:02d}:00.000+00:00"
    return {"id": hashlib.sha1(f"ha-{n}".encode()).hexdigest()[:24], "type": "disk_full",
            "rule": "disk_full.enospc", "severity": "critical", "status": status,
            "title": f"Disk full on {host}", "summary": f"ENOSPC on {host}",
            "host": host, "hosts": [host], "service": "nova-compute", "services": ["nova-compute"],
            "first_seen": first,
            "last_seen": first if status == "open" else f"2024-05-01T12:{n:02d}:30.000+00:00",
            "count": 1 if status == "open" else 2,
            "resources": {"instance": [], "volume": [], "image": [], "user": [], "source_ip": [],
                          "path": []},
            "request_ids": [], "details": {}, "evidence": [],
            "probable_cause": "The filesystem is full.", "remediation": "Free space."}


def role(proc: Process) -> str | None:
    """'active' or 'standby' as the last such line of its log says, None before either."""
    last = None
    for line in proc.tail(200_000).splitlines():
        if "notify: active for partitions" in line:
            last = "active"
        elif "notify: standby" in line or "no longer the active notifier" in line:
            last = "standby"
    return last


def wait(what: str, cond, timeout: float, *procs: Process) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            assert not p.exited(), f"{p.name} exited with {p.proc.returncode}:\n{p.tail()}"
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s:\n" + \
            "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
        time.sleep(0.1)


@pytest.fixture
def incidents_topic_3(services_up, names):
    yield from make_topic(services_up["bootstrap"], names, 3)


def test_two_notifiers_one_killed_mid_stream_every_incident_once(
        services_up, names, settings_env, incidents_topic_3, tmp_path):
    t_start = time.monotonic()
    hook = Hook(delay=RECEIVER_DELAY)
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text(f"""
[notify]
group_wait = {GROUP_WAIT}
group_interval = 1.0

[[notify.receivers]]
name = "hook"
url = "{hook.url}"
style = "json"
""")
    env = {**os.environ, **settings_env, "OSLOSCOPE_WORKER_SESSION_TIMEOUT": "6"}
    procs = {}
    for name in ("a", "b"):
        procs[name] = Process(OSLOSCOPE + ["notify", "--config", str(cfg)], tmp_path / f"notify-{name}.log",
                              env={**env, "OSLOSCOPE_NOTIFY_STATE_DIR": str(tmp_path / f"state-{name}")},
                              stop_timeout=30.0, name=f"notify-{name}")
    a, b = procs["a"], procs["b"]
    producer = KafkaProducer(bootstrap_servers=services_up["bootstrap"], acks="all")
    try:
        a.start()
        wait("notify-a active", lambda: role(a) == "active", 60, a)
        b.start()
        wait("notify-b standing by next to an active notify-a",
             lambda: role(b) == "standby" and role(a) == "active", 60, a, b)

        def produce() -> None:
            plan = sorted([(n * STEP, n, "open") for n in range(INCIDENTS)] +
                          [(n * STEP + RESOLVE_AFTER[n % 2], n, "resolved") for n in range(INCIDENTS)])
            t0 = time.monotonic()
            for at, n, status in plan:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                d = incident(n, status)
                producer.send(names.incidents, key=d["id"].encode(), value=json.dumps(d).encode())
            producer.flush(30)

        feeder = threading.Thread(target=produce, daemon=True)
        feeder.start()
        wait("a quarter of the notifications", lambda: len(hook.snapshot()) >= INCIDENTS // 4, 60, a, b)
        active, standby = (a, b) if role(a) == "active" else (b, a)
        assert role(standby) == "standby"
        active.kill()                                   # SIGKILL: no goodbye to the group
        killed_at = time.monotonic()
        feeder.join(60)
        assert not feeder.is_alive()

        resolved_ids = {incident(n, "resolved")["id"] for n in range(INCIDENTS)}

        def notified_resolved() -> set:
            return {d["id"] for r in hook.snapshot() for d in json.loads(r["body"])["incidents"]
                    if d["status"] == "resolved"}

        wait("every incident notified as resolved", lambda: notified_resolved() >= resolved_ids,
             90, standby)
        assert role(standby) == "active"
        active.start()                                  # back: it stands by, the survivor stays
        wait(f"{active.name} back as a standby", lambda: role(active) == "standby", 60, active, standby)
        count = len(hook.snapshot())
        time.sleep(3)                                   # three group intervals: nothing more
        assert role(standby) == "active" and role(active) == "standby"
        assert len(hook.snapshot()) == count
    finally:
        producer.close()
        rcs = {p.name: p.stop() for p in (a, b)}
        hook.close()
    assert rcs == {"notify-a": 0, "notify-b": 0}, a.tail() + b.tail()

    requests = [(r["at"], r["headers"]["Idempotency-Key"], r["body"]) for r in hook.snapshot()]
    bodies: dict[str, bytes] = {}
    for _t, key, body in requests:
        assert bodies.setdefault(key, body) == body, f"Idempotency-Key {key} reused for another body"
    repeats = len(requests) - len(bodies)
    per_incident: dict[tuple[str, str], set] = {}
    for key, body in bodies.items():
        for d in json.loads(body)["incidents"]:
            per_incident.setdefault((d["id"], d["status"]), set()).add(key)
    for n in range(INCIDENTS):
        iid = incident(n, "open")["id"]
        assert len(per_incident.get((iid, "resolved"), ())) == 1, f"incident {n} resolved: " \
            f"{len(per_incident.get((iid, 'resolved'), ()))} notification(s)"
        assert len(per_incident.get((iid, "open"), ())) <= 1, f"incident {n} notified open twice"
    assert repeats <= 1, f"{repeats} notifications re-sent after the take-over (at most the one in flight)"
    after = [t for t, _k, _b in requests if t > killed_at]
    assert after, "the standby delivered nothing after the take-over"
    print(f"\nHA notify: {len(bodies)} notification(s), {repeats} re-sent with the same key, "
          f"first delivery {after[0] - killed_at:.1f} s after the SIGKILL, test {time.monotonic() - t_start:.0f} s")
    assert time.monotonic() - t_start < 120


def test_state_log_fences_the_previous_active_and_keeps_large_values_whole(services_up, names):
    """The state topic itself: a notifier that opens it fences the one that had it (its next
    write fails, its open transaction is aborted and never read), values larger than a Kafka
    message are written in chunks and read back whole, and deleted keys stay deleted."""
    from dataclasses import replace

    from kafka import KafkaAdminClient

    from pipeline.settings import KafkaSettings, Settings, WorkerSettings
    from pipeline.streaming.notify_state import CHUNK, StateLog, StateLogFenced

    settings = replace(Settings(), kafka=KafkaSettings(bootstrap=services_up["bootstrap"]),
                       worker=WorkerSettings(app_id=names.app_id))
    first, second = StateLog(settings), StateLog(settings)
    try:
        assert first.ensure_topic() == "created" and second.ensure_topic() == "exists"
        first.open()
        big = os.urandom(CHUNK).hex().encode() + b"tail"             # two chunks and a bit
        first.write([(b"a", b"1"), (b"big", big), (b"gone", b"x")])
        first.write([(b"gone", None), (b"a", b"2")])
        second.open()                                                 # takes over
        assert second.read() == {b"a": b"2", b"big": big}
        with pytest.raises(StateLogFenced):
            first.write([(b"a", b"zombie")])
        second.write([(b"big", b"small")])                           # its chunks are deleted too
        second.producer.begin_transaction()                           # killed mid-transaction
        second.producer.send(second.topic, key=b"a", value=b"uncommitted", partition=0)
        second.producer.flush()
        third = StateLog(settings)
        third.open()                                                  # aborts that transaction
        assert third.read() == {b"a": b"2", b"big": b"small"}
        third.close()
        from kafka import KafkaConsumer, TopicPartition
        raw = KafkaConsumer(bootstrap_servers=services_up["bootstrap"], isolation_level="read_committed",
                            enable_auto_commit=False)
        tp = TopicPartition(third.topic, 0)
        raw.assign([tp])
        raw.seek_to_beginning(tp)
        end, latest = raw.end_offsets([tp])[tp], {}
        deadline = time.monotonic() + 30
        while raw.position(tp) < end and time.monotonic() < deadline:
            for records in raw.poll(timeout_ms=1000).values():
                latest.update((r.key, r.value) for r in records)
        raw.close()
        chunks = {k: v for k, v in latest.items() if b"\x00#" in k}
        assert len(chunks) == 3 and set(chunks.values()) == {None}    # written, then deleted
    finally:
        first.close()
        second.close()
        admin = KafkaAdminClient(bootstrap_servers=services_up["bootstrap"])
        try:
            admin.delete_topics([f"{names.app_id}.state.notify"])
        finally:
            admin.close()
