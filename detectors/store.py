"""The bounded keyed store every detector keeps its keyed state in.

A map in least-recently-used order with a capacity: putting a new key past
the capacity evicts the least recently used entries (and counts them), so a
detector's memory is bounded whatever the number of distinct keys (request
ids, source addresses, streams) it sees. ``snapshot``/``restore`` give its
JSON-safe form, in order; keys that are tuples come back as tuples.

``TrackedStore`` is the same store saved entry by entry: it knows which keys
changed since it was last saved, so the worker rewrites only those
(pipeline/streaming/stage.py), not the whole store with every save.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Generic, Hashable, Iterator, TypeVar

import orjson

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _identity(value: Any) -> Any:
    return value


def key_to_json(key: Any) -> Any:
    """A key as saved: a tuple as a list."""
    return list(key) if isinstance(key, tuple) else key


def key_from_json(key: Any) -> Any:
    """A key read back: a list as the tuple it was."""
    return tuple(key) if isinstance(key, list) else key


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
        return [[key_to_json(k), encode(v)] for k, v in self.data.items()]

    def restore(self, items: list, decode: Callable[[Any], V] = _identity) -> None:
        self.data = OrderedDict((key_from_json(k), decode(v)) for k, v in items)


class TrackedStore(KeyedStore[K, V]):
    """A KeyedStore saved entry by entry (pipeline/streaming/journal.py) instead of whole:
    it knows the keys changed since ``changes()`` was last called, and when each entry was
    last used (``at``: a number that only grows), so entries read back one by one regain
    their order. ``snapshot()`` is empty: the entries are saved apart.

    A value changed in place counts as changed when its key was ``put`` or ``touch``-ed;
    with ``check`` (for code not written to that rule: the detectors), ``changes()`` also
    compares every value's JSON with what was last saved -- the CPU of a whole snapshot,
    the bytes of what changed. ``encode``/``decode``: a value's JSON form.
    """
    __slots__ = ("changed", "at", "clock", "encode", "decode", "check", "sums")

    def __init__(self, capacity: int, encode: Callable[[V], Any] = _identity,
                 decode: Callable[[Any], V] = _identity, check: bool = False) -> None:
        super().__init__(capacity)
        self.changed: set = set()
        self.at: dict = {}
        self.clock = 0
        self.encode, self.decode = encode, decode
        self.check = check
        self.sums: dict = {}             # key -> hash of its value's JSON as last saved (check)

    @classmethod
    def of(cls, store: KeyedStore, encode: Callable[[V], Any] = _identity,
           decode: Callable[[Any], V] = _identity, check: bool = False) -> "TrackedStore":
        """``store``'s entries, in order, in a tracked store (all changed); ``store``
        itself if it is tracked already."""
        if isinstance(store, TrackedStore):
            return store
        new = cls(store.capacity, encode, decode, check)
        for key, value in store.items():
            new.put(key, value)
        new.evicted = store.evicted
        return new

    def _used(self, key: K) -> None:
        self.clock += 1
        self.at[key] = self.clock
        self.changed.add(key)

    def _gone(self, key: K) -> None:
        self.at.pop(key, None)
        self.changed.add(key)

    # -- writing: each marks what it changed ---------------------------------------------
    def put(self, key: K, value: V) -> list[tuple[K, V]]:
        evicted = super().put(key, value)
        self._used(key)
        for old, _v in evicted:
            self._gone(old)
        return evicted

    def append(self, key: K, item: Any, maxlen: int) -> deque:
        q = super().append(key, item, maxlen)
        self._used(key)
        return q

    def expire(self, stale: Callable[[K, V], bool]) -> None:
        for key in [k for k, v in self.data.items() if stale(k, v)]:
            del self[key]

    def touch(self, key: K) -> None:
        self.data.move_to_end(key)
        self._used(key)

    def pop(self, key: K, default: V | None = None) -> V | None:
        if key in self.data:
            self._gone(key)
        return self.data.pop(key, default)

    def pop_oldest(self) -> tuple[K, V]:
        key, value = self.data.popitem(last=False)
        self._gone(key)
        return key, value

    def __delitem__(self, key: K) -> None:
        del self.data[key]
        self._gone(key)

    def clear(self) -> None:
        for key in self.data:
            self._gone(key)
        self.data.clear()

    # -- saving entry by entry -------------------------------------------------------------
    def _sum(self, value: V) -> int:
        doc = self.encode(value)
        try:
            return hash(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
        except TypeError:          # an integer past 64 bits (a log can say anything): saved as text
            return hash(repr(doc))

    def changes(self) -> list[K]:
        """The keys changed since the last call, least recently used first (a key no
        longer in the store is one that left it); forgets them."""
        changed, at = self.changed, self.at
        if self.check:
            sums, data = self.sums, self.data
            for key, value in data.items():
                h = self._sum(value)
                if sums.get(key) != h:
                    sums[key] = h
                    changed.add(key)
            for key in changed:
                if key not in data:
                    sums.pop(key, None)
        keys = sorted(changed, key=lambda k: at.get(k, 0))
        self.changed = set()
        return keys

    def entry(self, key: K) -> list:
        """The saved form of ``key``'s entry: [key, when last used, value] (JSON-safe)."""
        return [key_to_json(key), self.at[key], self.encode(self.data[key])]

    def load(self, entries: list) -> None:
        """Back to the entries ``entry`` gave, in any order; nothing is changed then."""
        rows = sorted(((key_from_json(k), int(at), v) for k, at, v in entries),
                      key=lambda row: row[1])
        self.data = OrderedDict((k, self.decode(v)) for k, _at, v in rows)
        self.at = {k: at for k, at, _v in rows}
        self.clock = max(self.at.values(), default=0)
        self.changed = set()
        self.sums = {k: self._sum(v) for k, v in self.data.items()} if self.check else {}

    def snapshot(self, encode: Callable[[V], Any] = _identity) -> list[list]:
        """Nothing: the entries are saved one by one (``changes``, ``entry``)."""
        return []

    def restore(self, items: list, decode: Callable[[Any], V] = _identity) -> None:
        """A whole snapshot (``KeyedStore.snapshot``'s form): every entry counts as changed."""
        super().restore(items, decode)
        self.at = {}
        for key in self.data:
            self._used(key)
