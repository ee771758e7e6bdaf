"""Throughput of `osloscope worker`, raw topic -> Elasticsearch (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--records N] [--files N]
        [--index-events all warning+] [--workers 1] [--timeout S] [--keep]

Kafka and Elasticsearch: OSLOSCOPE_KAFKA_BOOTSTRAP and OSLOSCOPE_ES_URL when
set (nothing is started or stopped then), else the local services of
`osloscope services up` (started if needed). Every run works in topics,
indices, index templates and a consumer group of its own (``bench-<tag>...``);
the topics, indices and templates are deleted at the end (``--keep`` keeps
them; the processes' logs stay in /tmp/osloscope-bench/<tag>).

1. Writes a backlog with gen_logs.py ``replay``: real records of the
   repository's fixtures over controllers and computes (``--files`` files,
   ``<root>/<host>/<project>/<file>.log``, 12 hours of log time), and counts
   what the worker must index by running the parser over each file (events;
   events at WARNING or above).
2. For each ``--index-events`` policy and each ``--workers`` count, a run
   with a fresh raw topic (``kafka.partitions`` partitions) and outputs of
   its own: N ``osloscope worker`` processes (same app id) start; once every
   raw partition has its worker, the backlog is shipped in with
   ``osloscope ship --once --layout-hosts`` (the real shipper: key = host,
   one record per line), and the run lasts until every expected event is
   searchable in Elasticsearch. Then the baseline: the raw consume rate of
   the worker's own Kafka client (aiokafka, as faust uses it) reading the
   same raw topic from the start (and, once, kafka-python's).

Printed per run, next to the baseline and the load average: lines/s and
records/s, two ways. *steady*: raw lines read by the parse stage(s) from
10 % of the backlog (or the end of shipping, if later) to 90 %; the
events-topic lag at 90 % says how far the correlate stage trailed. *ship ->
all searchable*: the whole run, which also holds the waits of event time
(pipeline/streaming/eventtime.py: nothing is released in the first
``worker.source_warmup`` seconds, and the last ``worker.allowed_lateness``
of a backfill's event time is released once every file has been quiet for
``worker.source_idle_timeout``). Also the CPU seconds of each worker (ms per
line: the figure that does not depend on what else the machine runs) and of
the Kafka and Elasticsearch processes, the worker's last ``osloscope stats``
line (seconds per stage and phase: where the time goes) and the bytes the
stages wrote to their state changelogs.

These are benchmarks, not tests: they print ratios, they pass or fail nothing.
bench_fleet.py (one worker vs two) and bench_latency.py (a live load) use the
helpers of this module.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import gen_logs  # noqa: E402

from pipeline.settings import load  # noqa: E402

OSLOSCOPE = [sys.executable, "-m", "pipeline.cli"]
WORK = Path(os.environ.get("OSLOSCOPE_BENCH_DIR", "/tmp/osloscope-bench"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return "%.2f/%.2f/%.2f" % os.getloadavg()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# services and namespaces

def service_env() -> dict[str, str]:
    """Where Kafka and Elasticsearch are: the environment's OSLOSCOPE_KAFKA_BOOTSTRAP and
    OSLOSCOPE_ES_URL when set (checked, never started), else `osloscope services up`."""
    env = {k: os.environ[k] for k in ("OSLOSCOPE_KAFKA_BOOTSTRAP", "OSLOSCOPE_ES_URL") if k in os.environ}
    if not env:
        from pipeline.operations import services

        services.up(log=say)
        return env
    settings = load(None, env=env)
    from pipeline.streaming.kafka_clients import require_access
    from pipeline.sinks.elasticsearch import make_client

    require_access(settings.kafka, wait=30.0, log=say)
    client = make_client(settings.elasticsearch)
    try:
        client.cluster.health(timeout="10s")
    except Exception as exc:
        sys.exit(f"Elasticsearch at {settings.elasticsearch.url} does not answer: {exc}")
    finally:
        client.close()
    return env


class Namespace:
    """The topics, indices, index templates and consumer group of one benchmark run, all
    named ``bench-<tag>...``; ``raw_topic`` shares another namespace's raw topic."""

    def __init__(self, base_env: dict[str, str], tag: str, *, raw_topic: str | None = None,
                 **settings: str) -> None:
        self.tag = tag
        self.env = {**base_env,
                    "OSLOSCOPE_TOPICS_RAW": raw_topic or f"bench-{tag}.raw",
                    "OSLOSCOPE_TOPICS_DEADLETTER": f"bench-{tag}.dl",
                    "OSLOSCOPE_TOPICS_EVENTS": f"bench-{tag}.events",
                    "OSLOSCOPE_TOPICS_INCIDENTS": f"bench-{tag}.inc",
                    "OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": f"bench-{tag}-events-",
                    "OSLOSCOPE_ES_INCIDENTS_INDEX": f"bench-{tag}-incidents",
                    "OSLOSCOPE_ES_REQUESTS_INDEX": f"bench-{tag}-requests",
                    "OSLOSCOPE_WORKER_APP_ID": f"bench-{tag}",
                    "OSLOSCOPE_WORKER_LOG_INTERVAL": "5",
                    **{f"OSLOSCOPE_{k.upper()}": str(v) for k, v in settings.items()}}
        self.settings = load(None, env=self.env)
        self.dir = WORK / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.templates: list[str] = []
        self.client = None

    def setup(self) -> "Namespace":
        from pipeline.sinks.elasticsearch import install_templates, make_client
        from pipeline.streaming.topics import create_topics

        create_topics(self.settings, log=lambda m: None)
        self.client = make_client(self.settings.elasticsearch)
        self.templates = install_templates(self.settings.elasticsearch, self.client)
        return self

    def es_count(self, index: str) -> int:
        try:
            self.client.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True)
            return self.client.count(index=index, allow_no_indices=True, ignore_unavailable=True)["count"]
        except Exception:
            return 0

    def events_count(self) -> int:
        return self.es_count(f"{self.settings.elasticsearch.events_index_prefix}*")

    def cleanup(self) -> None:
        """Delete what the run created on the shared services (topics, indices, templates)."""
        from kafka import KafkaAdminClient

        prefix = f"bench-{self.tag}"
        try:
            admin = KafkaAdminClient(**self.settings.kafka.client_kwargs())
            try:
                mine = [t for t in admin.list_topics() if t.startswith(prefix)]
                if mine:
                    admin.delete_topics(mine)
                # (the consumer group's offsets expire with the broker's offsets.retention.minutes:
                # kafka-python 3 has no call to delete a group)
            finally:
                admin.close()
        except Exception as exc:
            say(f"cleanup: Kafka topics {prefix}* not deleted: {exc}")
        if self.client is not None:
            try:
                self.client.indices.delete(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
                for name in self.templates:
                    self.client.indices.delete_index_template(name=name)
            except Exception as exc:
                say(f"cleanup: Elasticsearch indices {prefix}-* not deleted: {exc}")
            self.client.close()
            self.client = None


# ---------------------------------------------------------------------------------------------------------
# the backlog

@dataclass
class Backlog:
    dir: Path
    lines: int = 0
    bytes: int = 0
    records: int = 0             # events the worker indexes with index_events = all
    records_warning: int = 0     # ... with index_events = warning+
    hosts: dict[str, int] = field(default_factory=dict)      # host -> lines

    def expected(self, index_events: str) -> int:
        return self.records if index_events == "all" else self.records_warning


def make_backlog(root: Path, records: int, files: int, hours: float = 12.0) -> Backlog:
    """gen_logs' replay data set under ``root`` and what the worker makes of it."""
    from pipeline.parsing.extract import Source
    from pipeline.parsing.parser import Parser
    from pipeline.sinks.elasticsearch import wants_event

    gen_logs.generate_replay(root, records=records, nfiles=files, hours=hours)
    b = Backlog(root)
    for path in sorted(root.rglob("*.log")):
        host = path.relative_to(root).parts[0]
        p, src = Parser("UTC"), Source(host, None, str(path))
        offset = 0
        events = []
        with open(path, "rb") as fh:
            for line in fh:
                events += p.feed(line[:-1] if line.endswith(b"\n") else line, src, offset)
                offset += len(line)
                b.lines += 1
                b.hosts[host] = b.hosts.get(host, 0) + 1
        b.bytes += offset
        events += p.flush()
        for ev in events:
            if ev.kind != "unparsed":
                b.records += 1
                b.records_warning += wants_event("warning+", ev.level)
    return b


def end_offsets(settings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(**settings.kafka.client_kwargs())
    try:
        parts = sorted(c.partitions_for_topic(topic) or ())
        ends = c.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: n for tp, n in ends.items()}
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------------
# the baseline: the raw consume rate

async def _aiokafka_consume(settings, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None)
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


def raw_consume_rate(settings, n: int, topic: str | None = None) -> float:
    """Records/s of aiokafka (faust's client) reading ``n`` records of the raw topic from the start."""
    return n / asyncio.run(_aiokafka_consume(settings, topic or settings.topics.raw, n))


def kafka_python_consume_rate(settings, n: int) -> float:
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topics.raw, **settings.kafka.client_kwargs(), auto_offset_reset="earliest",
                      enable_auto_commit=False)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for msgs in c.poll(timeout_ms=1000, max_records=5000).values():
            got += len(msgs)
    took = time.perf_counter() - t0
    c.close()
    return n / took


