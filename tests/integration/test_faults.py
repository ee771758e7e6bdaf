"""Faults the pipeline must come through, on Kafka and Elasticsearch of this module's own.

The module starts its own Kafka and Elasticsearch (``OSLOSCOPE_IT_FAULTS_HOME``, default
/tmp/osloscope-it-faults; ports ``OSLOSCOPE_IT_FAULTS_KAFKA_PORT`` 19092, ``..._CONTROLLER_PORT``
19093, ``..._ES_PORT`` 19200) and stops them at the end, because its tests freeze Elasticsearch
(SIGSTOP) and restart Kafka: the shared test services are never touched. The ports are below
Linux's ephemeral range (32768-60999): while Kafka is down, the worker's reconnecting clients
could otherwise be given its port as their own local port and keep it from starting again.

Each test ships the seven-host fleet of tests/fleet.py (plus healthy filler for volume where a
fault must hit mid-stream) as a shipper would, puts a fault in the way, and asserts that every
record is indexed exactly once (or dead-lettered with a reason) and that the incidents in
Elasticsearch are the ones ``osloscope analyze`` finds in the same files:

* the consumer-lag metric after a drained restart and a rebalance;
* Elasticsearch frozen and resumed: the slow sink is logged and measured, and the parse stage's
  timer goes on releasing events and incidents meanwhile;
* Kafka restarted mid-stream;
* the worker SIGKILLed three times, in three phases (parsing, holding, indexing);
* a state save refused by Kafka: the worker exits 70 with nothing acknowledged past its saved
  state, and after the fault is removed a restart loses nothing;
* an event too large for its topic: dead-lettered with the reason, the stage goes on.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402
from pipeline_support import (FAST, committed_offsets, counts, es_client, expected, filler,  # noqa: E402
                              free_port, load_settings, produce, read_topic, setup_all,
                              wait_drained, wait_for_analyze)
from processes import wait_for, worker  # noqa: E402
from support import raw_messages  # noqa: E402

from pipeline import codec  # noqa: E402
from pipeline.operations import services  # noqa: E402
from pipeline.streaming.changelog import Changelog, topic_name  # noqa: E402
from pipeline.streaming.stage import STATE_VERSION  # noqa: E402

pytestmark = pytest.mark.integration

HOME = Path(os.environ.get("OSLOSCOPE_IT_FAULTS_HOME", "/tmp/osloscope-it-faults"))
KAFKA_PORT = int(os.environ.get("OSLOSCOPE_IT_FAULTS_KAFKA_PORT", "19092"))
CONTROLLER_PORT = int(os.environ.get("OSLOSCOPE_IT_FAULTS_KAFKA_CONTROLLER_PORT", "19093"))
ES_PORT = int(os.environ.get("OSLOSCOPE_IT_FAULTS_ES_PORT", "19200"))
FILLER = 8_000           # healthy records added where a fault must hit mid-stream


def _up(which=services.SERVICES) -> dict:
    return services.up(HOME, kafka_port=KAFKA_PORT, kafka_controller_port=CONTROLLER_PORT, es_port=ES_PORT,
                       which=which, log=lambda m: print(f"[faults] {m}", file=sys.stderr))


@pytest.fixture(scope="module")
def services_up():
    """This module's own Kafka and Elasticsearch (overrides conftest's shared ones: the
    tests here freeze and restart them). Stopped at the end."""
    _up()
    yield {"bootstrap": f"127.0.0.1:{KAFKA_PORT}", "es_url": f"http://127.0.0.1:{ES_PORT}"}
    if os.environ.get("OSLOSCOPE_IT_FAULTS_KEEP") != "1":
        services.down(HOME, log=lambda m: print(f"[faults] {m}", file=sys.stderr))


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> tuple[Path, Path]:
    """The fleet on two consecutive days, in two roots."""
    root = tmp_path_factory.mktemp("fleet-days")
    fleet.generate(root / "day1")
    fleet.generate(root / "day2", start=fleet.START + timedelta(days=1))
    return root / "day1", root / "day2"


@pytest.fixture(scope="module")
def busy_fleet(tmp_path_factory) -> Path:
    """The fleet plus one host logging healthy filler records throughout (volume)."""
    root = tmp_path_factory.mktemp("busy-fleet")
    fleet.generate(root)
    filler(root / "compute-9" / "nova" / "nova-compute.log", FILLER, fleet.START, fleet.MINUTES * 60)
    return root


def _env(settings_env, partitions: int, **extra) -> dict:
    # batches of 1000: the state is saved after every batch, and a restore reads the
    # changelog's history (not compacted yet in a test's few minutes)
    return {**settings_env, **FAST, "OSLOSCOPE_KAFKA_PARTITIONS": str(partitions),
            "OSLOSCOPE_WORKER_BATCH_SIZE": "1000", **{k: str(v) for k, v in extra.items()}}


def _start(settings_env, partitions: int, roots, **extra):
    """Topics, templates and the raw records; the settings, what analyze finds, the records."""
    env = _env(settings_env, partitions, **extra)
    settings = load_settings(env)
    setup_all(settings)
    return env, settings, expected(*roots), fleet.orders(raw_messages(list(roots)))["all hosts at once"]


def _metrics(port: int) -> dict[str, float]:
    """The worker's /metrics as {'name{labels}': value}; {} while it does not answer."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _lag(port: int) -> dict[str, float]:
    return {k: v for k, v in _metrics(port).items() if k.startswith("osloscope_consumer_lag{")}


