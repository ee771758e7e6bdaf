"""new_error's template learner: cost per record, next to the parser's, in one run (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_new_error.py [--records N] [--hours H] [--repeat R]

1. Writes gen_logs.py's ``replay`` data set (REAL records of the repository's fixtures
   repeated over controllers and computes, fresh request ids, ~93 % DEBUG/INFO, ~5 % WARNING,
   ~2 % ERROR/CRITICAL) of N records (default 100,000) over H hours (default 48) into a
   temporary directory.
2. Parses every file with the parser (``pipeline.parsing.parser.Parser``, lines as the files
   give them): the **baseline**, the parse stage's own cost per record on the same lines.
3. Feeds the events, merged in timestamp order, to ``TemplateLearner.observe``:
   * ``default``: the default settings (each stream learns its first 24 h, then is judged),
     timed over the learning half and the judged half separately;
   * ``learning``: learn_seconds = inf (every WARNING+ record mined by Drain);
   * ``judged``: learned on the whole stream first, then timed on it again (every ERROR and
     CRITICAL record searched; the steady state of a worker);
   * ``no-op``: the same loop calling a function that returns None (the loop's own cost).
   Each is the best of ``--repeat`` runs (default 3).
4. Prints us/record of each and its ratio to the parse cost, the learner's size (streams,
   clusters, tree nodes) and its snapshot (JSON bytes, ms to build and serialise it).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

import gen_logs  # noqa: E402
from detectors.new_error import NewErrorConfig, TemplateLearner  # noqa: E402
from pipeline.parsing.extract import Source  # noqa: E402
from pipeline.parsing.parser import Parser  # noqa: E402


def parse_tree(root: Path) -> tuple[list, float]:
    """Every event of the data set (host and service from the layout) and the parse seconds."""
    layout = {(h, d, f): s for h, d, f, s in gen_logs.replay_layout(200)}
    files = []
    for path in sorted(root.rglob("*.log")):
        host, d, f = path.relative_to(root).parts
        files.append((Source(host, layout[(host, d, f)], str(path)), path.read_bytes().splitlines(keepends=True)))
    events = []
    t = time.perf_counter()
    for src, lines in files:
        parser = Parser("UTC")
        events.extend(parser.feed_lines(lines, src, 0))
        events.extend(parser.flush())
    return events, time.perf_counter() - t


def timed(fn, events, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for e in events:
            fn(e)
        best = min(best, time.perf_counter() - t)
    return best


def best_of(make, events, repeat: int) -> tuple[float, TemplateLearner]:
    """Fresh learner each round (``make()``), best seconds over ``events``."""
    best, learner = math.inf, None
    for _ in range(repeat):
        learner = make()
        observe = learner.observe
        t = time.perf_counter()
        for e in events:
            observe(e)
        best = min(best, time.perf_counter() - t)
    return best, learner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-new-error-") as tmp:
        stats = gen_logs.generate_replay(Path(tmp), records=args.records, hours=args.hours)
        parse_s = math.inf
        for _ in range(args.repeat):
            events, s = parse_tree(Path(tmp))
            parse_s = min(parse_s, s)
    events = [e for e in events if e.ts is not None]
    events.sort(key=lambda e: e.ts)
    n = len(events)
    levels: dict[str, int] = {}
    for e in events:
        levels[e.level] = levels.get(e.level, 0) + 1
    start = gen_logs.BASE_MS / 1000      # the data set's start (a few real lines keep older times)
    half = next(i for i, e in enumerate(events) if e.ts - start >= NewErrorConfig().learn_seconds)
    gen_logs.progress(f"{n:,} events over {(events[-1].ts - start) / 3600:.1f} h, levels {levels}; "
                      f"parsed in {parse_s:.2f} s")

    rows = []      # (name, records, seconds)
    rows.append(("parse (baseline)", n, parse_s))
    noop = lambda e: None   # noqa: E731
    rows.append(("no-op loop", n, timed(noop, events, args.repeat)))

    # default settings: learning the first 24 h, judged after (one learner, both phases timed)
    best_learn = best_judge = math.inf
    for _ in range(args.repeat):
        learner = TemplateLearner()
        observe = learner.observe
        t = time.perf_counter()
        for e in events[:half]:
            observe(e)
        t1 = time.perf_counter()
        reported = sum(observe(e) is not None for e in events[half:])
        t2 = time.perf_counter()
        best_learn, best_judge = min(best_learn, t1 - t), min(best_judge, t2 - t1)
    default = learner
    rows.append(("default: first 24 h (learning)", half, best_learn))
    rows.append(("default: after 24 h (judged)", n - half, best_judge))

    inf = NewErrorConfig(learn_seconds=math.inf)
    s, _ = best_of(lambda: TemplateLearner(inf), events, args.repeat)
    rows.append(("learning only", n, s))

    zero = NewErrorConfig(learn_seconds=0.0, learn_min_records=0, adopt_after=math.inf)
    taught = TemplateLearner(NewErrorConfig(learn_seconds=math.inf))
    for e in events:
        taught.observe(e)
    state = taught.snapshot()

    def judged() -> TemplateLearner:
        lr = TemplateLearner(zero)
        lr.restore(json.loads(json.dumps(state)))
        for st in lr.streams.values():
            st.learned = True
        return lr
    s, _ = best_of(judged, events, args.repeat)
    rows.append(("judged only (steady state)", n, s))

    parse_us = parse_s / n * 1e6
    print(f"\nnew_error TemplateLearner on {n:,} replayed records ({stats['files']} files, "
          f"{levels.get('WARNING', 0) + levels.get('ERROR', 0) + levels.get('CRITICAL', 0):,} WARNING+)")
    print(f"{'path':34} {'records':>9} {'us/record':>10} {'x parse':>8}")
    for name, count, secs in rows:
        us = secs / count * 1e6
        print(f"{name:34} {count:>9,} {us:>10.2f} {us / parse_us:>8.3f}")
    st = default.stats()
    t = time.perf_counter()
    blob = json.dumps(default.snapshot())
    snap_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    json.dumps(default.snapshot())
    cached_ms = (time.perf_counter() - t) * 1e3
    print(f"\nafter the run: {st['streams']} streams, {st['clusters']} clusters, {st['tree_nodes']} tree nodes, "
          f"{reported} records reported as new after learning ({st['novel']} novel templates)")
    for (host, service), stream in default.streams.items():
        for key, first, last, count in stream.novel.values():
            print(f"  new on {host}/{service}: {count} x {key[:100]}")
    print(f"snapshot: {len(blob):,} bytes JSON ({len(blob) / max(st['streams'], 1) / 1024:.1f} KiB per stream), "
          f"{snap_ms:.1f} ms to build and serialise, {cached_ms:.1f} ms again (unchanged streams cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