# ---------------------------------------------------------------------------------------------------------
# processes

def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (for its CPU time), if any."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


class ServiceCPU:
    """CPU seconds of the local Kafka and Elasticsearch processes over a run (when they
    run on this machine; they serve other clients too, so this is an upper bound)."""

    def __init__(self, settings) -> None:
        from urllib.parse import urlparse

        kport = int(settings.kafka.servers[0].rsplit(":", 1)[1])
        eport = urlparse(settings.elasticsearch.url).port or 9200
        self.pids = {"kafka": listener_pid(kport), "elasticsearch": listener_pid(eport)}
        self.start = {k: cpu_seconds(p) if p else None for k, p in self.pids.items()}

    def used(self) -> dict[str, float | None]:
        out = {}
        for k, p in self.pids.items():
            now = cpu_seconds(p) if p else None
            out[k] = None if now is None or self.start[k] is None else now - self.start[k]
        return out


class Proc:
    """A child process (an osloscope command) with its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, name: str) -> None:
        self.argv, self.log_path, self.name = argv, log_path, name
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc else None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode if self.proc else None


class Worker(Proc):
    """`osloscope worker` with its own /metrics port and state directory."""

    def __init__(self, ns: Namespace, name: str, **env: str) -> None:
        self.port = free_port()
        state = ns.dir / f"{name}-state"
        super().__init__(OSLOSCOPE + ["worker"],
                         {**ns.env, "OSLOSCOPE_WORKER_METRICS_PORT": str(self.port),
                          "OSLOSCOPE_WORKER_STATE_DIR": str(state), **env},
                         ns.dir / f"{name}.log", f"worker {name}")
        self.ready_at: float | None = None
        self.cpu_at_ready: float | None = None

    def check_ready(self) -> bool:
        if self.ready_at is None and "[^Worker]: Ready" in self.text():
            self.ready_at = time.time()
            self.cpu_at_ready = self.cpu()
        return self.ready_at is not None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """The /metrics page as (name, labels, value); empty while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except Exception:
            return []
        out = []
        for line in text.splitlines():
            m = re.match(r'([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$', line)
            if m:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
                try:
                    out.append((m.group(1), labels, float(m.group(3))))
                except ValueError:
                    pass
        return out

    def stats_lines(self) -> list[str]:
        return [ln.split("osloscope stats ", 1)[1] for ln in self.text().splitlines() if "osloscope stats " in ln]


