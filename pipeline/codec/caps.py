"""Size caps by encoded bytes, for every document that leaves the process.

Kafka refuses a message over ``max.message.bytes`` (1 MiB by default), and
what counts is the JSON, not the characters: a NUL byte in a log line is six
bytes of JSON (``\\u0000``), a CJK character three. :func:`cap` encodes a
document and, only when it is too large, cuts its largest strings to an
equal share of what is left (with :data:`TRUNCATED` at the end of each cut),
then, if that is not enough, halves its longest lists.
"""
from __future__ import annotations

from typing import Any

import orjson

from pipeline.codec.core import dumps, loads

MAX_DOC_BYTES = 900_000         # below Kafka's default 1 MiB message limit, key and headers included
TRUNCATED = "...[truncated by osloscope]"
MIN_CUT = 1024                  # strings up to this size are never cut
_MARK = len(orjson.dumps(TRUNCATED)) - 2


def _size(text: str) -> int:
    return len(dumps(text))


def cap_text(text: str, max_bytes: int) -> str:
    """``text`` if its JSON string takes at most ``max_bytes``; else its
    longest prefix + TRUNCATED that does (quotes included)."""
    if _size(text) <= max_bytes:
        return text
    budget = max_bytes - _MARK
    lo, hi = 0, max(0, min(len(text), budget - 2))    # a character is at least one byte
    while lo < hi:                                      # longest prefix that fits
        mid = (lo + hi + 1) // 2
        if _size(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + TRUNCATED


def cap(doc: dict, limit: int = MAX_DOC_BYTES) -> bytes:
    """JSON of ``doc`` in at most ``limit`` bytes (``doc`` itself is not changed).
    ValueError if cutting strings and lists cannot get it there."""
    data = dumps(doc)
    if len(data) <= limit:
        return data
    copy = loads(data)
    _cut_strings(copy, len(data) - limit)
    data = dumps(copy)
    while len(data) > limit and _halve_longest_list(copy):
        data = dumps(copy)
    if len(data) > limit:
        raise ValueError(f"document of {len(data)} bytes cannot be capped to {limit}")
    return data


def _strings(node: Any, out: list) -> None:
    """(encoded size, container, key) of every string leaf larger than MIN_CUT."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str):
            size = _size(value)
            if size > MIN_CUT:
                out.append((size, node, key))
        elif isinstance(value, (dict, list)):
            _strings(value, out)


def _cut_strings(doc: dict, excess: int) -> None:
    """Cut the largest strings down to one common size (never below MIN_CUT)
    so that together they shrink by ``excess`` bytes."""
    leaves: list = []
    _strings(doc, leaves)
    leaves.sort(key=lambda leaf: -leaf[0])
    total, level = 0, MIN_CUT
    for k, (size, _node, _key) in enumerate(leaves, 1):
        total += size
        level = (total - excess) // k
        nxt = leaves[k][0] if k < len(leaves) else 0
        if level >= nxt:
            break
    level = max(level, MIN_CUT)
    for size, node, key in leaves:
        if size > level:
            node[key] = cap_text(node[key], level)


def _halve_longest_list(doc: dict) -> bool:
    """Keep the first half of the list with the largest JSON; False if none has two items."""
    best: tuple[int, list] | None = None
    stack: list = [doc]
    while stack:
        node = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, list) and len(child) > 1:
                size = len(dumps(child))
                if best is None or size > best[0]:
                    best = (size, child)
            if isinstance(child, (dict, list)):
                stack.append(child)
    if best is None:
        return False
    del best[1][(len(best[1]) + 1) // 2:]
    return True
