"""Peak memory of `osloscope analyze` as distinct request ids grow (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_analyze_memory.py [--ids N] [--steps A,B,C] [--rate R]
        [--jobs N] [--keep-data] [--tree DIR]

For each step (default 100,000, 300,000 and --ids, default 1,000,000 distinct
request ids) it streams a fresh synthetic data set in real oslo.log format to
a temporary directory (gen_logs.py ``requests``: nova-api ``POST
/v2.1/servers`` 202 + nova-conductor + nova-compute boots, cinder-api volume
creates + cinder-volume, ``GET /v2.1/servers/<id>`` reads; 2-5 records per
request over a few seconds, ~R new requests per second of log time (default
50), 11 files on 7 hosts), then runs, each in a fresh child process:

* incidents: ``osloscope analyze DIR --no-progress --format jsonl --dead-letter -``
* requests:  ``osloscope analyze DIR --requests --format jsonl --no-progress --dead-letter - > /dev/null``
  (every request summary is printed, straight to /dev/null)

and prints the child's peak RSS (``ru_maxrss`` of that child from ``wait4``:
the largest single process, the child or a worker it reaped), its wall time
and records/s. The final table gives MB at each step and the growth in MB per
100,000 request ids between steps: a flat line means memory does not depend
on how many requests the logs hold.

The CLI is the tree's (default: this repository), launched as this venv's
Python with ``PYTHONPATH`` = the tree and cwd = the tree; osloscope's modules
are not imported here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gen_logs  # noqa: E402  (the benchmarks' own data generator)

LAUNCH = "import sys; sys.argv[0] = 'osloscope'; from pipeline.cli import main; raise SystemExit(main())"
MODES = {
    "incidents": ["--no-progress", "--format", "jsonl", "--dead-letter", "-"],
    "requests": ["--requests", "--format", "jsonl", "--no-progress", "--dead-letter", "-"],
}
progress = gen_logs.progress


def env_for(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    return env


def run(tree: Path, data: Path, mode: str, extra: list[str], out: Path | None) -> tuple[float, int, str]:
    """(wall s, peak RSS in KiB, stderr) of one fresh analyze child."""
    cmd = [sys.executable, "-c", LAUNCH, "analyze", str(data), *MODES[mode], *extra]
    err_path = data.parent / f"{mode}.stderr"
    with open(out if out is not None else os.devnull, "wb") as fo, open(err_path, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tree, env=env_for(tree), stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = err_path.read_text(errors="replace")
    if proc.returncode not in (0, 1):            # 1: incidents found / a request ended in error
        raise RuntimeError(f"analyze ({mode}) exited {proc.returncode}:\n{err[-3000:]}")
    return wall, usage.ru_maxrss, err


def summary_line(err: str) -> str:
    return next((ln for ln in reversed(err.splitlines()) if ln.startswith("osloscope:")), "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=1_000_000, help="distinct request ids of the last step")
    ap.add_argument("--steps", help="comma-separated id counts (default 100000,300000,<ids>)")
    ap.add_argument("--rate", type=float, default=50.0, help="new requests per second of log time (default 50)")
    ap.add_argument("--jobs", type=int, help="pass --jobs N to analyze")
    ap.add_argument("--modes", default="incidents,requests", help="which runs (default incidents,requests)")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated data sets")
    ap.add_argument("--tree", type=Path, default=REPO, help=f"the osloscope tree to run (default {REPO})")
    args = ap.parse_args()
    steps = sorted({int(s.replace("_", "")) for s in args.steps.split(",")} if args.steps
                   else {n for n in (100_000, 300_000) if n < args.ids} | {args.ids})
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r} (incidents, requests)")
    extra = ["--jobs", str(args.jobs)] if args.jobs else []

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    tree = args.tree.resolve()
    head = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True).stdout.strip()
    print(f"Python {sys.version.split()[0]}; {os.cpu_count()} CPU(s); tree {tree} at {head}")
    print(f"steps: {', '.join(f'{n:,}' for n in steps)} distinct request ids at {args.rate:g} new/s of log time"
          + (f"; analyze --jobs {args.jobs}" if args.jobs else ""))
    work = Path(tempfile.mkdtemp(prefix="osloscope-bench-mem-"))
    rows: list[dict] = []
    try:
        for n in steps:
            data = work / f"ids-{n}" / "logs"
            data.mkdir(parents=True)
            progress(f"step {n:,}: generating {n:,} request ids under {data}")
            st = gen_logs.generate_requests(data, n, args.rate)
            print(f"\nstep {n:,} ids: {st['files']} files on {st['hosts']} hosts, {st['lines']:,} lines, "
                  f"{st['records']:,} records, {st['bytes'] / 2**20:.0f} MiB (generated in {st['seconds']:.1f} s)",
                  flush=True)
            row = {"ids": n, "records": st["records"]}
            for mode in modes:
                progress(f"step {n:,}: analyze ({mode}) ...")
                out = data.parent / "incidents.jsonl" if mode == "incidents" else None
                wall, kib, err = run(tree, data, mode, extra, out)
                mb = kib / 1024
                row[mode] = (mb, wall)
                what = ""
                if out is not None:
                    printed = out.read_bytes().count(b"\n")
                    what = f", {printed:,} incident(s) printed"
                print(f"  {mode:<9}: peak RSS {mb:8.1f} MB, {wall:7.1f} s wall, {st['records'] / wall:9,.0f} "
                      f"records/s{what}   [{summary_line(err)}]", flush=True)
            rows.append(row)
            if not args.keep_data:
                shutil.rmtree(data.parent, ignore_errors=True)

        print()
        head = f"{'request ids':>12} {'records':>10}"
        for mode in modes:
            head += f" | {mode + ' MB':>13} {'MB/100k ids':>11} {'s':>6}"
        print("peak RSS of the analyze child (MB = MiB) per step; MB/100k ids: growth from the previous step")
        print(head)
        print("-" * len(head))
        prev = None
        for row in rows:
            line = f"{row['ids']:>12,} {row['records']:>10,}"
            for mode in modes:
                mb, wall = row[mode]
                slope = f"{(mb - prev[mode][0]) / ((row['ids'] - prev['ids']) / 1e5):>11.1f}" if prev else f"{'-':>11}"
                line += f" | {mb:>13.1f} {slope} {wall:>6.0f}"
            print(line)
            prev = row
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            for mode in modes:
                per_id = (last[mode][0] - first[mode][0]) * 2**20 / (last["ids"] - first["ids"])
                print(f"{mode}: {first[mode][0]:.0f} MB at {first['ids']:,} ids -> {last[mode][0]:.0f} MB at "
                      f"{last['ids']:,} ids: {per_id:,.0f} bytes per request id "
                      f"({per_id * 1e5 / 2**20:.1f} MB per 100k ids)")
        return 0
    except RuntimeError as exc:
        print(f"bench_analyze_memory: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep_data:
            progress(f"kept the data sets in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
