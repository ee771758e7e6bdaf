"""`osloscope analyze` end to end, records/s, next to the last native build (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_analyze.py [--records N] [--files N] [--repeat 3]
        [--baseline-rev REV | --no-baseline] [--data DIR] [--keep-data] [--tree DIR]

1. Writes a deterministic data set (gen_logs.py ``replay``): >= 300,000 REAL
   records of the repository's fixtures (tests/fixtures/corpus, seeds,
   deploy/samples) repeated over controllers (nova-api, nova-conductor,
   nova-scheduler, cinder-api, cinder-volume, glance-api, neutron-server,
   keystone) and computes (nova-compute, neutron agents), laid out as
   <root>/<host>/<project>/<file>.log, re-timestamped, fresh request ids per
   repetition. The record count is the number of documents
   ``osloscope parse --format jsonl DIR`` prints.
2. Builds the baseline: the last commit with the native Rust core
   (``pipeline/rust``): HEAD if it still has it, else the parent of the commit
   that deleted ``pipeline/rust/Cargo.toml`` (``--baseline-rev`` overrides),
   checked out in a temporary worktree, ``cargo build --release`` in place,
   the library copied to ``pipeline/_native<EXT_SUFFIX>``. The worktree is
   removed at the end, also on error. The cargo target directory is kept
   (``CARGO_TARGET_DIR``, default /tmp/osloscope-native-target) so reruns skip
   the ~1 min build.
3. Times ``osloscope analyze DIR --format jsonl --no-progress --dead-letter -``
   of the baseline and of the current tree (and of ``--jobs 1`` when the
   current CLI has ``--jobs``), each launched the same way: this venv's
   Python, ``PYTHONPATH`` = the tree, cwd = the tree, so the tree's
   ``pipeline`` package shadows the editable install (checked before timing).
   Paths alternate within each of ``--repeat`` rounds; the best wall clock is
   kept. CPU time is the child's (and its reaped children's) user + system
   time from ``getrusage(RUSAGE_CHILDREN)`` deltas; peak RSS is the largest
   single process's.
4. Checks every path prints the same incidents (byte-equal JSON lines) and
   prints the table and the verdict against the target: at least 0.8 of the
   native build's records/s.

Exit status: 0 target met and outputs equal; 1 target missed or outputs differ; 2 error.
Progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gen_logs  # noqa: E402  (the benchmarks' own data generator; osloscope's modules are not imported)

TARGET = 0.8
LAUNCH = "import sys; sys.argv[0] = 'osloscope'; from pipeline.cli import main; raise SystemExit(main())"
PROBE = """
import json
import pipeline, pipeline.cli, detectors
info = {"pipeline": getattr(pipeline, "__file__", None) or list(pipeline.__path__),
        "cli": pipeline.cli.__file__, "detectors": detectors.__file__}
try:
    import pipeline.accel as accel
except ImportError:
    info["native"] = None
else:
    info["native"] = bool(accel.available())
    info["native_file"] = getattr(getattr(accel, "_native", None), "__file__", None)
