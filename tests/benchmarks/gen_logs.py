"""Deterministic oslo.log data sets for the CLI benchmarks (not a pytest module).

Two generators, both writing ``<root>/<host>/<project>/<file>.log`` trees
that ``osloscope analyze <root>`` reads as it reads a log collector's dump:

* ``replay`` (bench_analyze.py): REAL records from the repository --
  tests/fixtures/corpus/*.log, the 2013 logstash events of
  tests/fixtures/corpus/*.jsonl (header rebuilt from their fields),
  tests/fixtures/seeds/*/*/*.log and deploy/samples/ -- repeated over several
  controllers and computes. Each record keeps all its lines (header,
  continuation and traceback lines; a multi-line record of the newer format,
  whose lines repeat the header, stays one record). Records of one request id
  that follow each other in a source stay together as one group. Every
  repetition of a group gets fresh request ids (``req-<uuid>``, everywhere in
  its lines) and new timestamps: time moves forward monotonically in every
  file (a group's own gaps are kept, up to a minute). The only other change to
  a line is its timestamp. A group is drawn by its worst level: ~93 %
  healthy (DEBUG/INFO/AUDIT), ~5 % WARNING, ~2 % ERROR/CRITICAL.
* ``requests`` (bench_analyze_memory.py): N distinct short requests in real
  oslo.log format, as in bench_request_memory.py -- boots (nova-api ``POST
  /v2.1/servers`` 202, nova-conductor, nova-compute), volume creates
  (cinder-api ``POST /v3/<project>/volumes`` 202, cinder-volume) and API
  reads (``GET /v2.1/servers/<id>`` 200) -- 2-5 records each over a few
  seconds, ~R new requests per second of log time, streamed to the files.

Run directly to write a data set: ``python gen_logs.py replay DIR [--records N]``
or ``python gen_logs.py requests DIR [--ids N]``.
"""
from __future__ import annotations

import argparse
import heapq
import json
import random
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
SEEDS = ROOT / "tests" / "fixtures" / "seeds"
SAMPLES = ROOT / "deploy" / "samples"

LEVELS = ("TRACE", "DEBUG", "INFO", "AUDIT", "WARNING", "ERROR", "CRITICAL")
HEADER = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?)( (\d+) (" + "|".join(LEVELS) + r") (\S*).*)$",
                    re.S)
