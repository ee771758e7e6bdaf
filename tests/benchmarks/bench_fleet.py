"""The same backlog taken by one `osloscope worker` and by two (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_fleet.py [--records N] [--files N] [--workers 1 2]
        [--index-events all] [--timeout S] [--keep]

One backlog (bench_pipeline.py: gen_logs ``replay``, real records;
``--files`` 56 makes 12 hosts, each host's lines in the raw partition of its
key), run once per ``--workers`` count as bench_pipeline.py runs it: N worker
processes with the same app id share the partitions of a fresh raw topic,
the backlog is shipped in once every partition has its worker, and the run
lasts until every expected event is searchable. Printed: each run against
the raw consume rate of aiokafka on the same topic, with the load average,
the raw partitions each worker held, the lines per partition and the CPU
seconds of each worker; then the speed-up of each count over the first.

On one machine the workers share its cores with Kafka and Elasticsearch:
the speed-up says how much of a second core a second worker turns into
throughput here; the worker CPU milliseconds per line say what a worker
with a core of its own would do.
"""
from __future__ import annotations

import argparse
import shutil

from bench_pipeline import backlog_args, prepare, print_runs, run_backlog, service_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    backlog_args(ap)
    ap.set_defaults(files=56)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--index-events", default="all", choices=("all", "warning+"))
    args = ap.parse_args()

    base_env = service_env()
    backlog = prepare(args)
    try:
        runs = [run_backlog(base_env, backlog, workers=n, index_events=args.index_events, timeout=args.timeout,
                            keep=args.keep) for n in args.workers]
        print_runs(backlog, runs)
        print("\nraw lines per partition (key = host): "
              + " ".join(f"{p}:{n}" for p, n in sorted(runs[0].per_partition.items())))
        first = runs[0]
        print(f"\n{'workers':>7} {'steady lines/s':>15} {'x ' + str(first.workers):>6} {'x raw':>6} "
              f"{'ship->searchable lines/s':>25} {'x ' + str(first.workers):>6} {'worker CPU ms/line':>19}  load avg")
        for r in runs:
            print(f"{r.workers:>7} {r.steady:>15,.0f} {r.steady / first.steady:>6.2f} {r.steady / r.baseline:>6.3f} "
                  f"{r.e2e_lines:>25,.0f} {r.e2e_lines / first.e2e_lines:>6.2f} "
                  f"{sum(r.worker_cpu) * 1000 / r.lines:>19.2f}  {r.load_end}")
    finally:
        if not args.keep:
            shutil.rmtree(backlog.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
