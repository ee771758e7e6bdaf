"""The bounded keyed store every detector keeps its keyed state in.

A map in least-recently-used order with a capacity: putting a new key past
the capacity evicts the least recently used entries (and counts them), so a
detector's memory is bounded whatever the number of distinct keys (request
ids, source addresses, streams) it sees. ``snapshot``/``restore`` give its
JSON-safe form, in order; keys that are tuples come back as tuples.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _identity(value: Any) -> Any:
    return value


class KeyedStore(Generic[K, V]):
    __slots__ = ("capacity", "data", "evicted")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    # -- reading ------------------------------------------------------------------------
    def get(self, key: K, default: V | None = None) -> V | None:
        return self.data.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self.data[key]

    def __delitem__(self, key: K) -> None:
        del self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __iter__(self) -> Iterator[K]:
        return iter(self.data)

    def items(self):
        return self.data.items()

    def values(self):
        return self.data.values()

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, or None."""
        return next(iter(self.data.items()), None)

    # -- writing ------------------------------------------------------------------------
    def put(self, key: K, value: V) -> list[tuple[K, V]]:
        """Set ``key`` (now the most recently used); the entries evicted to stay
        within capacity, oldest first."""
        data = self.data
        data[key] = value
        data.move_to_end(key)
        evicted: list[tuple[K, V]] = []
        while len(data) > self.capacity:
            evicted.append(data.popitem(last=False))
        self.evicted += len(evicted)
        return evicted

    def append(self, key: K, item: Any, maxlen: int) -> deque:
        """Add ``item`` to the queue of ``key`` (the last ``maxlen`` items are
        kept; ``key`` becomes the most recently used); the queue."""
        q = self.data.get(key)
        if q is None:
            q = deque(maxlen=maxlen)
            self.put(key, q)
        else:
            self.data.move_to_end(key)
        q.append(item)
        return q

    def expire(self, stale: Callable[[K, V], bool]) -> None:
        """Drop every entry for which ``stale(key, value)`` holds."""
        for key in [k for k, v in self.data.items() if stale(k, v)]:
            del self.data[key]

    def touch(self, key: K) -> None:
        """Mark ``key`` most recently used."""
        self.data.move_to_end(key)

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self.data.pop(key, default)

    def pop_oldest(self) -> tuple[K, V]:
        return self.data.popitem(last=False)

    def clear(self) -> None:
        self.data.clear()

    # -- state --------------------------------------------------------------------------
    def snapshot(self, encode: Callable[[V], Any] = _identity) -> list[list]:
        return [[list(k) if isinstance(k, tuple) else k, encode(v)] for k, v in self.data.items()]

    def restore(self, items: list, decode: Callable[[Any], V] = _identity) -> None:
        self.data = OrderedDict((tuple(k) if isinstance(k, list) else k, decode(v)) for k, v in items)
