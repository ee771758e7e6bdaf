"""Memory of the request-scoped state as distinct request ids grow (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_request_memory.py [--ids N] [--rate R] [--speed-ids M]

Feeds synthetic events for N distinct request ids (default 1,000,000) through
``RequestWindows`` and ``RequestStalled``, in timestamp order, time moving
forward at R new requests per second of event time (default 50). Each request
is short: 2-5 records over a few seconds --

* 1/3 boots: nova-api ``POST /v2.1/servers`` 202, nova-conductor, then
  nova-compute claim and build records with the instance id;
* 1/6 volume creates: cinder-api ``POST /v3/<project>/volumes`` 202, then
  cinder-volume records naming the volume;
* the rest API reads: ``GET /v2.1/servers/<id>`` 200 and a DEBUG record;
* 1 % end in an ERROR with a traceback; 1 in 2,000 boots is never picked up
  (a request_stalled incident while the rest keeps flowing).

Every 100,000 ids it prints tracemalloc's current and peak traced memory
(the detectors' state; events are generated lazily and dropped), the open
windows and the sizes of the bounded indexes, and the feed rate under
tracing. Memory must stay flat. A second run of M ids (default 200,000)
without tracemalloc gives the plain events/s of the two detectors.
"""
from __future__ import annotations

import argparse
import gc
import heapq
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from detectors.request_stalled import RequestStalled  # noqa: E402
from detectors.model import Event  # noqa: E402
from detectors.request_windows import RequestWindows  # noqa: E402

