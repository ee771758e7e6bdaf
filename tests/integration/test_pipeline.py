"""End to end on the real services: ship -> Kafka -> faust worker -> Elasticsearch.

Every test has its own topics, indices, consumer group and state directory
(``names``/``settings_env`` in conftest.py). The worker runs as a real
``osloscope worker`` subprocess; the crash test SIGKILLs it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"

from processes import OSLOSCOPE, Process, wait_for, worker  # noqa: E402
from pipeline_support import (counts, es_client, free_port, load_settings,  # noqa: E402,F401
                              setup_all, wait_drained)
GARBAGE = [b"\x00\x01\x02 binary garbage \xff\xfe", b"this is not an oslo.log line at all",
           b"{\"json\": \"without a message field\"}"]


def Worker(env: dict, log_path: Path) -> Process:      # noqa: N802 - reads as the process it makes
    return worker(env, log_path)


def summary_ids(client, settings) -> set[str]:
    """The request ids of the request summaries in Elasticsearch."""
    es = settings.elasticsearch
    if not client.indices.exists(index=es.requests_index):
        return set()
    client.indices.refresh(index=es.requests_index)
    hits = client.search(index=es.requests_index, size=500)["hits"]["hits"]
    return {i for h in hits for i in h["_source"]["request_ids"]}


def embedded(paths: list[Path]):
    """What `osloscope analyze` finds in the same files: ids and record count."""
    from pipeline.local.analyze import analyze
    from pipeline.signatures import engine
    from pipeline.sources.files import discover
    res = analyze(discover([str(p) for p in paths]), engine=engine("all", windows=False))
    return {d["id"]: d for d in res.incidents}, res.stats.events - res.stats.unparsed


def ship_once(paths: list[Path], settings) -> dict:
    from pipeline.streaming.ship import ship
    return ship([str(p) for p in paths], settings, from_start=True, once=True, layout_hosts=True,
                log=lambda _m: None)


def consume_all(settings, topic: str, expect_at_least: int = 1, timeout: float = 30.0) -> list:
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(topic, **settings.kafka.client_kwargs(), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = list(consumer)
            out.extend(batch)
            if len(out) >= expect_at_least and not batch:
                break
    finally:
        consumer.close()
    return out


@pytest.fixture
def logs(tmp_path) -> Path:
    """The sample directory plus a file of garbage lines."""
    root = tmp_path / "logs"
    shutil.copytree(SAMPLES, root)
    junk = root / "compute-9" / "nova" / "nova-compute.log"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"\n".join(GARBAGE) + b"\n")
    return root


def test_ship_worker_elasticsearch_end_to_end(settings_env, names, logs, tmp_path):
    # a short request window: on a stream gone quiet the summaries are written about one
    # gap of wall-clock time after the last record (the default, 120 s, would only slow the test)
    settings_env = {**settings_env, "OSLOSCOPE_DETECTORS_REQUEST_WINDOW_GAP": "15"}
    settings = load_settings(settings_env)
    setup_all(settings)
    setup_all(settings)                      # idempotent
    expected, n_records = embedded([logs])
    stats = ship_once([logs], settings)
    assert stats["lines"] >= n_records

    port = free_port()
    worker = Worker({**settings_env, "OSLOSCOPE_WORKER_METRICS_PORT": str(port)},
                    tmp_path / "worker.log").start()
    client = es_client(settings)
    try:
        wait_for(lambda: counts(client, settings) >= (n_records, len(expected)), 120,
                 "events and incidents in Elasticsearch", worker)
        wait_drained(settings, worker)       # nothing more can arrive
        # a request's summary is written when its window closes: after the last events had
        # their turn and event time moved on (idle clock) by the gap, which can follow the drain
        wait_for(lambda: summary_ids(client, settings) >= {"req-c5016b48-399b-44f8-adea-a86421f1e129"}
                 or None, 90, "the request summaries of the closed windows", worker)
        n_events, n_incidents = counts(client, settings)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        assert worker.stop() == 0, worker.tail()

    # self-metrics on the Prometheus endpoint
    assert f'osloscope_records_total{{stage="parse",kind="records_in"}} {stats["lines"]}' in metrics
    assert 'osloscope_records_total{stage="parse",kind="dead_letters"}' in metrics
    assert f'osloscope_records_total{{stage="parse",kind="events_out"}} {n_records}' in metrics
    assert 'osloscope_records_total{stage="correlate",kind="es_indexed"}' in metrics
    assert "osloscope_consumer_lag{" in metrics

    # every record indexed once, every embedded incident found, no extra ones
    assert n_events == n_records
    es = settings.elasticsearch
    hits = client.search(index=es.incidents_index, size=100)["hits"]["hits"]
    got = {h["_id"]: h["_source"] for h in hits}
    assert set(got) == set(expected)
    for iid, doc in got.items():
        assert doc["id"] == iid
        assert doc["rule"] == expected[iid]["rule"]
        assert doc["probable_cause"] and doc["remediation"] and doc["evidence"]
        assert doc["first_seen"] == expected[iid]["first_seen"]
    types = {d["type"] for d in got.values()}
    assert types == {"retry_exhausted", "auth_failure", "disk_full", "known_issue"}

    # request summaries of the closed request windows
    client.indices.refresh(index=es.requests_index)
    reqs = [h["_source"] for h in client.search(index=es.requests_index, size=500)["hits"]["hits"]]
    assert reqs and all(r["request_ids"] for r in reqs)
    assert "req-c5016b48-399b-44f8-adea-a86421f1e129" in {i for r in reqs for i in r["request_ids"]}

    # events carry their request ids and are searchable by them
    rid = next(r for d in got.values() for r in d["request_ids"])
    res = client.search(index=f"{es.events_index_prefix}*",
                        query={"term": {"openstack.request_id": rid}})
    assert res["hits"]["total"]["value"] >= 1

    # the garbage is in the dead-letter topic, with reasons
    dead = [json.loads(m.value) for m in consume_all(settings, names.deadletter, len(GARBAGE))]
    raws = {d["raw"] for d in dead}
    for g in GARBAGE:
        assert any(g.decode("utf-8", "backslashreplace") in r for r in raws), (g, raws)
    assert all(d["reason"] for d in dead)

    # `osloscope trace` follows the request through the indexed events
    out = subprocess.run(OSLOSCOPE + ["trace", "req-c5016b48-399b-44f8-adea-a86421f1e129"],
                         env={**os.environ, **settings_env}, cwd=ROOT, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "!! 2017-06-06 09:30:28.514" in text and "VolumeNotCreated" in text
    assert "root cause: cinder-volume" in text

    # and `osloscope incidents` lists them
    out = subprocess.run(OSLOSCOPE + ["incidents", "--format", "jsonl"], env={**os.environ, **settings_env},
                         cwd=ROOT, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    listed = [json.loads(line) for line in out.stdout.splitlines()]
    assert {d["id"] for d in listed} == set(expected)
    out = subprocess.run(OSLOSCOPE + ["incidents", "--status", "open"], env={**os.environ, **settings_env},
                         cwd=ROOT, capture_output=True, timeout=60)
    assert out.returncode == 0
    n_open = sum(1 for d in got.values() if d["status"] == "open")
    assert f"{n_open} incident(s)" in out.stderr.decode()


def _filler(path: Path, n: int) -> None:
    """Healthy nova-compute traffic (from the real corpus shape): many records, no incident."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = 1_500_000_000.0
    with open(path, "w") as fh:
        for i in range(n):
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + i * 0.05))
            ms = int((base + i * 0.05) % 1 * 1000)
            fh.write(f"{t}.{ms:03d} 2931 INFO nova.compute.resource_tracker "
                     f"[req-{i:08d}-1111-2222-3333-444455556666 - - - - -] "
                     f"Final resource view: name=compute-7 phys_ram={i % 512}MB used_ram=512MB\n")