def _events_on_topic(settings) -> int:
    """Distinct events on the events topic (watermark markers left out)."""
    from pipeline.streaming.stage import MARKER_HEADER

    return len({codec.loads(r.value)["_id"] for r in read_topic(settings, settings.topics.events)
                if MARKER_HEADER not in {k for k, _v in r.headers or ()}})


def _es_pid() -> int:
    report = services.status(HOME)["elasticsearch"]
    assert report["running"] and report["port"] == ES_PORT, report
    return report["pid"]


@contextmanager
def _frozen_elasticsearch():
    """SIGSTOP this module's Elasticsearch (never another one); SIGCONT on the way out."""
    pid = _es_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def _topic_config(settings, topic: str, configs: dict | None) -> None:
    """Set (``configs``) or remove again (None) per-topic overrides of ``max.message.bytes``."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(**settings.kafka.client_kwargs())
    try:
        if configs is None:
            admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})])
        else:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        admin.close()


def _stop_all(*procs) -> None:
    for p in procs:
        if p is not None and not p.exited():
            p.stop()


# -- the consumer-lag metric ------------------------------------------------------------------

def test_lag_is_zero_after_a_drained_restart_and_follows_the_assignment(settings_env, tmp_path, days):
    env, settings, want, msgs = _start(settings_env, 2, days[:1])
    produce(settings, msgs)
    client = es_client(settings)
    port_a, port_b = free_port(), free_port()
    a = worker({**env, "OSLOSCOPE_WORKER_METRICS_PORT": str(port_a)}, tmp_path / "a.log").start()
    b = None
    try:
        wait_for_analyze(client, settings, want, 150, "the fleet indexed", a)
        wait_drained(settings, a)
        assert a.stop() == 0, a.tail()
        # restarted with nothing new to read: every assigned partition has lag 0 (not its size;
        # the restored parse state sends a watermark marker or two, consumed at once)
        a = worker({**env, "OSLOSCOPE_WORKER_METRICS_PORT": str(port_a)}, tmp_path / "a2.log").start()
        all_six = {f'osloscope_consumer_lag{{topic="{topic}",partition="{n}"}}'
                   for topic in (settings.topics.raw, settings.topics.events, settings.topics.incidents)
                   for n in range(2)}
        seen: list = [None]

        def six_at_zero():
            seen[0] = _lag(port_a)
            return set(seen[0]) == all_six and set(seen[0].values()) == {0.0}

        try:
            wait_for(six_at_zero, 60, "the restarted worker's lag: 0 on all six partitions", a)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast lag: {seen[0]}") from None
        # a second worker: each reports the partitions it owns now, and only those
        b = worker({**env, "OSLOSCOPE_WORKER_METRICS_PORT": str(port_b)}, tmp_path / "b.log").start()

        def shared():
            la, lb = seen[0] = _lag(port_a), _lag(port_b)
            return (la and lb and not set(la) & set(lb) and set(la) | set(lb) == all_six
                    and set(la.values()) | set(lb.values()) == {0.0})

        try:
            wait_for(shared, 90, "the two workers' lag series to split the partitions, all at 0", a, b)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast lag of each: {seen[0]}") from None
    finally:
        _stop_all(a, b)


# -- Elasticsearch frozen -----------------------------------------------------------------------

def test_elasticsearch_frozen_is_logged_measured_and_holds_up_no_other_stage(settings_env, tmp_path, days):
    """While Elasticsearch is frozen the correlate stage waits on it (logged as slow, shown on
    /metrics); the parse stage and its timer go on: the second day, shipped during the freeze,
    is released (its sources went quiet: a timer's work) onto the events topic, and its
    host-scoped incidents (compute-3 going silent) reach the incidents topic. Resumed,
    everything is indexed once and the incidents are analyze's."""
    port = free_port()
    env, settings, want, _ = _start(settings_env, 3, days, OSLOSCOPE_WORKER_METRICS_PORT=port,
                                    OSLOSCOPE_ES_REQUEST_TIMEOUT=4, OSLOSCOPE_ES_SLOW_REQUEST=1)
    day1 = fleet.orders(raw_messages([days[0]]))["all hosts at once"]
    day2 = fleet.orders(raw_messages([days[1]]))["all hosts at once"]
    # host-scoped incidents come from the parse stage (the README's detector table)
    day2_host = {i for i, (kind, _n) in expected(days[1])[0].items() if kind in ("service_silent", "disk_full")}
    assert day2_host and not day2_host & set(expected(days[0])[0])
    client = es_client(settings)
    w = worker(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: _metrics(port) or None, 60, "the worker's /metrics", w)
        with _frozen_elasticsearch():
            produce(settings, day1)
            # day 1 is released and the correlate stage's bulk request hangs: logged, measured
            wait_for(lambda: _metrics(port).get('osloscope_sink_inflight_seconds{sink="elasticsearch"}', 0) >= 2
                     and "has not taken a batch of" in w.tail(200_000), 90,
                     "the hung bulk request to be logged and measured", w)
            runs = _metrics(port)['osloscope_timer_runs_total{timer="parse"}']
            produce(settings, day2)
            wait_for(lambda: _events_on_topic(settings) == want[1], 90,
                     "both days' events on the events topic while Elasticsearch is frozen", w)
            wait_for(lambda: day2_host <= {bytes(r.key).decode() for r in read_topic(settings, settings.topics.incidents)},
                     30, "day 2's host-scoped incidents on the incidents topic while Elasticsearch is frozen", w)
            m = _metrics(port)
            assert m['osloscope_timer_runs_total{timer="parse"}'] >= runs + 5, "the parse timer stalled"
            assert m['osloscope_sink_inflight_seconds{sink="elasticsearch"}'] >= 5, m
            assert m['osloscope_sink_inflight_requests{sink="elasticsearch"}'] >= 1, m
            assert m.get('osloscope_sink_requests_total{sink="elasticsearch",outcome="timeout"}', 0) >= 1, m
            log = w.tail(500_000)
            assert "did not answer a bulk request" in log and "within 4 s (elasticsearch.request_timeout)" in log
        wait_for_analyze(client, settings, want, 240, "everything indexed after the freeze", w)
        wait_drained(settings, w)
        wait_for_analyze(client, settings, want, 5, "nothing more after the drain", w)
        m = _metrics(port)
        assert m['osloscope_sink_inflight_seconds{sink="elasticsearch"}'] == 0
        assert m['osloscope_sink_slow_requests_total{sink="elasticsearch"}'] >= 1
    finally:
        _stop_all(w)
    assert w.proc.returncode == 0, w.tail()


# -- Kafka restarted ------------------------------------------------------------------------------

def test_kafka_restarted_mid_stream_loses_and_duplicates_nothing(settings_env, tmp_path, busy_fleet):
    env, settings, want, msgs = _start(settings_env, 3, [busy_fleet])
    produce(settings, msgs)
    client = es_client(settings)
    w = worker(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: counts(client, settings)[0] >= want[1] // 5 or None, 180,
                 "a fifth of the events indexed", w, every=0.2)
        assert counts(client, settings)[0] < want[1], "indexing ended before Kafka could be restarted"
        services.down(HOME, which=("kafka",), log=lambda _m: None)
        time.sleep(3)
        _up(which=("kafka",))
        wait_for_analyze(client, settings, want, 240, "everything indexed after the Kafka restart", w)
        wait_drained(settings, w, timeout=120)
        wait_for_analyze(client, settings, want, 5, "nothing more after the drain", w)
    finally:
        _stop_all(w)


# -- the worker SIGKILLed ---------------------------------------------------------------------------

def test_worker_sigkilled_in_three_phases_loses_and_duplicates_nothing(settings_env, tmp_path, busy_fleet):
    """Killed early in the backlog, late in it with parsed events held for their turn (they
    are only in the saved state then), and while indexing the second half; each time a new
    worker takes over the partitions."""
    # the shortest session: a killed worker holds its partitions until it times out
    env, settings, want, msgs = _start(settings_env, 3, [busy_fleet], OSLOSCOPE_WORKER_SESSION_TIMEOUT=6)
    produce(settings, msgs)
    client = es_client(settings)
    n = len(msgs)
    ports = [free_port() for _ in range(4)]
    procs = [worker({**env, "OSLOSCOPE_WORKER_METRICS_PORT": str(ports[0])}, tmp_path / "worker-0.log").start()]

    def raw_done() -> int:
        return sum(c for c, _end in committed_offsets(settings, settings.topics.raw).values())

    def held(port: int) -> float:
        return _metrics(port).get('osloscope_event_time{stage="parse",kind="held"}', 0)

    phases = [
        ("early in the backlog", lambda _port: 0 < raw_done() < 2 * n // 3),
        ("late in the backlog, events held", lambda port: n // 2 <= raw_done() and held(port) > 0
         and counts(client, settings)[0] < want[1]),
        ("indexing the second half", lambda _port: want[1] // 2 <= counts(client, settings)[0] < want[1]),
    ]
    try:
        for i, (phase, now) in enumerate(phases):
            wait_for(lambda: now(ports[i]) or None, 180, f"the worker {phase}", procs[-1], every=0.1)
            procs[-1].kill()
            procs.append(worker({**env, "OSLOSCOPE_WORKER_METRICS_PORT": str(ports[i + 1])},
                                tmp_path / f"worker-{i + 1}.log").start())
        wait_for_analyze(client, settings, want, 240, "everything indexed after three SIGKILLs", procs[-1])
        wait_drained(settings, procs[-1])
        wait_for_analyze(client, settings, want, 5, "nothing more after the drain", procs[-1])
    finally:
        _stop_all(*procs)


# -- a state save refused -------------------------------------------------------------------------

def test_failed_state_save_exits_70_unacknowledged_and_a_restart_loses_nothing(settings_env, tmp_path,
                                                                               busy_fleet):
    """The correlate stage's changelog topic refuses its state (max.message.bytes lowered
    mid-stream, as a broker limit or a full disk would): the worker exits 70, and no input
    offset was committed past the state saved for its partition. With the limit removed, a
    restarted worker indexes every record once and finds analyze's incidents."""
    env, settings, want, msgs = _start(settings_env, 3, [busy_fleet])
    produce(settings, msgs)
    client = es_client(settings)
    changelog = topic_name(settings, "correlate")
    w = worker(env, tmp_path / "worker.log").start()
    w2 = None
    try:
        wait_for(lambda: counts(client, settings)[0] >= want[1] // 5 or None, 180,
                 "a fifth of the events indexed", w, every=0.2)
        _topic_config(settings, changelog, {"max.message.bytes": "512"})
        assert w.proc.wait(60) == 70, w.tail()
        log = w.tail(100_000)
        assert "failed and is NOT acknowledged; exiting (status 70)" in log, log
        # nothing was acknowledged past the saved state: committed <= saved offset + 1
        events = settings.topics.events
        for number, (done, _end) in committed_offsets(settings, events).items():
            tp = f"{events}/{number}"
            data = Changelog(settings, "correlate").read(tp)
            saved = -1 if data is None else codec.unpack_state(data.head, "correlate", STATE_VERSION,
                                                                tp)["offset"]
            assert done <= saved + 1, f"{tp}: offsets committed up to {done}, state saved up to {saved}"
        _topic_config(settings, changelog, None)
        w2 = worker(env, tmp_path / "worker-2.log").start()
        wait_for_analyze(client, settings, want, 240, "everything indexed after the restart", w2)
        wait_drained(settings, w2)
        wait_for_analyze(client, settings, want, 5, "nothing more after the drain", w2)
    finally:
        _stop_all(w, w2)


# -- a record too large for its topic ----------------------------------------------------------------

def test_event_too_large_for_its_topic_is_dead_lettered_and_the_stage_goes_on(settings_env, tmp_path, days):
    env, settings, (incidents, n_events), _ = _start(settings_env, 3, days[:1])
    _topic_config(settings, settings.topics.events, {"max.message.bytes": "200000"})
    big = days[0].parent / "big"
    path = big / "compute-8" / "nova" / "nova-compute.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"2024-03-05 09:10:0{i}.000 2108 INFO nova.compute.manager [-] {text}\n"
             for i, text in enumerate(["Starting instance...", "x" * 300_000, "Instance spawned."])]
    path.write_text("".join(lines))
    big_offset = len(lines[0].encode())
    want = expected(days[0], big)
    assert want == (incidents, n_events + 3)
    msgs = fleet.orders(raw_messages([days[0], big]))["all hosts at once"]
    produce(settings, msgs)
    client = es_client(settings)
    w = worker(env, tmp_path / "worker.log").start()
    try:
        wait_for_analyze(client, settings, (incidents, n_events + 2), 180, "all but the large event indexed", w)
        wait_drained(settings, w)
        assert not w.exited(), w.tail()
    finally:
        _stop_all(w)
    assert w.proc.returncode == 0, w.tail()
    letters = [codec.loads(r.value) for r in read_topic(settings, settings.topics.deadletter)]
    refused = [d for d in letters if d["reason"].startswith(f"refused by Kafka topic {settings.topics.events}")]
    assert len(refused) == 1, [d["reason"] for d in letters]
    letter = refused[0]
    assert letter["file"] == str(path) and letter["offset"] == big_offset and letter["host"] == "compute-8"
    assert re.search(r"too large \(\d{6} bytes\): MessageSizeTooLargeError", letter["reason"]), letter["reason"]
    assert "xxxx" in letter["raw"] and len(codec.dumps(letter)) <= 64 * 1024

