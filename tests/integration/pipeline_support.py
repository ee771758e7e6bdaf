"""What the pipeline's integration tests share: settings from a test's environment, setup,
records produced as a shipper sends them, what Elasticsearch holds, what ``analyze`` finds
in the same files, and the wait until the worker's consumer group has committed everything.

(test_pipeline.py, test_fleet_through_kafka.py and test_faults.py use these; the processes
they run are in processes.py.)
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

from processes import Process, wait_for

# sources go quiet quickly in a test; a short warm-up
FAST = {"OSLOSCOPE_WORKER_SOURCE_IDLE_TIMEOUT": "6", "OSLOSCOPE_WORKER_SOURCE_WARMUP": "3",
        "OSLOSCOPE_WORKER_SESSION_TIMEOUT": "8", "OSLOSCOPE_WORKER_BATCH_SIZE": "200"}


def load_settings(env: dict):
    from pipeline.settings import load
    return load(None, env=env)


def es_client(settings):
    from pipeline.sinks.elasticsearch import make_client
    return make_client(settings.elasticsearch)


def setup_all(settings) -> None:
    from pipeline.operations.setup import setup
    setup(settings, log=lambda _m: None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_drained(settings, worker: Process | None, timeout: float = 120.0) -> None:
    """Until the worker's consumer group has committed every record of the raw,
    events and incidents topics: then nothing more can arrive in Elasticsearch
    (offsets are committed only after the outputs were acknowledged)."""
    from kafka import KafkaConsumer, TopicPartition

    t = settings.topics
    kw = settings.kafka.client_kwargs()
    # a consumer of the worker's group that never subscribes: it only reads the group's offsets
    probe = KafkaConsumer(group_id=settings.worker.app_id, enable_auto_commit=False, **kw)
    try:
        parts = [TopicPartition(topic, p) for topic in (t.raw, t.events, t.incidents)
                 for p in (probe.partitions_for_topic(topic) or ())]
        assert {tp.topic for tp in parts} == {t.raw, t.events, t.incidents}, parts

        def drained():
            ends = probe.end_offsets(parts)
            behind = {f"{tp.topic}/{tp.partition}": ends[tp] - (probe.committed(tp) or 0)
                      for tp in parts if ends[tp] > (probe.committed(tp) or 0)}
            return not behind or None

        wait_for(drained, timeout, "the worker's committed offsets to reach the end of its topics",
                 *([worker] if worker else []), every=0.5)
    finally:
        probe.close()


def counts(client, settings) -> tuple[int, int]:
    """Indexed events and incidents; (-1, -1) while an index the pipeline just
    created has no started shard yet (Elasticsearch answers 503 then)."""
    from elasticsearch import ApiError

    es = settings.elasticsearch
    try:
        client.indices.refresh(index=f"{es.events_index_prefix}*,{es.incidents_index}",
                               ignore_unavailable=True, allow_no_indices=True)
        ev = client.count(index=f"{es.events_index_prefix}*", allow_no_indices=True)["count"]
        inc = client.count(index=es.incidents_index)["count"] if client.indices.exists(
            index=es.incidents_index) else 0
    except ApiError as exc:
        if exc.meta.status != 503:
            raise
        return -1, -1
    return ev, inc


def expected(*roots: Path, settings=None) -> tuple[dict, int]:
    """What ``osloscope analyze`` finds in the files under ``roots`` (with the detector
    settings of ``settings``; None: the defaults): incidents (id -> (type, count)) and the
    number of records that become events."""
    from pipeline.local.analyze import analyze
    from pipeline.signatures import engine
    from pipeline.sources.files import discover

    res = analyze(discover([str(r) for r in roots]), engine=engine("all", settings))
    return ({d["id"]: (d["type"], d["count"]) for d in res.incidents},
            res.stats.events - res.stats.unparsed)


def produce(settings, msgs) -> None:
    """The raw records as a shipper sends them: key = host, ``osloscope ship``'s headers."""
    from kafka import KafkaProducer

    p = KafkaProducer(**settings.kafka.client_kwargs(), acks="all", linger_ms=5,
                      max_request_size=8 * 1024 * 1024)
    try:
        for m in msgs:
            p.send(settings.topics.raw, key=m.key, value=m.value, headers=list(m.headers.items()))
        p.flush(60)
    finally:
        p.close()


def indexed(client, settings) -> tuple[dict, int]:
    """Incidents (id -> (type, count)) and the number of events in Elasticsearch;
    ({}, -1) while an index just created has no started shard yet."""
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


def wait_for_analyze(client, settings, want: tuple[dict, int], timeout: float, what: str,
                     *procs: Process) -> None:
    """Until Elasticsearch holds exactly ``want`` (``expected()``'s incidents and event
    count); on timeout, the difference."""
    last: list = [None]

    def done():
        last[0] = indexed(client, settings)
        return last[0] == want or None

    try:
        wait_for(done, timeout, what, *procs)
    except AssertionError as exc:
        if last[0] is None:
            raise
        got, n = last[0]
        inc, n_events = want
        missing = {k: v for k, v in inc.items() if got.get(k) != v}
        extra = {k: v for k, v in got.items() if k not in inc}
        raise AssertionError(f"{what}: {n} of {n_events} events indexed; differing: {missing}; "
                             f"extra: {extra}\n{exc}") from None




def filler(path: Path, n: int, start, seconds: float) -> None:
    """``n`` healthy nova-compute records spread over ``seconds`` from datetime ``start``:
    volume that no detector reports (oslo.concurrency lock lines, no request id)."""
    from datetime import timedelta

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i in range(n):
            t = start + timedelta(seconds=seconds * i / n)
            fh.write(f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} 2931 DEBUG oslo_concurrency.lockutils "
                     f"[- - - - - -] Lock \"compute_resources\" acquired by \"nova.compute.resource_tracker."
                     f"ResourceTracker._update_available_resource\" :: waited 0.00{i % 10}s inner "
                     "/usr/lib/python3/dist-packages/oslo_concurrency/lockutils.py:390\n")


def read_topic(settings, topic: str) -> list:
    """Every record of ``topic`` up to its end now (all partitions, from the start)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        ends = c.end_offsets(parts)
        out, deadline = [], time.monotonic() + 60
        while any(c.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"reading {topic} took over 60 s"
            for records in c.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        c.close()


def committed_offsets(settings, topic: str) -> dict[int, tuple[int, int]]:
    """Partition -> (the worker's group's committed offset (0: none), end offset) of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    probe = KafkaConsumer(group_id=settings.worker.app_id, enable_auto_commit=False,
                          **settings.kafka.client_kwargs())
    try:
        parts = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
        ends = probe.end_offsets(parts)
        return {tp.partition: (probe.committed(tp) or 0, ends[tp]) for tp in parts}
    finally:
        probe.close()