def metric_sum(samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def lag_by_role(samples, settings) -> dict[str, float]:
    """Consumer lag summed per input topic: raw, events, incidents."""
    t = settings.topics
    out = {"raw": 0.0, "events": 0.0, "incidents": 0.0}
    for n, lab, v in samples:
        if n == "osloscope_consumer_lag":
            role = {t.raw: "raw", t.events: "events", t.incidents: "incidents"}.get(lab.get("topic"))
            if role:
                out[role] += v
    return out


def phases(stats: str) -> str:
    """Seconds per stage and phase of an ``osloscope stats`` line."""
    return " ".join(p for p in stats.split() if "_s=" in p)


def counters(stats: str) -> dict[str, float]:
    """The ``name=value`` counters of an ``osloscope stats`` line."""
    out = {}
    for part in stats.split():
        name, sep, value = part.partition("=")
        try:
            out[name] = float(value) if sep else 0.0
        except ValueError:
            pass
    return out


def state_written(stats: str) -> str:
    """What the stages wrote to their state changelogs, per raw line read."""
    c = counters(stats)
    lines = c.get("parse.lines_in") or c.get("parse.records_in") or 0
    per = "".join(f"; {stage} {c.get(f'{stage}.state_bytes', 0) / 1e6:,.1f} MB in "
                  f"{c.get(f'{stage}.state_partitions_saved', 0):,.0f} partition saves = "
                  f"{c.get(f'{stage}.state_bytes', 0) / max(lines, 1):,.0f} bytes per raw line"
                  for stage in ("parse", "correlate"))
    return f"state changelogs written{per}"


def start_workers(ns: Namespace, n: int, timeout: float = 120.0, **env: str) -> list[Worker]:
    workers = [Worker(ns, f"w{i + 1}", **env).start() for i in range(n)]
    deadline = time.monotonic() + timeout
    while not all([w.check_ready() for w in workers]):      # a list: every worker is checked
        for w in workers:
            if w.exited():
                stop_all(workers)
                sys.exit(f"{w.name} exited ({w.proc.returncode}) before it was ready; see {w.log_path}")
        if time.monotonic() > deadline:
            stop_all(workers)
            sys.exit(f"workers not ready within {timeout:.0f} s; see {ns.dir}")
        time.sleep(0.1)
    return workers


def stop_all(procs) -> None:
    for p in procs:
        p.stop()


# ---------------------------------------------------------------------------------------------------------
# one run: N workers take the backlog

@dataclass
class Run:
    label: str
    workers: int
    index_events: str
    lines: int = 0
    records: int = 0                 # events expected in Elasticsearch
    baseline: float = 0.0            # raw consume (aiokafka), lines/s, on the run's raw topic
    kafka_python: float = 0.0        # the same with kafka-python (when measured)
    load_start: str = ""
    load_end: str = ""
    ready_apart: float = 0.0         # seconds between the first and the last worker's "Ready"
    settled: float = 0.0             # seconds from the first "Ready" until every partition had its worker
    shipped: float = 0.0             # seconds `osloscope ship --once` took (t = 0: it started)
    done: float = 0.0                # every expected event searchable
    first_indexed: float = 0.0
    parse_done: float = 0.0          # every raw line read by a parse stage
    steady: float = 0.0              # lines/s read by the parse stage(s), 10 % (or shipped) -> 90 %
    steady_events_lag: float = 0.0   # events-topic lag when the parse stage(s) had read 90 %
    worker_cpu: list = field(default_factory=list)
    service_cpu: dict = field(default_factory=dict)
    stats: list = field(default_factory=list)
    timeline: list = field(default_factory=list)   # (t, lines read, events in ES, lag raw, lag events)
    raw_partitions: list = field(default_factory=list)   # per worker: the raw partitions it held
    per_partition: dict = field(default_factory=dict)    # raw partition -> lines (key = host)

    @property
    def e2e_lines(self) -> float:
        return self.lines / self.done

    @property
    def e2e_records(self) -> float:
        return self.records / self.done


def _held_raw(samples, topic: str) -> set[int]:
    return {int(lab["partition"]) for n, lab, _v in samples
            if n == "osloscope_consumer_lag" and lab.get("topic") == topic}


def run_backlog(base_env: dict, backlog: Backlog, *, workers: int, index_events: str, timeout: float,
                keep: bool, label: str | None = None, kafka_python: bool = False) -> Run:
    """N workers (one app id) on a fresh raw topic; once every partition has its worker,
    the backlog is shipped in; measured until every expected event is searchable. Then the
    baseline: aiokafka (and kafka-python) reading the same raw topic."""
    tag = uuid.uuid4().hex[:6]
    ns = Namespace(base_env, tag, es_index_events=index_events).setup()
    want = backlog.expected(index_events)
    raw = ns.settings.topics.raw
    run = Run(label or f"{workers} worker(s), index_events={index_events}", workers, index_events,
              lines=backlog.lines, records=want)
    try:
        say(f"[{tag}] starting {workers} worker(s), index_events={index_events} (load {loadavg()})")
        ws = start_workers(ns, workers)
        ready_first = min(w.ready_at for w in ws)
        run.ready_apart = max(w.ready_at for w in ws) - ready_first
        try:
            # every raw partition held by exactly one worker, the same twice running
            partitions = set(end_offsets(ns.settings, raw))
            before, deadline = None, time.monotonic() + 120
            while True:
                held = [_held_raw(w.metrics(), raw) for w in ws]
                if (held == before and set().union(*held) == partitions
                        and sum(map(len, held)) == len(partitions)):
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"[{tag}] the workers did not share the raw partitions within 120 s: {held}")
                before = held
                time.sleep(1.0)
            run.settled = time.time() - ready_first
            run.raw_partitions = held
            cpu = ServiceCPU(ns.settings)
            cpu0 = [w.cpu() or 0.0 for w in ws]
            run.load_start = loadavg()
            say(f"[{tag}] shipping the backlog in; expecting {want:,} events (load {run.load_start})")
            cp = ns.dir / "ship-checkpoints"
            t0 = time.time()
            ship = subprocess.Popen(OSLOSCOPE + ["ship", str(backlog.dir), "--once", "--layout-hosts",
                                                 "--stats-interval", "3600"],
                                    cwd=ROOT, env={**os.environ, **ns.env, "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": str(cp)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while True:
                now = time.time()
                if not run.shipped and ship.poll() is not None:
                    if ship.returncode != 0:
                        sys.exit(f"osloscope ship failed ({ship.returncode}): {ship.stderr.read()[-2000:]!r}")
                    run.shipped = now - t0
                samples = [s for w in ws for s in w.metrics()]
                read = metric_sum(samples, "osloscope_lines_total", stage="parse", outcome="in")
                lag = lag_by_role(samples, ns.settings)
                count = ns.events_count()
                run.timeline.append((now - t0, read, count, lag["raw"], lag["events"]))
                if count and not run.first_indexed:
                    run.first_indexed = now - t0
                if read >= backlog.lines and not run.parse_done:
                    run.parse_done = now - t0
                if count >= want and run.shipped:
                    run.done = now - t0
                    break
                for w in ws:
                    if w.exited():
                        sys.exit(f"{w.name} exited ({w.proc.returncode}); see {w.log_path}")
                if time.monotonic() > deadline:
                    sys.exit(f"[{tag}] only {count:,}/{want:,} events indexed within {timeout:.0f} s; see {ns.dir}")
                time.sleep(max(0.0, 1.0 - (time.time() - now)))
            run.load_end = loadavg()
            run.worker_cpu = [(w.cpu() or 0.0) - c for w, c in zip(ws, cpu0)]
            run.service_cpu = cpu.used()
        finally:
            stop_all(ws)
        run.stats = [(w.stats_lines() or [""])[-1] for w in ws]
        run.steady, run.steady_events_lag = _steady(run.timeline, backlog.lines, run.shipped)
        run.per_partition = end_offsets(ns.settings, raw)
        got = sum(run.per_partition.values())
        if got != backlog.lines:
            sys.exit(f"[{tag}] the raw topic holds {got:,} records, the backlog has {backlog.lines:,} lines")
        say(f"[{tag}] baseline: aiokafka reading the same raw topic (load {loadavg()})")
        run.baseline = raw_consume_rate(ns.settings, backlog.lines)
        if kafka_python:
            run.kafka_python = kafka_python_consume_rate(ns.settings, backlog.lines)
        return run
    finally:
        if not keep:
            ns.cleanup()


def _steady(timeline, total: int, start: float) -> tuple[float, float]:
    """Lines/s read by the parse stage(s) from 10 % of ``total`` (or from ``start``, the end
    of shipping, if later: the shipper competes for the CPU) to 90 % (interpolated between
    samples), and the events-topic lag at 90 %."""
    first = next(((t, read) for t, read, *_ in timeline if t >= start and read >= 0.1 * total), None)
    goal, prev = 0.9 * total, None
    for t, read, _c, _lr, lag_ev in timeline:
        if read >= goal:
            t90 = t if prev is None or read == prev[1] else prev[0] + (t - prev[0]) * (goal - prev[1]) / (read - prev[1])
            if first is None or t90 <= first[0]:
                return 0.0, lag_ev
            return (goal - first[1]) / (t90 - first[0]), lag_ev
        prev = (t, read)
    return 0.0, 0.0


# ---------------------------------------------------------------------------------------------------------
# printing

def print_runs(backlog: Backlog, runs: list[Run]) -> None:
    w = 52
    print(f"\nbacklog: {backlog.lines:,} lines ({backlog.bytes / 1e6:.1f} MB) from {len(backlog.hosts)} hosts, "
          f"{backlog.records:,} records ({backlog.records_warning:,} at WARNING or above)")
    print(f"\n{'path':<{w}} {'lines/s':>9} {'records/s':>10} {'x raw':>7}  load avg 1/5/15")
    for r in runs:
        print(f"{'raw consume, aiokafka (baseline)':<{w}} {r.baseline:>9,.0f} {'':>10} {1.0:>7.3f}  (after the run)")
        if r.kafka_python:
            print(f"{'raw consume, kafka-python':<{w}} {r.kafka_python:>9,.0f} {'':>10} "
                  f"{r.kafka_python / r.baseline:>7.3f}")
        ship = backlog.lines / r.shipped
        print(f"{'  produce: osloscope ship --once, workers running':<{w}} {ship:>9,.0f} {'':>10} "
              f"{ship / r.baseline:>7.3f}  {r.load_start}")
        steady_records = r.steady * backlog.records / r.lines        # records parsed, whatever is indexed
        print(f"{'  ' + r.label + ': steady':<{w}} {r.steady:>9,.0f} {steady_records:>10,.0f} "
              f"{r.steady / r.baseline:>7.3f}  {r.load_end}")
        print(f"{'  ' + r.label + ': ship -> all searchable':<{w}} {r.e2e_lines:>9,.0f} "
              f"{r.lines / r.done * backlog.records / r.lines:>10,.0f} {r.e2e_lines / r.baseline:>7.3f}  {r.load_end}")
    print("\n(records/s: records parsed, indexed or not; steady: raw lines read by the parse stage between "
          "10 % of the backlog, or the end of shipping, and 90 %)")
    for r in runs:
        print(f"\n{r.label}:")
        print(f"  shipped in {r.shipped:.1f} s; first event searchable after {r.first_indexed:.1f} s; every raw line "
              f"read after {r.parse_done:.1f} s; all {r.records:,} expected events searchable after {r.done:.1f} s "
              f"(after the last line read: the event-time tail)")
        print(f"  workers ready {r.ready_apart:.1f} s apart, every partition assigned {r.settled:.1f} s after the "
              f"first was ready; raw partitions held: "
              + "; ".join(f"w{i + 1} {sorted(p)}" for i, p in enumerate(r.raw_partitions)))
        print(f"  events-topic lag when 90 % of the raw lines were read: {r.steady_events_lag:,.0f}")
        cpu = " + ".join(f"{c:.1f}" for c in r.worker_cpu)
        print(f"  CPU seconds over the {r.done:.0f} s: worker(s) {cpu} = {sum(r.worker_cpu) * 1000 / r.lines:.2f} ms "
              f"per line; " + ", ".join(f"{k} {v:.1f}" for k, v in r.service_cpu.items() if v is not None)
              + " (they serve other clients too)")
        for i, s in enumerate(r.stats):
            print(f"  worker w{i + 1} phases (s, cumulative): {phases(s)}")
            print(f"  worker w{i + 1} {state_written(s)}")
        print("  timeline (s since shipping began: raw lines read, events searchable, raw lag, events lag): "
              + "  ".join(f"{t:.0f}:{rd:.0f}/{c}/{lr:.0f}/{le:.0f}"
                          for t, rd, c, lr, le in r.timeline[::max(1, len(r.timeline) // 14)]))


def prepare(args) -> Backlog:
    """The backlog written and counted (shipped by each run into its own raw topic)."""
    root = WORK / f"backlog-{uuid.uuid4().hex[:6]}"
    say(f"writing the backlog: {args.records:,} records over {args.files} files (load {loadavg()})")
    backlog = make_backlog(root, args.records, args.files)
    say(f"backlog: {backlog.lines:,} lines, {backlog.records:,} records, {len(backlog.hosts)} hosts")
    return backlog


def backlog_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--records", type=int, default=60_000, help="records in the backlog (default 60,000)")
    ap.add_argument("--files", type=int, default=28, help="log files (default 28: 6 hosts)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take")
    ap.add_argument("--keep", action="store_true", help="keep the topics, indices and logs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    backlog_args(ap)
    ap.add_argument("--index-events", nargs="+", default=["all", "warning+"], choices=("all", "warning+"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts to run (default 1)")
    args = ap.parse_args()

    base_env = service_env()
    backlog = prepare(args)
    try:
        runs = [run_backlog(base_env, backlog, workers=n, index_events=policy, timeout=args.timeout,
                            keep=args.keep, kafka_python=not i)
                for i, (policy, n) in enumerate((p, n) for p in args.index_events for n in args.workers)]
        print_runs(backlog, runs)
    finally:
        if not args.keep:
            shutil.rmtree(backlog.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