def test_worker_sigkill_mid_stream_loses_and_duplicates_nothing(settings_env, names, logs, tmp_path):
    settings = load_settings(settings_env)
    setup_all(settings)
    _filler(logs / "compute-7" / "nova" / "nova-compute.log", 12_000)
    expected, n_records = embedded([logs])
    ship_once([logs], settings)

    client = es_client(settings)
    worker = Worker(settings_env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: counts(client, settings)[0] > 2000, 120, "first events indexed", worker,
                 every=0.2)
        worker.kill()                        # mid-stream: most records not yet processed
        partial = counts(client, settings)[0]
        assert partial < n_records, "worker finished before it could be killed; grow the filler"
        worker = Worker(settings_env, tmp_path / "worker.log").start()
        wait_for(lambda: counts(client, settings)[0] >= n_records and
                 counts(client, settings)[1] >= len(expected), 180,
                 "all events and incidents after the restart", worker)
        wait_drained(settings, worker)
        n_events, n_incidents = counts(client, settings)
    finally:
        worker.stop()
    assert n_events == n_records                   # none lost, none duplicated
    hits = client.search(index=settings.elasticsearch.incidents_index, size=100)["hits"]["hits"]
    assert n_incidents == len(hits) == len(expected)
    assert {h["_id"] for h in hits} == set(expected)
    # detector state survived: counts as in an uninterrupted in-process run
    reference = reference_run(settings, names)
    for h in hits:
        assert h["_source"]["count"] == reference[h["_id"]]["count"], h["_source"]["rule"]


def reference_run(settings, names) -> dict:
    """The stages fed the same raw topic in process, uninterrupted (no Kafka commit, no crash)."""
    from pipeline.streaming.stages import CorrelateStage, ParseStage, RawMessage

    msgs = consume_all(settings, names.raw, 1)
    parse, corr = ParseStage(settings), CorrelateStage(settings)
    raw = [RawMessage(m.topic, m.partition, m.offset, m.key, m.value,
                      {k: v for k, v in (m.headers or [])}) for m in msgs]
    out = parse.process(raw, 0.0)
    out.extend(parse.tick(1e9))
    incidents = {d["id"]: d for d in out.incidents}
    from support import events_topic

    for d in corr.process(events_topic(out, topic=names.events), 0.0).incidents + corr.tick(2e9).incidents:
        incidents[d["id"]] = d
    return incidents


def test_watch_indexes_into_elasticsearch(settings_env, logs, tmp_path):
    settings = load_settings(settings_env)
    expected, n_records = embedded([logs])
    env = {**os.environ, **settings_env}
    proc = subprocess.Popen(OSLOSCOPE + ["watch", str(logs), "--from-start", "--format", "jsonl",
                                         "--elasticsearch", "--dead-letter", str(tmp_path / "dl.jsonl")],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = es_client(settings)
    def indexed():
        if proc.poll() is not None:
            raise AssertionError(f"watch exited with {proc.returncode}: {proc.stderr.read().decode()}")
        n_ev, n_inc = counts(client, settings)
        return n_ev >= n_records and n_inc >= len(expected)
    try:
        wait_for(indexed, 60, "watch to index events and incidents")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    hits = client.search(index=settings.elasticsearch.incidents_index, size=100)["hits"]["hits"]
    assert {h["_id"] for h in hits} == set(expected)
    assert counts(client, settings)[0] == n_records
    printed = {json.loads(line)["id"] for line in out.splitlines()}
    assert printed == set(expected)
