"""End-to-end throughput of one worker, raw topic -> Elasticsearch (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--lines N]

Starts the local services if needed (`osloscope services up`), fills a fresh
raw topic with N real fixture lines (the corpus of bench_parse.py), then in
the same run measures:

1. the raw consume rate of the worker's own Kafka client (aiokafka, as used
   by faust) reading that topic from the beginning: the ceiling;
2. the same with kafka-python, for reference;
3. one `osloscope worker` (subprocess) taking the topic to Elasticsearch:
   records/s and lines/s from the moment the worker is ready (its "Worker:
   Ready" log line: start-up and the group join excluded) to the last event
   indexed, every event acknowledged by Elasticsearch. (Measuring from the
   first *indexed* event instead would hide the parse stage whenever it runs
   ahead of the correlate stage.)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parse import build_corpus  # noqa: E402

from pipeline import services  # noqa: E402
from pipeline.parsing.extract import Source  # noqa: E402
from pipeline.parsing.parser import Parser  # noqa: E402
from pipeline.operations.setup import setup  # noqa: E402
from pipeline.settings import load  # noqa: E402

HOST, PATH = "bench-host", "/var/log/bench/nova-compute.log"


def expected_records(lines: list[bytes]) -> int:
    p, src, n = Parser("UTC"), Source(HOST, "nova-compute", PATH), 0
    for i, line in enumerate(lines):
        n += sum(1 for ev in p.feed(line, src, i) if ev.kind != "unparsed")
    return n + sum(1 for ev in p.flush() if ev.kind != "unparsed")


def produce(settings, lines: list[bytes]) -> float:
    from kafka import KafkaProducer

    prod = KafkaProducer(**settings.kafka.client_kwargs(), acks="all", linger_ms=20,
                         batch_size=512 * 1024, compression_type="gzip")
    t0 = time.perf_counter()
    offset = 0
    key = f"{HOST}|{PATH}".encode()
    for line in lines:
        # as `osloscope ship` sends a line: without its newline, at its byte offset
        prod.send(settings.topics.raw, key=key, value=line[:-1] if line.endswith(b"\n") else line,
                  headers=[("host", HOST.encode()), ("path", PATH.encode()),
                           ("service", b"nova-compute"), ("offset", str(offset).encode())])
        offset += len(line)
    prod.flush()
    prod.close()
    return time.perf_counter() - t0


async def _aiokafka_consume(settings, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(settings.topics.raw, bootstrap_servers=settings.kafka.bootstrap,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         group_id=f"bench-{uuid.uuid4().hex[:6]}")
    await c.start()
    got = 0
    t0 = time.perf_counter()
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                got += len(msgs)
    finally:
        await c.stop()
    return time.perf_counter() - t0


def kafka_python_consume(settings, n: int) -> float:
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topics.raw, **settings.kafka.client_kwargs(),
                      auto_offset_reset="earliest", enable_auto_commit=False)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for msgs in c.poll(timeout_ms=1000, max_records=5000).values():
            got += len(msgs)
    c.close()
    return time.perf_counter() - t0


def es_count(client, prefix: str) -> int:
    try:
        client.indices.refresh(index=f"{prefix}*", allow_no_indices=True)
        return client.count(index=f"{prefix}*", allow_no_indices=True)["count"]
    except Exception:
        return 0


def ready_time(log_path: Path) -> float | None:
    """Epoch seconds of the worker's "Worker]: Ready" log line (faust logs local time)."""
    from datetime import datetime

    for line in log_path.read_text(errors="replace").splitlines():
        if "[^Worker]: Ready" in line:
            m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]", line)
            if m:
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()

    services.up(log=lambda m: print(m, file=sys.stderr))
    tag = uuid.uuid4().hex[:6]
    env = {"OSLOSCOPE_TOPICS_RAW": f"bench-{tag}.raw", "OSLOSCOPE_TOPICS_DEADLETTER": f"bench-{tag}.dl",
           "OSLOSCOPE_TOPICS_EVENTS": f"bench-{tag}.events", "OSLOSCOPE_TOPICS_INCIDENTS": f"bench-{tag}.inc",
           "OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": f"bench-{tag}-events-",
           "OSLOSCOPE_ES_INCIDENTS_INDEX": f"bench-{tag}-incidents",
           "OSLOSCOPE_ES_REQUESTS_INDEX": f"bench-{tag}-requests",
           "OSLOSCOPE_WORKER_APP_ID": f"bench-{tag}", "OSLOSCOPE_WORKER_STATE_DIR": f"/tmp/osloscope-bench/{tag}",
           "OSLOSCOPE_WORKER_METRICS_PORT": "0", "OSLOSCOPE_WORKER_LOG_INTERVAL": "2"}
    settings = load(None, env=env)
    setup(settings, log=lambda m: None)

    # build a corpus of about args.lines lines
    lines = build_corpus(max(1000, args.lines // 3))[:args.lines]
    n_lines = len(lines)
    n_records = expected_records(lines)
    print(f"corpus: {n_lines:,} lines, {n_records:,} records", file=sys.stderr)
    t_prod = produce(settings, lines)

    t_aio = asyncio.run(_aiokafka_consume(settings, n_lines))
    t_kp = kafka_python_consume(settings, n_lines)

    from pipeline.sinks.elasticsearch import make_client
    client = make_client(settings.elasticsearch)
    log_path = Path(f"/tmp/osloscope-bench/{tag}.worker.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            t_first = first = None
            deadline = time.monotonic() + args.timeout
            count = 0
            while time.monotonic() < deadline:
                count = es_count(client, settings.elasticsearch.events_index_prefix)
                now = time.time()
                if count and t_first is None:
                    t_first, first = now, count
                if count >= n_records:
                    break
                if proc.poll() is not None:
                    sys.exit(f"worker exited early, see {log_path}")
                time.sleep(0.25)
            t_last = time.time()
        finally:
            proc.terminate()
            proc.wait(60)
    if count < n_records:
        sys.exit(f"only {count:,}/{n_records:,} events indexed within {args.timeout:.0f} s; see {log_path}")
    t_ready = ready_time(log_path)
    if t_ready is None:
        sys.exit(f"no 'Worker]: Ready' line in {log_path}")
    span = t_last - t_ready
    done = count
    rec_rate = done / span
    line_rate = rec_rate * n_lines / n_records
    aio_rate, kp_rate = n_lines / t_aio, n_lines / t_kp
    print()
    print(f"{'path':<44} {'lines/s':>12} {'records/s':>12} {'x aiokafka':>11}")
    print(f"{'produce (kafka-python, acks=all, gzip)':<44} {n_lines / t_prod:>12,.0f} {'':>12} {'':>11}")
    print(f"{'raw consume, aiokafka (faust client)':<44} {aio_rate:>12,.0f} {'':>12} {1.0:>11.3f}")
    print(f"{'raw consume, kafka-python':<44} {kp_rate:>12,.0f} {'':>12} {kp_rate / aio_rate:>11.3f}")
    print(f"{'worker: raw -> parse -> detect -> ES (acked)':<44} {line_rate:>12,.0f} {rec_rate:>12,.0f} "
          f"{line_rate / aio_rate:>11.3f}")
    print(f"\n{n_lines:,} lines / {n_records:,} records; worker measured over {done:,} records in "
          f"{span:.1f} s from ready to the last event indexed (first event indexed after "
          f"{t_first - t_ready:.1f} s; {first:,} at the first count); log {log_path}")
    stats = [line.split("osloscope stats ", 1)[1] for line in log_path.read_text(errors="replace").splitlines()
             if "osloscope stats " in line]
    if stats:
        # wall-clock seconds per stage and phase (the worker's /metrics timers)
        phases = [p for p in stats[-1].split() if "_s=" in p]
        print("worker phases (s, cumulative): " + " ".join(phases))


if __name__ == "__main__":
    main()
