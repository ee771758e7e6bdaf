"""Request summaries leave analyze in (first_seen, id) order without being
held for the whole run."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from pipeline.local.requests import InOrder


def _doc(ts: float, n: int) -> dict:
    stamp = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
    return {"first_seen": stamp, "id": f"{n:08d}"}


def test_summaries_come_out_sorted_and_are_not_all_held():
    rng = random.Random(7)
    out: list[dict] = []
    order = InOrder(out.append, gap=120.0, max_length=3600.0)
    docs = []
    held = 0
    for n in range(20_000):
        # windows close up to max_length + gap after their first record
        first = n * 2.0 + rng.uniform(0.0, 3600.0)
        docs.append(_doc(first, n))
    docs.sort(key=lambda d: d["id"])            # arrival order: by close, not by first_seen
    for d in docs:
        order.add(d)
        held = max(held, len(order.heap))
    order.close()
    assert [(d["first_seen"], d["id"]) for d in out] == sorted((d["first_seen"], d["id"]) for d in docs)
    assert held < 6_000                      # ~1.1 h of summaries at one per 2 s, not all 20,000
