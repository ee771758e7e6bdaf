"""Bytes the stages write to their changelogs, against rewriting the whole state (not a pytest module).

    .venv/bin/python tests/benchmarks/bench_state.py [--records N] [--batch B] [--mode backfill|live]

In one process, no Kafka: gen_logs.py's ``replay`` data set (REAL records of the repository's
fixtures, N records, default 50,000) goes through the parse and correlate stages as the worker
runs them (12 raw and 12 events partitions, batches of B raw records, one second of wall clock
per batch), and after every batch each stage saves what changed, as the worker does, into an
in-memory changelog (tests/streaming/changelog_support.py). Per stage it prints:

* **incremental**: the bytes those saves write (pipeline/streaming/changelog.py: the head of each
  partition changed, its new journal records, the manifest);
* **baseline**: the bytes the same saves would write if each rewrote the partition's whole
  state, held events and the correlate stage's recent ids included (state version 4, before
  the journal);
* their ratio, and the seconds spent in the incremental saves;
* for the correlate stage, the share of the head taken by the detector engine's parts.

``--mode backfill`` (default) ships old logs (the wall clock is today); ``live`` sets the wall
clock to just after the newest record of each batch.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

import orjson  # noqa: E402

import gen_logs  # noqa: E402
from changelog_support import MemoryTopic, entries, held, save  # noqa: E402
from support import events_topic, raw_messages  # noqa: E402

from pipeline.settings import load  # noqa: E402
from pipeline.streaming.changelog import restore_partition  # noqa: E402
from pipeline.streaming.stages import CorrelateStage, ParseStage  # noqa: E402

PARTITIONS = 12


def _ts(value: bytes) -> float | None:
    try:
        return datetime.strptime(value[:19].decode(), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=timezone.utc).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=2000, help="raw records per batch (default 2000)")
    ap.add_argument("--mode", choices=("backfill", "live"), default="backfill")
    ns = ap.parse_args()
    settings = load(None)
    with tempfile.TemporaryDirectory() as tmp:
        gen_logs.generate_replay(Path(tmp), records=ns.records, nfiles=12)
        msgs = raw_messages([tmp], partitions=PARTITIONS, inode=True)
    lines = sum(m.value.count(b"\n") + 1 for m in msgs)
    parse, corr = ParseStage(settings), CorrelateStage(settings)
    corr.upstreams = [f"raw/{n}" for n in range(PARTITIONS)]
    topics = {"parse": MemoryTopic(), "correlate": MemoryTopic()}
    logs = {name: t.changelog(settings, name) for name, t in topics.items()}
    new, old, secs = collections.Counter(), collections.Counter(), collections.Counter()
    engine_parts = collections.Counter()

    def saved(stage) -> None:
        for tp in stage.dirty():
            old[stage.name] += len(stage.snapshot(tp)) + sum(len(r) for _t, _o, r in held(stage, tp))
            if stage is corr:                 # version 4 kept the recent ids in the head too
                old[stage.name] += len(orjson.dumps(list(stage.parts[tp].seen.ids)))
            # version 5 the detectors' stores, request windows and root causes
            stores = stage.parts[tp].stores
            sizes = {name: sum(len(orjson.dumps(st.entry(k))) for k in st) for name, st in stores.items()}
            old[stage.name] += sum(sizes.values())
            if stage is corr:
                whole = len(stage.snapshot(tp)) + sum(sizes.values())
                for k, v in stage.parts[tp].to_state()["engine"].items():
                    engine_parts[k] += len(orjson.dumps(v))
                for name, size in sizes.items():
                    engine_parts[name.partition(".")[0]] += size
                engine_parts["(whole)"] += whole
        t0 = time.perf_counter()
        new[stage.name] += save(stage, logs[stage.name], topics[stage.name])
        secs[stage.name] += time.perf_counter() - t0

    offsets = [0] * PARTITIONS
    now, newest, today = 0.0, 0.0, time.time()
    for i in range(0, len(msgs), ns.batch):
        batch = msgs[i:i + ns.batch]
        newest = max([newest] + [t for t in map(_ts, (m.value for m in batch)) if t is not None])
        epoch = newest + 2.0 if ns.mode == "live" else today
        out = parse.process(batch, now, epoch=epoch)
        out.extend(parse.tick(now, epoch=epoch))
        saved(parse)
        events = events_topic(out, PARTITIONS)
        for m in events:
            m.offset = offsets[m.partition]
            offsets[m.partition] += 1
        corr.process(events, now, epoch=epoch)
        corr.tick(now, epoch=epoch)
        saved(corr)
        now += 1.0
    print(f"{len(msgs):,} raw records, {lines:,} lines, {ns.mode}, batches of {ns.batch}")
    print(f"{'stage':<10} {'baseline MB':>12} {'incremental MB':>15} {'ratio':>6} {'bytes/line':>11} {'save s':>7}")
    for name in ("parse", "correlate"):
        print(f"{name:<10} {old[name] / 1e6:>12.1f} {new[name] / 1e6:>15.1f} {new[name] / max(old[name], 1):>6.3f}"
              f" {new[name] / lines:>11,.0f} {secs[name]:>7.2f}")
    whole = engine_parts.pop("(whole)", 0)
    print("correlate state, saved head and entries:",
          ", ".join(f"{k} {v / max(whole, 1):.0%}" for k, v in engine_parts.most_common()))
    # a new worker takes the correlate partitions over: what it reads, against the state's size
    fresh, log = CorrelateStage(settings), topics["correlate"].changelog(settings, "correlate")
    fresh.upstreams = corr.upstreams
    parts = topics["correlate"].partitions
    before = {n: (p.reads, p.read_bytes) for n, p in parts.items()}
    t0 = time.perf_counter()
    for tp in corr.partitions():
        assert restore_partition(fresh, log, tp, 0.0), tp
        assert entries(fresh, tp) == entries(corr, tp), tp
    secs_restore = time.perf_counter() - t0
    read = sum(p.reads - before[n][0] for n, p in parts.items())
    read_mb = sum(p.read_bytes - before[n][1] for n, p in parts.items()) / 1e6
    total = sum(len(p.records) for p in parts.values())
    state_mb = sum(len(corr.snapshot(tp)) + sum(len(orjson.dumps(st.entry(k))) for st in corr.parts[tp].stores.values()
                                                for k in st) for tp in corr.partitions()) / 1e6
    print(f"correlate restore of {len(corr.partitions())} partitions: {read:,} of {total:,} changelog records "
          f"read, {read_mb:.1f} MB for a state of {state_mb:.1f} MB, {secs_restore:.2f} s; read back equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