print(json.dumps(info))
"""
ANALYZE = ["analyze", "{data}", "--format", "jsonl", "--no-progress", "--dead-letter", "-"]

progress = gen_logs.progress


class BenchError(RuntimeError):
    pass


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def tree_env(tree: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OSLOSCOPE_NATIVE")}
    env["PYTHONPATH"] = str(tree)
    env.update(extra or {})
    return env


@dataclass
class Runner:
    """One way of running analyze: a tree, extra arguments, an environment."""
    name: str
    tree: Path
    args: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    output: Path | None = None
    summary: str = ""

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", LAUNCH, *args]

    def probe(self) -> dict:
        r = subprocess.run([sys.executable, "-c", PROBE], cwd=self.tree, env=tree_env(self.tree, self.env),
                           capture_output=True, text=True)
        if r.returncode:
            raise BenchError(f"{self.name}: cannot import osloscope from {self.tree}:\n{r.stderr[-3000:]}")
        info = json.loads(r.stdout.strip().splitlines()[-1])
        where = info["pipeline"] if isinstance(info["pipeline"], list) else [info["pipeline"]]
        for f in [*where, info["cli"], info["detectors"]]:
            if not Path(f).resolve().is_relative_to(self.tree.resolve()):
                raise BenchError(f"{self.name}: the interpreter imports {f}, not the tree {self.tree} "
                                 "(PYTHONPATH does not shadow the installed osloscope)")
        return info

    def help_text(self, sub: str) -> str:
        r = subprocess.run(self.command(sub, "--help"), cwd=self.tree, env=tree_env(self.tree, self.env),
                           capture_output=True, text=True)
        if r.returncode:
            raise BenchError(f"{self.name}: `osloscope {sub} --help` exited {r.returncode}:\n{r.stderr[-3000:]}")
        return r.stdout

    def run(self, data: Path, out: Path) -> tuple[float, float, int, str]:
        """(wall s, CPU s, peak RSS KB, stderr summary) of one analyze."""
        args = [a.format(data=data) for a in ANALYZE] + self.args
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        err_path = out.with_suffix(".stderr")
        with open(out, "wb") as fo, open(err_path, "wb") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen(self.command(*args), cwd=self.tree, env=tree_env(self.tree, self.env),
                                    stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        err = err_path.read_text(errors="replace")
        if proc.returncode not in (0, 1):       # 1: incidents found
            raise BenchError(f"{self.name}: analyze exited {proc.returncode}:\n{err[-3000:]}")
        summary = next((ln for ln in reversed(err.splitlines()) if ln.startswith("osloscope:")), "")
        return wall, cpu, usage.ru_maxrss, summary


def count_records(path: Runner, data: Path) -> int:
    """Documents printed by ``osloscope parse --format jsonl DIR``, streamed."""
    proc = subprocess.Popen(path.command("parse", "--format", "jsonl", str(data)), cwd=path.tree,
                            env=tree_env(path.tree, path.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n = 0
    assert proc.stdout is not None and proc.stderr is not None
    err = bytearray()
    t = threading.Thread(target=lambda: err.extend(proc.stderr.read()), daemon=True)
    t.start()
    while chunk := proc.stdout.read(1 << 20):
        n += chunk.count(b"\n")
    proc.wait()
    t.join()
    if proc.returncode:
        raise BenchError(f"osloscope parse exited {proc.returncode}:\n{err.decode(errors='replace')[-3000:]}")
    return n


def baseline_rev(override: str | None) -> str:
    if override:
        return git("rev-parse", "--verify", f"{override}^{{commit}}")
    try:
        git("cat-file", "-e", "HEAD:pipeline/rust/Cargo.toml")
        return git("rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pass
    deleted = git("log", "-1", "--diff-filter=D", "--format=%H", "--", "pipeline/rust/Cargo.toml")
    if not deleted:
        raise BenchError("no commit has pipeline/rust/Cargo.toml; use --baseline-rev REV or --no-baseline")
    return git("rev-parse", f"{deleted}^")


class Heartbeat:
    """Prints "still <doing> (N s)" on stderr every ``every`` seconds."""

    def __init__(self, doing: str, every: float = 15.0) -> None:
        self.doing, self.every = doing, every
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            progress(f"  still {self.doing} ({time.perf_counter() - self._t0:.0f} s)")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def build_native(rev: str, worktree: Path) -> None:
    """Check out ``rev`` at ``worktree`` and build its native core in place."""
    progress(f"baseline: git worktree add --detach {worktree} {rev[:12]}")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), rev],
                   check=True, capture_output=True, text=True)
    crate = worktree / "pipeline" / "rust"
    if not (crate / "Cargo.toml").is_file():
        raise BenchError(f"{rev[:12]} has no pipeline/rust/Cargo.toml: not a native build")
    cargo = shutil.which("cargo")
    if cargo is None:
        raise BenchError("cargo is not on PATH: the native baseline needs a Rust toolchain (or --no-baseline)")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "/tmp/osloscope-native-target")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), PYO3_PYTHON=sys.executable)
    progress(f"baseline: cargo build --release in {crate} (target dir {target}; ~1 min the first time)")
    t0 = time.perf_counter()
    with Heartbeat("building the native core"):
        r = subprocess.run([cargo, "build", "--release", "--quiet"], cwd=crate, env=env,
                           capture_output=True, text=True)
    if r.returncode:
        raise BenchError(f"cargo build failed ({r.returncode}):\n{r.stderr[-4000:]}")
    lib = target / "release" / "lib_native.so"
    if not lib.is_file():
        raise BenchError(f"cargo built no {lib}")
    dest = worktree / "pipeline" / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"
    shutil.copy2(lib, dest)
    progress(f"baseline: built in {time.perf_counter() - t0:.0f} s -> {dest.relative_to(worktree)}")


def compare(paths: list[Runner]) -> bool:
    """Print whether every path printed the same incidents; True if they did."""
    ref = paths[0]
    ref_bytes = ref.output.read_bytes()
    n = ref_bytes.count(b"\n")
    same = True
    print(f"incidents: {ref.name}: {n} JSON lines, sha256 {hashlib.sha256(ref_bytes).hexdigest()[:16]}")
    for p in paths[1:]:
        data = p.output.read_bytes()
        if data == ref_bytes:
            print(f"incidents: {p.name}: identical to {ref.name}")
            continue
        same = False
        a, b = ref_bytes.splitlines(), data.splitlines()
        print("!" * 100)
        print(f"!!! BEHAVIOUR CHANGE: {p.name} prints different incidents than {ref.name} "
              f"({len(b)} vs {len(a)} JSON lines)")
        if sorted(a) == sorted(b):
            print("!!! the same lines in another order")
        else:
            only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            print(f"!!! {len(only_a)} line(s) only in {ref.name}, {len(only_b)} only in {p.name}; first ones:")
            for tag, lines in ((ref.name, only_a), (p.name, only_b)):
                for ln in lines[:3]:
                    print(f"!!!   {tag}: {ln[:400].decode(errors='replace')}")
        print("!" * 100)
    for p in paths:
        if p.summary and p.summary != ref.summary:
            print(f"!!! stderr summary differs: {p.name}: {p.summary!r} vs {ref.name}: {ref.summary!r}")
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=320_000, help="records to generate (default 320,000)")
    ap.add_argument("--files", type=int, default=28, help="log files to spread them over (default 28)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each path; the best counts (default 3)")
    ap.add_argument("--seed", type=int, default=20170606)
    ap.add_argument("--data", type=Path, help="data directory: reused if it holds files, else generated there "
                                              "(and kept)")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated temporary data set")
    ap.add_argument("--baseline-rev", help="the native baseline commit (default: the last with pipeline/rust)")
    ap.add_argument("--no-baseline", action="store_true", help="time the current tree only")
    ap.add_argument("--tree", type=Path, default=REPO, help=f"the current tree (default {REPO})")
    args = ap.parse_args()

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    work = Path(tempfile.mkdtemp(prefix="osloscope-bench-"))
    worktree = Path(f"/tmp/osloscope-native-{os.getpid()}")
    made_worktree = False
    try:
        tree = args.tree.resolve()
        head = git("log", "-1", "--format=%h %s", cwd=tree)
        dirty = len(git("status", "--porcelain", "--untracked-files=no", cwd=tree).splitlines())
        print(f"Python {sys.version.split()[0]} ({sys.executable}); {os.cpu_count()} CPU(s)")
        print(f"current tree: {tree} at {head}" + (f" + {dirty} modified file(s)" if dirty else ""))

        # -- data
        if args.data is not None and args.data.is_dir() and any(args.data.iterdir()):
            data = args.data.resolve()
            logs = sorted(p for p in data.rglob("*.log") if p.is_file())
            lines = sum(p.read_bytes().count(b"\n") for p in logs)
            print(f"data: reusing {data}: {len(logs)} files, {lines:,} lines, "
                  f"{sum(p.stat().st_size for p in logs) / 2**20:.0f} MiB")
        else:
            data = (args.data or work / "data").resolve()
            data.mkdir(parents=True, exist_ok=True)
            progress(f"generating {args.records:,} records in {args.files} files under {data}")
            st = gen_logs.generate_replay(data, args.records, args.files, args.seed)
            lv = st["levels"]
            total = sum(lv.values())
            print(f"data: {data}: {st['files']} files, {st['lines']:,} lines, {st['records']:,} records "
                  f"(generator's count), {st['bytes'] / 2**20:.0f} MiB, {st['request_ids']:,} request ids; "
                  f"generated in {st['seconds']:.1f} s")
            print("      levels: " + ", ".join(f"{k} {v / total:.1%}" for k, v in lv.items() if v)
                  + f"; from {len(st['sources'])} real sources ({sum(st['sources'].values())} records)")

        # -- paths
        current = Runner("current", tree)
        info = current.probe()
        print(f"current: pipeline from {info['pipeline']}; "
              + ("native core built" if info["native"] else "pure Python" if info["native"] is False
                 else "no native core (pure Python)"))
        paths: list[Runner] = []
        if not args.no_baseline:
            rev = baseline_rev(args.baseline_rev)
            print(f"baseline: {git('log', '-1', '--format=%h %ad %s', '--date=short', rev)[:110]}")
            made_worktree = True
            build_native(rev, worktree)
            native = Runner(f"native {rev[:7]}", worktree, env={"OSLOSCOPE_NATIVE": "1"})
            ninfo = native.probe()
            print(f"baseline: pipeline from {ninfo['pipeline']}; accel.available() = {ninfo['native']}; "
                  f"{ninfo.get('native_file')}")
            if ninfo["native"] is not True:
                raise BenchError("the baseline's pipeline.accel.available() is not True: the native core "
                                 "did not load")
            paths.append(native)
        has_jobs = "--jobs" in current.help_text("analyze")
        current.name = "current (default)" if has_jobs else "current"
        paths.append(current)
        if has_jobs:
            paths.append(Runner("current --jobs 1", tree, args=["--jobs", "1"]))
        else:
            print("current: `analyze --help` has no --jobs: the single-process rate is the default rate")

        progress("counting records: osloscope parse --format jsonl")
        t0 = time.perf_counter()
        records = count_records(current, data)
        print(f"records: {records:,} (JSON lines of `osloscope parse --format jsonl`, "
              f"{time.perf_counter() - t0:.1f} s)")

        # -- timing
        for rnd in range(args.repeat):
            for p in paths:
                slug = p.name.replace(" ", "_").replace("(", "").replace(")", "")
                out = work / f"{slug}.{rnd}.jsonl"
                progress(f"round {rnd + 1}/{args.repeat}: {p.name} ...")
                wall, cpu, rss, summary = p.run(data, out)
                p.walls.append(wall)
                p.cpus.append(cpu)
                p.rss.append(rss)
                if p.output is None:
                    p.output, p.summary = out, summary
                else:
                    out.unlink()
                progress(f"round {rnd + 1}/{args.repeat}: {p.name}: {wall:.2f} s wall, {cpu:.2f} s CPU, "
                         f"{records / wall:,.0f} records/s")

        # -- results
        print()
        same = compare(paths)
        for p in paths:
            if p.summary:
                print(f"{p.name}: {p.summary}")
        print()
        base_rate = records / min(paths[0].walls) if not args.no_baseline else None
        header = (f"{'path':<22} {'wall s (best)':>13} {'runs':>20} {'CPU s':>7} {'peak MB':>8} "
                  f"{'records/s':>10} {'vs native':>9}")
        print(f"analyze, {records:,} records, best of {args.repeat}")
        print(header)
        print("-" * len(header))
        for p in paths:
            best = min(range(len(p.walls)), key=p.walls.__getitem__)
            rate = records / p.walls[best]
            ratio = f"{rate / base_rate:.2f}" if base_rate else "-"
            runs = "/".join(f"{w:.1f}" for w in p.walls)
            print(f"{p.name:<22} {p.walls[best]:>13.2f} {runs:>20} {p.cpus[best]:>7.2f} "
                  f"{max(p.rss) / 1024:>8.0f} {rate:>10,.0f} {ratio:>9}")
        print()
        if base_rate is None:
            print("verdict: no baseline (--no-baseline)")
            return 0 if same else 1
        cur_rate = records / min(current.walls)
        ok = cur_rate >= TARGET * base_rate
        print(f"verdict: current {cur_rate:,.0f} records/s = {cur_rate / base_rate:.2f} of the native build's "
              f"{base_rate:,.0f}; target >= {TARGET}: {'MET' if ok else 'NOT MET'}"
              + ("" if same else "; OUTPUTS DIFFER (behaviour change)"))
        return 0 if ok and same else 1
    except BenchError as exc:
        print(f"bench_analyze: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"bench_analyze: error: {' '.join(map(str, exc.cmd))} exited {exc.returncode}:\n"
              f"{(exc.stderr or '')[-3000:]}", file=sys.stderr)
        return 2
    finally:
        if made_worktree:
            r = subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)],
                               capture_output=True, text=True)
            if r.returncode and worktree.exists():
                progress(f"could not remove the worktree {worktree}: {r.stderr.strip()}")
            else:
                progress(f"removed the worktree {worktree}")
        if args.keep_data and args.data is None:
            progress(f"kept the data set in {work / 'data'}")
            for f in work.glob("*.jsonl*"):
                f.unlink()
            for f in work.glob("*.stderr"):
                f.unlink()
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
