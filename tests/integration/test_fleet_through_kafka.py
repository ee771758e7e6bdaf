"""Event time and shared partitions through real Kafka and Elasticsearch.

A seven-host fleet (tests/fleet.py: a stalled boot request, an auth burst)
is produced onto the raw topic as shippers would (key = host, ``osloscope
ship`` headers) in different orders; the worker's incidents in
Elasticsearch must equal ``analyze``'s on the same files (ids, types,
counts), and every event must be indexed exactly once. Then three workers
share six partitions, one is SIGKILLed mid-stream and a fourth starts
later: the same again (state follows its partition through the changelog
topics).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402
from processes import wait_for, worker  # noqa: E402
from support import raw_messages  # noqa: E402

# sources go quiet quickly in a test; a short warm-up
FAST = {"OSLOSCOPE_WORKER_SOURCE_IDLE_TIMEOUT": "6", "OSLOSCOPE_WORKER_SOURCE_WARMUP": "3",
        "OSLOSCOPE_WORKER_SESSION_TIMEOUT": "8", "OSLOSCOPE_WORKER_BATCH_SIZE": "200"}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    fleet.generate(root)
    return root


def _settings(env):
    from pipeline.settings import load
    return load(None, env=env)


def _expected(fleet_dir) -> tuple[dict, int]:
    from pipeline.local.analyze import analyze
    from pipeline.signatures import engine
    from pipeline.sources.files import discover

    res = analyze(discover([str(fleet_dir)]), engine=engine("all"))
    return ({d["id"]: (d["type"], d["count"]) for d in res.incidents},
            res.stats.events - res.stats.unparsed)


def _produce(settings, msgs) -> None:
    """The raw records as a shipper sends them: key = host, ``osloscope ship``'s headers."""
    from kafka import KafkaProducer

    p = KafkaProducer(**settings.kafka.client_kwargs(), acks="all", linger_ms=5)
    try:
        for m in msgs:
            p.send(settings.topics.raw, key=m.key, value=m.value, headers=list(m.headers.items()))
        p.flush(60)
    finally:
        p.close()


def _indexed(client, settings) -> tuple[dict, int]:
    """Incidents (id -> (type, count)) and the number of events in Elasticsearch."""
    from elasticsearch import ApiError

    es = settings.elasticsearch
    try:
        client.indices.refresh(index=f"{es.events_index_prefix}*,{es.incidents_index}",
                               ignore_unavailable=True, allow_no_indices=True)
        n = client.count(index=f"{es.events_index_prefix}*", allow_no_indices=True)["count"]
        if not client.indices.exists(index=es.incidents_index):
            return {}, n
        hits = client.search(index=es.incidents_index, size=1000, source=["type", "count"])["hits"]["hits"]
    except ApiError as exc:
        if exc.meta.status != 503:
            raise
        return {}, -1
    return {h["_id"]: (h["_source"]["type"], h["_source"]["count"]) for h in hits}, n


def _run(settings_env, names, tmp_path, fleet_dir, order: str, workers: int, partitions: int,
         kill_after: int | None = None) -> None:
    from pipeline.operations.setup import setup
    from pipeline.sinks.elasticsearch import make_client

    env = {**settings_env, **FAST, "OSLOSCOPE_KAFKA_PARTITIONS": str(partitions)}
    settings = _settings(env)
    setup(settings, log=lambda _m: None)
    expected, n_events = _expected(fleet_dir)
    assert {t for t, _c in expected.values()} >= {"request_stalled", "auth_failure"}
    msgs = fleet.orders(raw_messages([fleet_dir]))[order]
    client = make_client(settings.elasticsearch)
    procs = [worker(env, tmp_path / f"worker-{i}.log").start() for i in range(workers)]
    try:
        _produce(settings, msgs)
        if kill_after is not None:
            wait_for(lambda: _indexed(client, settings)[1] >= kill_after or None, 120,
                     f"{kill_after} events indexed", *procs)
            procs[0].kill()                               # SIGKILL mid-stream
            time.sleep(3)
            procs.append(worker(env, tmp_path / "worker-late.log").start())
        last: list = [None]

        def done():
            last[0] = _indexed(client, settings)
            return last[0] == (expected, n_events) or None

        try:
            wait_for(done, 240, f"the incidents analyze finds ({order})", *procs[1 if kill_after else 0:])
        except AssertionError:
            got, n = last[0]
            missing = {k: v for k, v in expected.items() if got.get(k) != v}
            extra = {k: v for k, v in got.items() if k not in expected}
            raise AssertionError(f"{order}: {n} of {n_events} events indexed; differing: {missing}; "
                                 f"extra: {extra}") from None
    finally:
        for p in procs:
            p.stop() if not p.exited() else None


@pytest.mark.parametrize("order", ["one file after another", "one host 30 min behind"])
def test_any_shipping_order_gives_what_analyze_gives(order, settings_env, names, tmp_path, fleet_dir):
    _run(settings_env, names, tmp_path, fleet_dir, order, workers=1, partitions=3)


def test_three_workers_one_killed_and_a_fourth_later_give_what_analyze_gives(
        settings_env, names, tmp_path, fleet_dir):
    _run(settings_env, names, tmp_path, fleet_dir, "all hosts at once", workers=3, partitions=6,
         kill_after=150)