REQ = re.compile(r"req-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
HEALTHY, WARNING, ERROR = "healthy", "warning", "error"
SHARE = {HEALTHY: 0.93, WARNING: 0.05, ERROR: 0.02}
# libraries every OpenStack service logs through: their healthy records are real in any service's file
SHARED_LOGGERS = ("oslo", "keystonemiddleware", "keystoneclient", "routes")
BASE_MS = int(datetime(2017, 6, 6, 0, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Stamp:
    """``YYYY-MM-DD HH:MM:SS.mmm`` of a UTC epoch in ms, the seconds cached."""

    def __init__(self) -> None:
        self._sec, self._text = None, ""

    def __call__(self, ms: int) -> str:
        sec = ms // 1000
        if sec != self._sec:
            self._sec = sec
            self._text = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._text}.{ms % 1000:03d}"


def _ms(text: str) -> int:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return int(datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp() * 1000)


# ----------------------------------------------------------------------------------------------------------------
# replay: real records

def _source_service(path: Path) -> str | None:
    """The service a fixture file's lines come from (None: not an oslo.log daemon's file)."""
    name = path.name
    for key, service in (("nova-api", "nova-api"), ("nova-conductor", "nova-conductor"),
                         ("nova-compute", "nova-compute"), ("neutron-server", "neutron-server"),
                         ("l3-agent", "neutron-l3-agent"), ("metadata-agent", "neutron-metadata-agent"),
                         ("keystone", "keystone"), ("glance-registry", "glance-api")):
        if key in name:
            return service
    if name == "server.log" and path.parent.name == "neutron":
        return "neutron-server"
    return None                   # nova-manage (a command, not a daemon), syslog's messages.log


def _event_lines(doc: dict) -> tuple[str | None, list[str]]:
    """A logstash event of the 2013 corpus as the oslo.log lines it was merged from."""
    service = {"screen-n-api": "nova-api", "screen-q-svc": "neutron-server",
               "screen-c-vol": "cinder-volume"}.get(Path(doc.get("filename", "")).stem)
    ts = doc["@timestamp"].replace("T", " ").rstrip("Z")
    first = f"{ts} {doc['pid']} {doc['loglevel']} {doc['module']} {doc['@message']}"
    return service, first.split("\n")


def source_files() -> list[tuple[str, str, list[str]]]:
    """(service, name, lines) of every real fixture file used."""
    out = []
    files = sorted(CORPUS.glob("*.log")) + sorted(SEEDS.glob("*/*/*.log")) + sorted(SAMPLES.glob("*/*/*.log"))
    for path in files:
        service = _source_service(path)
        if service is None:
            continue
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        out.append((service, str(path.relative_to(ROOT)), text.splitlines()))
    for path in sorted(CORPUS.glob("*.jsonl")):
        for i, line in enumerate(path.read_text().splitlines()):
            service, lines = _event_lines(json.loads(line))
            if service:
                out.append((service, f"{path.relative_to(ROOT)}:{i + 1}", lines))
    return out


class Unit:
    """One record: lines as (ms after the record's first line or None, text after the timestamp)."""
    __slots__ = ("level", "logger", "start", "lines", "rid")

    def __init__(self, start: int, level: str, logger: str, rid: str | None) -> None:
        self.start, self.level, self.logger, self.rid = start, level, logger, rid
        self.lines: list[tuple[int | None, str]] = []


def split_records(lines: list[str]) -> list[Unit]:
    """Records of a real file. Lines before the first header, and fragments that
    start with a TRACE line (an excerpt cut inside a traceback), are dropped."""
    units: list[Unit] = []
    cur: Unit | None = None
    key = None
    for line in lines:
        m = HEADER.match(line)
        if m:
            ts_text, rest, pid, level, logger = m.group(1, 2, 3, 4, 5)
            ms = _ms(ts_text)
            if cur is not None and (level == "TRACE" or (ts_text, pid, level, logger) == key):
                cur.lines.append((max(0, ms - cur.start), rest))
                continue
            if level == "TRACE":
                cur = None
                continue
            rid = REQ.search(line)
            cur = Unit(ms, level, logger, rid.group(1) if rid else None)
            cur.lines.append((0, rest))
            key = (ts_text, pid, level, logger)
            units.append(cur)
        elif cur is not None:
            cur.lines.append((None, line))
    return units


def _klass(units: list[Unit]) -> str:
    worst = max(LEVELS.index(u.level) for u in units)
    return ERROR if worst >= LEVELS.index("ERROR") else WARNING if worst == LEVELS.index("WARNING") else HEALTHY


class Group:
    """Consecutive records of one request id (or one record without one), ready to
    be written again: line templates with the request ids as format fields."""
    __slots__ = ("units", "klass", "nids", "records")

    def __init__(self, units: list[Unit]) -> None:
        ids: dict[str, int] = {}
        self.units = []
        for u in units:
            lines = []
            for delta, text in u.lines:
                text = text.replace("{", "{{").replace("}", "}}")
                text = REQ.sub(lambda m: "req-{%d}" % ids.setdefault(m.group(1), len(ids)), text)
                lines.append((None if delta is None else min(delta, 1000), text))
            self.units.append((min(u.start - units[0].start, 60_000) if u.start >= units[0].start else 0, lines))
        self.klass, self.nids, self.records = _klass(units), len(ids), len(units)


def group_records(units: list[Unit]) -> list[list[Unit]]:
    groups: list[list[Unit]] = []
    for u in units:
        if groups and u.rid is not None and groups[-1][-1].rid == u.rid:
            groups[-1].append(u)
        else:
            groups.append([u])
    return groups


def pools() -> tuple[dict[str, dict[str, list[Group]]], dict[str, int]]:
    """service -> class -> groups; each pool also holds the shared libraries' healthy records."""
    own: dict[str, list[Group]] = {}
    shared: list[Group] = []
    used: dict[str, int] = {}
    for service, name, lines in source_files():
        units = split_records(lines)
        used[name] = len(units)
        for g in group_records(units):
            own.setdefault(service, []).append(Group(g))
        shared.extend(Group([u]) for u in units
                      if u.level in ("DEBUG", "INFO", "AUDIT") and u.logger.startswith(SHARED_LOGGERS))
    out: dict[str, dict[str, list[Group]]] = {}
    for service in {s for _, _, s in LAYOUT_CONTROLLER + LAYOUT_COMPUTE}:
        by: dict[str, list[Group]] = {HEALTHY: [], WARNING: [], ERROR: []}
        for g in own.get(service, []) + shared:
            by[g.klass].append(g)
        out[service] = by
    return out, used


# (directory, file, service) of a controller and of a compute host
LAYOUT_CONTROLLER = [("nova", "nova-api.log", "nova-api"), ("nova", "nova-conductor.log", "nova-conductor"),
                     ("nova", "nova-scheduler.log", "nova-scheduler"), ("cinder", "api.log", "cinder-api"),
                     ("cinder", "volume.log", "cinder-volume"), ("glance", "api.log", "glance-api"),
                     ("neutron", "server.log", "neutron-server"), ("keystone", "keystone.log", "keystone")]
LAYOUT_COMPUTE = [("nova", "nova-compute.log", "nova-compute"), ("neutron", "l3-agent.log", "neutron-l3-agent"),
                  ("neutron", "metadata-agent.log", "neutron-metadata-agent")]
# relative record rates of the services
RATE = {"nova-api": 4, "nova-conductor": 3, "nova-scheduler": 2, "cinder-api": 2, "cinder-volume": 2,
        "glance-api": 2, "neutron-server": 4, "keystone": 4, "nova-compute": 4, "neutron-l3-agent": 1,
        "neutron-metadata-agent": 1}


def replay_layout(nfiles: int) -> list[tuple[str, str, str, str]]:
    """(host, directory, file, service) of the first ``nfiles`` files of
    controller-1, compute-1, compute-2, controller-2, compute-3, compute-4, ..."""
    out: list[tuple[str, str, str, str]] = []
    ctl = cmp = 0
    while len(out) < nfiles:
        ctl += 1
        out += [(f"controller-{ctl}", d, f, s) for d, f, s in LAYOUT_CONTROLLER]
        for _ in range(2):
            cmp += 1
            out += [(f"compute-{cmp}", d, f, s) for d, f, s in LAYOUT_COMPUTE]
    return out[:nfiles]


def _rid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def generate_replay(root: Path, records: int = 320_000, nfiles: int = 28, seed: int = 20170606,
                    hours: float = 12.0) -> dict:
    """Write the replay data set under ``root``; returns counts."""
    t0 = time.perf_counter()
    by_service, used = pools()
    layout = replay_layout(nfiles)
    weights = [RATE[s] for *_, s in layout]
    quota = [records * w // sum(weights) for w in weights]
    quota[0] += records - sum(quota)
    stamp = Stamp()
    stats = {"files": 0, "lines": 0, "records": 0, "bytes": 0, "request_ids": 0,
             "levels": dict.fromkeys(LEVELS[1:], 0), "sources": used}
    klasses, shares = list(SHARE), list(SHARE.values())
    span_ms = int(hours * 3600_000)
    for n, ((host, d, fname, service), want) in enumerate(zip(layout, quota)):
        rng = random.Random(f"{seed}/{host}/{fname}")
        pool = by_service[service]
        path = root / host / d / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        mean_gap = span_ms / max(want, 1)
        clock = last = BASE_MS + int(rng.random() * 1000)
        done = lines = 0
        buf: list[str] = []
        with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as out:
            while done < want:
                klass = rng.choices(klasses, shares)[0]
                groups = pool[klass] or pool[HEALTHY]
                g = groups[rng.randrange(len(groups))]
                ids = [_rid(rng) for _ in range(g.nids)]
                stats["request_ids"] += g.nids
                clock += int(rng.expovariate(1.0 / mean_gap) * g.records) + 1
                base = max(clock, last)
                for udelta, ulines in g.units:
                    t_unit = max(last, base + udelta)
                    for delta, text in ulines:
                        text = text.format(*ids)
                        if delta is None:
                            buf.append(text)
                        else:
                            last = max(last, t_unit + delta)
                            buf.append(stamp(last) + text)
                    lines += len(ulines)
                    lvl = ulines[0][1].split(" ", 3)[2]
                    stats["levels"][lvl] += 1
                done += g.records
                clock = max(clock, last)
                if len(buf) > 20_000:
                    buf.append("")
                    stats["bytes"] += out.write("\n".join(buf))
                    buf.clear()
            if buf:
                buf.append("")
                stats["bytes"] += out.write("\n".join(buf))
        stats["files"] += 1
        stats["lines"] += lines
        stats["records"] += done
        progress(f"  {n + 1:>2}/{len(layout)} {host}/{d}/{fname}: {done:,} records, {lines:,} lines")
    stats["seconds"] = time.perf_counter() - t0
    return stats


# ----------------------------------------------------------------------------------------------------------------
# requests: synthetic short requests, real format

PROJECT = "f19126d9035d4209b363386e8e267129"
USER = "c49d86f8a39148bb809d2da44811ca3b"
TRACE = ["Traceback (most recent call last):",
         '  File "/usr/lib/python2.7/site-packages/nova/compute/manager.py", line 1586, in _prep_block_device',
         "    wait_func=self._await_block_device_map_created)",
         '  File "/usr/lib/python2.7/site-packages/nova/compute/manager.py", line 1258, '
         "in _await_block_device_map_created",
         "    volume_status=volume_status)",
         "VolumeNotCreated: Volume {vol} did not finish being created even after we waited 189 seconds or "
         "61 attempts. And its status is error."]


def requests_layout(computes: int = 4, controllers: int = 2) -> dict[str, str]:
    """role -> relative path; 'api:N', 'conductor:N', 'cinder-api:N', 'volume', 'compute:N'."""
    out = {}
    for c in range(controllers):
        out[f"api:{c}"] = f"controller-{c + 1}/nova/nova-api.log"
        out[f"conductor:{c}"] = f"controller-{c + 1}/nova/nova-conductor.log"
        out[f"cinder-api:{c}"] = f"controller-{c + 1}/cinder/api.log"
    out["volume"] = "block-1/cinder/volume.log"
    for c in range(computes):
        out[f"compute:{c}"] = f"compute-{c + 1}/nova/nova-compute.log"
    return out


def _uuid(i: int, kind: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{i:012x}"


def request_records(i: int, t: int, computes: int, controllers: int) -> list[tuple[int, str, str, str]]:
    """(ms, role, level + logger, rest) of request ``i`` starting at ``t`` ms."""
    rid = f"req-{_uuid(i, 0xabcdef01)}"
    ctx = f"[{rid} {USER} {PROJECT} - default default]"
    kind = i % 6
    c = i % controllers
    out = []
    if kind in (0, 1):                                                          # boot
        inst = _uuid(i, 1)
        host = f"compute:{i % computes}"
        out.append((t, f"api:{c}", "INFO nova.osapi_compute.wsgi.server",
                    f'{ctx} 10.0.0.5 "POST /v2.1/servers HTTP/1.1" status: 202 len: 1221 time: 0.8123456'))
        if i % 2000 != 7:                                                       # rarely: never picked up
            out.append((t + 400, f"conductor:{c}", "INFO nova.conductor.manager",
                        f"{ctx} [instance: {inst}] Scheduling instance"))
            out.append((t + 1200, host, "INFO nova.compute.claims", f"{ctx} [instance: {inst}] Claim successful"))
            if i % 100 == 13:
                vol = _uuid(i, 2)
                out.append((t + 3100, host, "ERROR nova.compute.manager",
                            f"{ctx} [instance: {inst}] Instance failed block device setup"))
                out.extend((t + 3100, host, "ERROR nova.compute.manager",
                            f"[instance: {inst}] " + line.format(vol=vol)) for line in TRACE)
            else:
                out.append((t + 3900, host, "INFO nova.compute.manager",
                            f"{ctx} [instance: {inst}] Took 2.61 seconds to build instance."))
    elif kind == 2:                                                             # volume create
        vol = _uuid(i, 2)
        out.append((t, f"cinder-api:{c}", "INFO cinder.api.openstack.wsgi",
                    f'{ctx} 10.0.0.5 "POST /v3/{PROJECT}/volumes HTTP/1.1" status: 202 len: 900 time: 0.2011230'))
        out.append((t + 800, "volume", "INFO cinder.volume.flows.manager.create_volume",
                    f"{ctx} Volume {vol}: being created as raw with specification: {{'status': u'creating', "
                    f"'volume_size': 1, 'volume_name': u'volume-{vol}'}}"))
        out.append((t + 2500, "volume", "INFO cinder.volume.flows.manager.create_volume",
                    f"{ctx} Volume volume-{vol} ({vol}): created successfully"))
    else:                                                                       # reads
        inst = _uuid(i, 1)
        out.append((t, f"api:{c}", "DEBUG nova.api.openstack.wsgi", f"{ctx} Calling method '<bound method "
                    f"ServersController.show of <nova.api.openstack.compute.servers.ServersController object "
                    f"at 0x7f3c2c0e5d50>>' _process_stack /usr/lib/python2.7/site-packages/nova/api/openstack/"
                    f"wsgi.py:636"))
        out.append((t + 50, f"api:{c}", "INFO nova.osapi_compute.wsgi.server",
                    f'{ctx} 10.0.0.5 "GET /v2.1/servers/{inst} HTTP/1.1" status: 200 len: 1893 time: 0.0481990'))
    return out


PIDS = {"api": 28356, "conductor": 28142, "cinder-api": 3127, "volume": 3405, "compute": 665097}


def generate_requests(root: Path, ids: int, rate: float = 50.0, computes: int = 4, controllers: int = 2) -> dict:
    """Write ``ids`` distinct requests under ``root``, streaming (bounded memory); returns counts."""
    t0 = time.perf_counter()
    layout = requests_layout(computes, controllers)
    outs, bufs = {}, {}
    for role, rel in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        outs[role] = open(path, "w", encoding="utf-8", newline="\n")
        bufs[role] = []
    stamp = Stamp()
    heap: list = []
    seq = records = lines = 0
    step_ms = 1000.0 / rate

    def emit(item) -> None:
        nonlocal records, lines
        ms, _, role, head, rest = item
        pid = PIDS[role.split(":")[0]]
        buf = bufs[role]
        buf.append(f"{stamp(ms)} {pid} {head} {rest}\n")
        lines += 1
        records += not rest.startswith("[instance:")
        if len(buf) >= 4096:
            outs[role].write("".join(buf))
            buf.clear()

    report = max(ids // 10, 1)
    for i in range(ids):
        t = BASE_MS + int(i * step_ms)
        for ms, role, head, rest in request_records(i, t, computes, controllers):
            heapq.heappush(heap, (ms, seq, role, head, rest))
            seq += 1
        while heap and heap[0][0] <= t - 5000:
            emit(heapq.heappop(heap))
        if (i + 1) % report == 0:
            progress(f"  generated {i + 1:,}/{ids:,} request ids")
    while heap:
        emit(heapq.heappop(heap))
    for role, out in outs.items():
        out.write("".join(bufs[role]))
        out.close()
    return {"files": len(outs), "hosts": len({rel.split("/")[0] for rel in layout.values()}),
            "records": records, "lines": lines, "seconds": time.perf_counter() - t0,
            "bytes": sum((root / rel).stat().st_size for rel in layout.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    r = sub.add_parser("replay")
    r.add_argument("dir", type=Path)
    r.add_argument("--records", type=int, default=320_000)
    r.add_argument("--files", type=int, default=28)
    q = sub.add_parser("requests")
    q.add_argument("dir", type=Path)
    q.add_argument("--ids", type=int, default=100_000)
    args = ap.parse_args()
    if args.kind == "replay":
        stats = generate_replay(args.dir, args.records, args.files)
        stats.pop("sources")
    else:
        stats = generate_requests(args.dir, args.ids)
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