BASE = datetime(2017, 6, 6, 0, 0, 0, tzinfo=timezone.utc).timestamp()
PROJECT = "f19126d9035d4209b363386e8e267129"
TRACE = ('Traceback (most recent call last):\n'
         '  File "/usr/lib/python2.7/site-packages/nova/compute/manager.py", line 1586, in _prep_block_device\n'
         '    wait_func=self._await_block_device_map_created)\n'
         'VolumeNotCreated: Volume did not finish being created')


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _uuid(i: int, kind: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{i:012x}"


def request_events(i: int, t: float) -> list[tuple[float, Event]]:
    """The 2-5 records of request ``i`` starting at ``t``."""
    rid = f"req-{_uuid(i, 0xabcdef01)}"
    kind = i % 6
    out: list[tuple[float, dict]] = []
    if kind in (0, 1):                                             # boot
        inst = _uuid(i, 1)
        out.append((t, dict(service="nova-api", host="controller-1", logger="nova.osapi_compute.wsgi.server",
                            message=f'10.0.0.5 "POST /v2.1/servers HTTP/1.1" status: 202 len: 1221 time: 0.8',
                            http_method="POST", url_path="/v2.1/servers", status_code=202)))
        if i % 2000 != 7:                                          # rarely: never picked up
            out.append((t + 0.4, dict(service="nova-conductor", host="controller-1",
                                      logger="nova.conductor.manager", message="Scheduling instance")))
            out.append((t + 1.2, dict(service="nova-compute", host=f"compute-{i % 40}", logger="nova.compute.claims",
                                      instance_id=inst, message="Claim successful")))
            if i % 100 == 13:
                out.append((t + 3.1, dict(service="nova-compute", host=f"compute-{i % 40}", level="ERROR",
                                          logger="nova.compute.manager", instance_id=inst,
                                          message="Instance failed block device setup", stack_trace=TRACE,
                                          error_type="VolumeNotCreated",
                                          error_message="Volume did not finish being created",
                                          resources={"volume": [_uuid(i, 2)]})))
            else:
                out.append((t + 3.9, dict(service="nova-compute", host=f"compute-{i % 40}",
                                          logger="nova.compute.manager", instance_id=inst,
                                          message="Took 2.61 seconds to build instance.")))
    elif kind == 2:                                                # volume create
        vol = _uuid(i, 2)
        out.append((t, dict(service="cinder-api", host="controller-1", logger="cinder.api.openstack.wsgi",
                            message=f'10.0.0.5 "POST /v3/{PROJECT}/volumes HTTP/1.1" status: 202 len: 900 time: 0.2',
                            http_method="POST", url_path=f"/v3/{PROJECT}/volumes", status_code=202)))
        out.append((t + 0.8, dict(service="cinder-volume", host="block-1",
                                  logger="cinder.volume.flows.manager.create_volume",
                                  message=f"Volume {vol}: being created as raw with specification: {{}}",
                                  resources={"volume": [vol]})))
        out.append((t + 2.5, dict(service="cinder-volume", host="block-1", logger="cinder.volume.manager",
                                  message="Created volume successfully.", resources={"volume": [vol]})))
    else:                                                          # reads
        inst = _uuid(i, 1)
        out.append((t, dict(service="nova-api", host="controller-1", logger="nova.api.openstack.wsgi",
                            level="DEBUG", message="Calling method 'show'")))
        out.append((t + 0.05, dict(service="nova-api", host="controller-1", logger="nova.osapi_compute.wsgi.server",
                                   message=f'10.0.0.5 "GET /v2.1/servers/{inst} HTTP/1.1" status: 200 len: 1893',
                                   http_method="GET", url_path=f"/v2.1/servers/{inst}", status_code=200,
                                   resources={"instance": [inst]})))
    events = []
    for ts, kw in out:
        kw.setdefault("level", "INFO")
        events.append((ts, Event(ts=ts, timestamp=_stamp(ts), request_id=rid, **kw)))
    return events


def stream(n: int, rate: float):
    """(ids started so far, event) in timestamp order, generated lazily."""
    heap: list = []
    seq = 0
    for i in range(n):
        t = BASE + i / rate
        for ts, ev in request_events(i, t):
            heapq.heappush(heap, (ts, seq, ev))
            seq += 1
        while heap and heap[0][0] <= t - 5.0:
            yield i + 1, heapq.heappop(heap)[2]
    while heap:
        yield n, heapq.heappop(heap)[2]


def run(n: int, rate: float, traced: bool, every: int = 100_000) -> None:
    windows, stalled = RequestWindows(), RequestStalled()
    summaries = incidents = events = 0
    feed_time = 0.0
    next_report = every
    gc.collect()
    if traced:
        tracemalloc.start()
        print(f"{'ids':>9} {'events':>9} {'open':>6} {'closed':>6} {'owned':>6} {'pending':>7} "
              f"{'summaries':>9} {'incidents':>9} {'current MB':>10} {'peak MB':>8} {'events/s':>9}")
    wall = time.perf_counter()
    window_start, window_events, window_feed = time.perf_counter(), 0, 0.0
    for ids, ev in stream(n, rate):
        t = time.perf_counter()
        summaries += len(windows.feed(ev))
        incidents += len(stalled.feed(ev))
        dt = time.perf_counter() - t
        feed_time += dt
        window_feed += dt
        events += 1
        window_events += 1
        if traced and ids >= next_report:
            cur, peak = tracemalloc.get_traced_memory()
            print(f"{ids:>9,} {events:>9,} {len(windows.open):>6} {len(windows.closed):>6} "
                  f"{len(windows.owned):>6} {len(stalled.pending):>7} {summaries:>9,} {incidents:>9} "
                  f"{cur / 2**20:>10.1f} {peak / 2**20:>8.1f} {window_events / window_feed:>9,.0f}",
                  flush=True)
            tracemalloc.reset_peak()
            next_report += every
            window_events, window_feed = 0, 0.0
    summaries += len(windows.flush())
    stalled.flush()
    total = time.perf_counter() - wall
    if traced:
        tracemalloc.stop()
    label = "traced" if traced else "untraced"
    print(f"{label}: {n:,} ids, {events:,} events, {summaries:,} summaries, {incidents} request_stalled "
          f"updates; feed {events / feed_time:,.0f} events/s (RequestWindows + RequestStalled), "
          f"{total:.1f} s wall including event generation", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=50.0, help="new requests per second of event time")
    ap.add_argument("--speed-ids", type=int, default=200_000, help="ids of the untraced speed run (0: skip)")
    args = ap.parse_args()
    print(f"Python {sys.version.split()[0]}; {args.ids:,} distinct request ids at {args.rate:g}/s of event time")
    run(args.ids, args.rate, traced=True)
    if args.speed_ids:
        run(args.speed_ids, args.rate, traced=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
