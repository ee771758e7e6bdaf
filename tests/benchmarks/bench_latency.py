"""Latency under a steady live load: a line written -> its incident searchable (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_latency.py [--shippers 20] [--rate 2000] [--duration 120]
        [--probe-every 1] [--quiet-every S] [--workers 1] [--set worker.source_slack=0 ...] [--keep]

Kafka and Elasticsearch as in bench_pipeline.py (OSLOSCOPE_KAFKA_BOOTSTRAP,
OSLOSCOPE_ES_URL), with topics, indices and an app id of the run's own.

The load: ``--shippers`` hosts, each a directory ``host-NN/nova/nova-compute.log``
followed by an ``osloscope ship`` process of its own (as on a fleet: one
shipper per hypervisor, default settings, from the end of the file). One
writer appends ``--rate`` lines/s in total to these files, evenly: real
nova-compute lines (gen_logs.py ``replay``, fresh request ids per host and
pass), stamped with the current UTC time as oslo.log writes them. With
``--quiet-every S`` each host also has ``neutron/l3-agent.log`` written one
line every S seconds, as a quiet agent log is.

The probes: from ``--warmup`` seconds into the load, every ``--probe-every``
seconds, the writer puts a failure line between two records of the next
host's nova-compute.log -- libvirt's "cannot acquire state change lock" for
a fresh instance id, which the signature libvirt_state_change_lock_timeout
(dedupe key host + instance) makes into an incident of its own -- and notes
the wall clock once the line is flushed. A poller searches Elasticsearch
every 0.2 s for the probes not found yet: the incident (incidents index,
``resources.instance``) and the event (events index,
``openstack.instance_id``). Latency = found - written: shipper, Kafka, the
parse stage (event time: events wait until every file of their partition
has passed them, minus ``worker.source_slack``), the incidents topic, the
indexing agent and Elasticsearch's 1 s refresh; the poll adds up to 0.2 s.

Every 2 s the workers' /metrics are sampled: consumer lag per input topic
and the events each stage holds for their turn (``osloscope_event_time``).
Printed: p50/p90/p99/max of both latencies, the lag over time, the load
average, the CPU seconds of the workers and shippers, and each worker's
``osloscope stats`` seconds per phase. ``--set SECTION.KEY=VALUE`` sets a
setting for the shippers and workers (e.g. ``worker.source_slack=0``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

from bench_pipeline import (OSLOSCOPE, Namespace, Proc, end_offsets, gen_logs, lag_by_role, loadavg, metric_sum,
                            phases, say, service_env, start_workers, state_written, stop_all)

HEADER = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\d+)(?= )")
RECORD_START = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ [A-Z]+ \S+ \[")     # with a context block
REQ = re.compile(rb"req-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
PROBE = ("{ts} {pid} WARNING nova.virt.libvirt.driver [req-{rid} - - - - -] [instance: {inst}] Cannot destroy "
         "instance, operation time out: libvirtError: Timed out during operation: cannot acquire state change "
         "lock (held by remoteDispatchDomainBlockJobAbort)\n")


def utc_stamp(t: float) -> bytes:
    return (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}").encode()


def pools(root: Path) -> dict[str, list[bytes]]:
    """Lines of real nova-compute and l3-agent logs (gen_logs replay: controller-1, compute-1, -2)."""
    gen_logs.generate_replay(root, records=20_000, nfiles=14, hours=6.0)
    out: dict[str, list[bytes]] = {}
    for name in ("nova/nova-compute.log", "neutron/l3-agent.log"):
        out[name] = [ln for p in sorted(root.glob(f"compute-*/{name}")) for ln in p.read_bytes().splitlines(True)]
    return out


class LogFile:
    """One file a host writes: lines of a pool, cycled, as one process writes them (one pid,
    the host's), with fresh request ids per host and pass and the current time (a record's
    traceback lines keep its time); a probe goes in before the next line that starts a record."""

    def __init__(self, path: Path, pool: list[bytes], rate: float, seed: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "ab", buffering=0)
        self.pool, self.rate, self.seed = pool, rate, seed
        self.pid = b"%d" % (2000 + seed)
        self.pos = (seed * 7919) % len(pool)
        self.written = 0
        self.probe: bytes | None = None
        self.last: tuple[bytes, bytes] = (b"", b"")     # (a header's time in the pool, its new time)

    def _line(self, now_stamp: bytes) -> bytes:
        i = self.pos
        self.pos += 1
        line = self.pool[i % len(self.pool)]
        salt = f"{self.seed}/{i // len(self.pool)}"
        line = REQ.sub(lambda m: b"req-" + _uuid(salt, m.group(1)), line)
        m = HEADER.match(line)
        if m:
            old = m.group(1)
            if old != self.last[0]:
                self.last = (old, now_stamp)
            line = self.last[1] + b" " + self.pid + line[m.end(2):]
        return line

    def due(self, now: float, t0: float) -> int:
        return int(self.rate * (now - t0)) - self.written

    def write(self, n: int, now: float) -> float | None:
        """Append ``n`` lines (and the pending probe, before the first of them that starts a
        record); the wall clock after the write if it held the probe."""
        stamp = utc_stamp(now)
        out = []
        with_probe = False
        for _ in range(n):
            if self.probe is not None and RECORD_START.match(self.pool[self.pos % len(self.pool)]):
                out.append(self.probe)
                self.probe, with_probe = None, True
            out.append(self._line(stamp))
        self.written += n
        if out:
            self.fh.write(b"".join(out))
        return time.time() if with_probe else None


def _uuid(salt: str, old: bytes) -> bytes:
    h = hashlib.md5(salt.encode() + old).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}".encode()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))]


class Poller(threading.Thread):
    """Finds the probes in Elasticsearch: incident and event, every ``every`` seconds."""

    def __init__(self, ns: Namespace, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        from pipeline.sinks.elasticsearch import make_client

        self.ns, self.every = ns, every
        self.client = make_client(ns.settings.elasticsearch)
        self.lock = threading.Lock()
        self.written: dict[str, float] = {}                  # instance -> wall clock written
        self.found: dict[str, dict[str, float]] = {"incident": {}, "event": {}}
        self.stop = threading.Event()

    def add(self, inst: str, t: float) -> None:
        with self.lock:
            self.written[inst] = t

    def pending(self, kind: str) -> list[str]:
        with self.lock:
            return [i for i in self.written if i not in self.found[kind]]

    def run(self) -> None:
        es = self.ns.settings.elasticsearch
        where = {"incident": (es.incidents_index, "resources.instance"),
                 "event": (f"{es.events_index_prefix}*", "openstack.instance_id")}
        while not self.stop.is_set():
            t = time.time()
            for kind, (index, fld) in where.items():
                ids = self.pending(kind)
                if not ids:
                    continue
                try:
                    r = self.client.search(index=index, query={"terms": {fld: ids}}, size=len(ids) * 2,
                                           source=[fld], allow_no_indices=True, ignore_unavailable=True)
                except Exception:
                    continue
                now = time.time()
                for hit in r["hits"]["hits"]:
                    src = hit["_source"]
                    for part in fld.split("."):
                        src = src.get(part) if isinstance(src, dict) else None
                    for inst in (src if isinstance(src, list) else [src]):
                        if inst in ids and inst not in self.found[kind]:
                            self.found[kind][inst] = now
            self.stop.wait(max(0.0, self.every - (time.time() - t)))

    def latencies(self, kind: str) -> list[float]:
        return [self.found[kind][i] - t for i, t in self.written.items() if i in self.found[kind]]


class Sampler(threading.Thread):
    """The workers' /metrics every ``every`` seconds: lag per input topic, events held."""

    def __init__(self, ns: Namespace, workers, t0: float, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.ns, self.workers, self.t0, self.every = ns, workers, t0, every
        self.rows: list[tuple] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.time()
            samples = [s for w in self.workers for s in w.metrics()]
            lag = lag_by_role(samples, self.ns.settings)
            self.rows.append((t - self.t0, metric_sum(samples, "osloscope_lines_total", stage="parse", outcome="in"),
                              lag["raw"], lag["events"], lag["incidents"],
                              metric_sum(samples, "osloscope_event_time", stage="parse", kind="held"),
                              metric_sum(samples, "osloscope_event_time", stage="correlate", kind="held"),
                              loadavg()))
            self.stop.wait(max(0.0, self.every - (time.time() - t)))


def setting_env(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE")
        section = "ES" if section == "elasticsearch" else section.upper()
        out[f"OSLOSCOPE_{section}_{name.upper()}"] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shippers", type=int, default=20, help="hosts, one `osloscope ship` each (default 20)")
    ap.add_argument("--rate", type=float, default=2000.0, help="lines/s written in total (default 2000)")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first probe")
    ap.add_argument("--probe-every", type=float, default=1.0, help="seconds between probes (default 1)")
    ap.add_argument("--quiet-every", type=float, default=0.0,
                    help="also a quiet l3-agent.log per host, one line every S seconds (default: none)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last probes")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--keep", action="store_true", help="keep the topics, indices and logs")
    args = ap.parse_args()

    base_env = service_env()
    tag = uuid.uuid4().hex[:6]
    ns = Namespace(base_env, tag, **{k[len("OSLOSCOPE_"):].lower(): v
                                     for k, v in setting_env(args.set).items()}).setup()
    procs: list[Proc] = []
    try:
        say(f"[{tag}] content, {args.shippers} hosts, workers (load {loadavg()})")
        pool = pools(ns.dir / "pool")
        root = ns.dir / "hosts"
        per_host = args.rate / args.shippers
        files: list[LogFile] = []
        main_files: list[LogFile] = []
        for h in range(args.shippers):
            host = f"host-{h + 1:02d}"
            f = LogFile(root / host / "nova" / "nova-compute.log", pool["nova/nova-compute.log"], per_host, h)
            files.append(f)
            main_files.append(f)
            if args.quiet_every:
                files.append(LogFile(root / host / "neutron" / "l3-agent.log", pool["neutron/l3-agent.log"],
                                     1.0 / args.quiet_every, 1000 + h))
        workers = start_workers(ns, args.workers)
        procs += workers
        for h in range(args.shippers):
            host = f"host-{h + 1:02d}"
            procs.append(Proc(OSLOSCOPE + ["ship", str(root / host), "--host", host, "--stats-interval", "3600"],
                              {**ns.env, "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": str(ns.dir / "ship" / host)},
                              ns.dir / f"ship-{host}.log", f"ship {host}").start())
        # every shipper follows its files (its first checkpoints are written once it does):
        # then one line each, and wait until Kafka holds them all
        deadline = time.monotonic() + 120
        while not all((ns.dir / "ship" / f"host-{h + 1:02d}" / "checkpoints.json").exists()
                      for h in range(args.shippers)):
            if time.monotonic() > deadline:
                raise SystemExit(f"the shippers did not start within 120 s; see {ns.dir}")
            time.sleep(0.2)
        for f in files:
            f.write(1, time.time())
        deadline = time.monotonic() + 120
        while sum(end_offsets(ns.settings, ns.settings.topics.raw).values()) < len(files):
            if time.monotonic() > deadline:
                raise SystemExit(f"the shippers did not ship their first lines within 120 s; see {ns.dir}")
            time.sleep(0.5)
        for f in files:
            f.written = 0
        cpu0 = {p.name: p.cpu() or 0.0 for p in procs}
        load0 = loadavg()
        poller = Poller(ns)
        poller.start()
        t0 = time.time()
        sampler = Sampler(ns, workers, t0)
        sampler.start()
        say(f"[{tag}] load: {args.rate:,.0f} lines/s over {args.shippers} hosts for {args.duration:.0f} s, "
            f"a probe every {args.probe_every:g} s from {args.warmup:g} s (load {load0})")
        next_probe = t0 + args.warmup
        probe_host = 0
        waiting: dict[int, str] = {}             # main file index -> instance of its pending probe
        t_end = drain_until = None
        while True:
            now = time.time()
            if t_end is None and now - t0 >= args.duration:
                # the probes are over; the load goes on until every probe was found (a stream
                # that stops is held back to its sources' idle timeout: not a steady state)
                t_end, written, load_end = now, sum(f.written for f in files), loadavg()
                cpu = {p.name: (p.cpu() or 0.0) - cpu0[p.name] for p in procs}
                drain_until = now + args.drain
                say(f"[{tag}] {written:,} lines in {t_end - t0:.1f} s; the load goes on until the last "
                    f"probes are found (at most {args.drain:.0f} s)")
            if t_end is not None and ((not waiting and not poller.pending("incident")
                                       and not poller.pending("event")) or now > drain_until):
                break
            if t_end is None and now >= next_probe:
                inst = str(uuid.uuid4())
                i = probe_host % len(main_files)
                main_files[i].probe = PROBE.format(ts=utc_stamp(now).decode(), pid=main_files[i].pid.decode(),
                                                   rid=uuid.uuid4(), inst=inst).encode()
                waiting[i] = inst
                probe_host += 1
                next_probe += args.probe_every
            for f in files:
                n = f.due(now, t0)
                if n > 0 or f.probe is not None:
                    done = f.write(max(n, 0), now)
                    if done is not None:
                        poller.add(waiting.pop(main_files.index(f)), done)
            for p in procs:
                if p.exited():
                    raise SystemExit(f"{p.name} exited ({p.proc.returncode}); see {p.log_path}")
            time.sleep(max(0.0, 0.02 - (time.time() - now)))
        poller.stop.set()
        sampler.stop.set()
        (ns.dir / "probes.json").write_text(json.dumps(
            {inst: {"written": t, **{k: poller.found[k].get(inst) for k in poller.found}}
             for inst, t in poller.written.items()}, indent=1))
        total = sum(f.written for f in files)
        shipped = sum(end_offsets(ns.settings, ns.settings.topics.raw).values()) - len(files)
        stats = [(w.stats_lines() or [""])[-1] for w in workers]
        report(args, ns, poller, sampler, written, t_end - t0, (total, shipped), cpu, load0, load_end, stats,
               workers)
    finally:
        stop_all(procs)
        if not args.keep:
            ns.cleanup()
            shutil.rmtree(ns.dir / "pool", ignore_errors=True)
            shutil.rmtree(ns.dir / "hosts", ignore_errors=True)


def report(args, ns, poller, sampler, written, took, shipped, cpu, load0, load_end, stats, workers) -> None:
    """``written``, ``took``, ``cpu``, ``load_end``: over the probing part of the load."""
    w = ns.settings.worker
    total, shipped = shipped
    print(f"\nlive load: {args.shippers} shippers, {written:,} lines in {took:.0f} s = {written / took:,.0f} lines/s "
          f"written while probing ({total:,} lines in all, {shipped:,} of them in Kafka by the end), "
          f"{args.workers} worker(s); load avg {load0} at the start, {load_end} at the end of the probes")
    print(f"settings: worker.source_slack={w.source_slack:g} source_idle_timeout={w.source_idle_timeout:g} "
          f"source_warmup={w.source_warmup:g} allowed_lateness={w.allowed_lateness:g} "
          f"batch_timeout={w.batch_timeout:g} batch_size={w.batch_size}; "
          f"shipper.poll_interval={ns.settings.shipper.poll_interval:g} linger_ms={ns.settings.shipper.linger_ms}"
          + (f"; a quiet l3-agent.log per host, a line every {args.quiet_every:g} s" if args.quiet_every else ""))
    print(f"\n{'line written -> searchable':<28} {'probes':>7} {'found':>6} {'p50 s':>7} {'p90 s':>7} "
          f"{'p99 s':>7} {'max s':>7}")
    for kind, label in (("incident", "its incident (incidents)"), ("event", "its event (events index)")):
        lat = poller.latencies(kind)
        if lat:
            print(f"{label:<28} {len(poller.written):>7} {len(lat):>6} {percentile(lat, 50):>7.2f} "
                  f"{percentile(lat, 90):>7.2f} {percentile(lat, 99):>7.2f} {max(lat):>7.2f}")
        else:
            print(f"{label:<28} {len(poller.written):>7} {0:>6}")
    print("\nconsumer lag and held events over time (worker /metrics):")
    print(f"{'t s':>5} {'lines/s in':>10} {'lag raw':>8} {'lag events':>10} {'lag incidents':>13} "
          f"{'held parse':>10} {'held corr.':>10}  load avg")
    prev = None
    for row in sampler.rows:
        t, read, lr, le, li, hp, hc, load = row
        rate = (read - prev[1]) / (t - prev[0]) if prev and t > prev[0] else 0.0
        prev = row
        if int(t) % 10 < 2 or row is sampler.rows[-1]:
            print(f"{t:>5.0f} {rate:>10,.0f} {lr:>8,.0f} {le:>10,.0f} {li:>13,.0f} {hp:>10,.0f} {hc:>10,.0f}  {load}")
    lags = [r[2] for r in sampler.rows if args.warmup <= r[0] <= took]
    if lags:
        print(f"raw lag during the probes: mean {sum(lags) / len(lags):,.0f}, max {max(lags):,.0f} records")
    wcpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
    scpu = sum(v for k, v in cpu.items() if k.startswith("ship"))
    rows = [r for r in sampler.rows if r[0] <= took]
    read = rows[-1][1] - rows[0][1] if len(rows) > 1 else 0
    print(f"\nCPU seconds over the load: worker(s) {wcpu:.1f} ({wcpu * 1000 / max(read, 1):.2f} ms per line read: "
          f"{read:,.0f} lines read while {written:,} were written, "
          f"{wcpu / took:.0%} of a core), shippers {scpu:.1f} ({scpu / took:.0%} of a core for {args.shippers})")
    for wk, s in zip(workers, stats):
        print(f"{wk.name} phases (s, cumulative): {phases(s)}")
        print(f"{wk.name} {state_written(s)}")


if __name__ == "__main__":
    main()
