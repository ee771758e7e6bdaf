"""Event time and shared partitions through real Kafka and Elasticsearch.

A seven-host fleet (tests/fleet.py: a stalled boot request, a silent compute, an auth burst
over two keystones, a broker outage on every host, a new error on two computes)
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
from pipeline_support import FAST, indexed as _indexed, produce as _produce  # noqa: E402
from pipeline_support import expected as _expected, load_settings as _settings  # noqa: E402
from support import raw_messages  # noqa: E402


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    fleet.generate(root)
    return root


def _run(settings_env, names, tmp_path, fleet_dir, order: str, workers: int, partitions: int,
         kill_after: int | None = None) -> None:
    from pipeline.operations.setup import setup
    from pipeline.sinks.elasticsearch import make_client

    # new_error learns for ten minutes (not a day), so it judges within the fleet's forty
    env = {**settings_env, **FAST, "OSLOSCOPE_KAFKA_PARTITIONS": str(partitions),
           "OSLOSCOPE_DETECTORS_NEW_ERROR_LEARN_SECONDS": "600",
           "OSLOSCOPE_DETECTORS_NEW_ERROR_LEARN_MIN_RECORDS": "20"}
    settings = _settings(env)
    setup(settings, log=lambda _m: None)
    expected, n_events = _expected(fleet_dir, settings=settings)
    # fleet-keyed detectors included: the broker outage and the auth burst span hosts in
    # different partitions, the new error two computes
    assert {t for t, _c in expected.values()} >= {"request_stalled", "auth_failure", "service_silent",
                                                  "known_issue", "new_error"}
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
