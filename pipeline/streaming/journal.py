"""The parts of a partition's state saved record by record (changelog.py): each
gets a number (``seq``) of its own when it enters the state, is written once at
the next save, and deleted once after it leaves. Three kinds share a partition's
numbers: events held for their turn (eventtime.Reorder); in the correlate
stage, the ids of recent events (``SeenWindow``), one record per save; and
the entries of the detector engine's tracked stores (``Entry``: an open
request window, a link index entry, a root cause), a new record each time
one changed.

Why: they grow with the input, not with what a save changes. Rewritten whole
with every save, held events cost 15-30 times the input in bytes written, the
recent ids of a correlate partition 250 KB per save, and under live load the
open request windows, idle until their gap ends, three quarters of the rest.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple


class Journal:
    """What changed since the last save: ``add(obj)`` numbers a new record,
    ``drop(seq)`` says it left the state; ``changes()`` is (seq, obj) of the
    records added since the last ``saved()`` and still there, and the seqs of
    saved records dropped since. Numbers are never reused, across restores too."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.fresh: dict[int, object] = {}     # seq -> record added since the last save
        self.logged: set[int] = set()          # seqs saved and still in the state
        self.gone: list[int] = []              # seqs saved, dropped since

    def add(self, obj) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.fresh[seq] = obj
        return seq

    def drop(self, seq: int) -> None:
        if self.fresh.pop(seq, None) is None and seq in self.logged:
            self.logged.discard(seq)
            self.gone.append(seq)

    def changes(self) -> tuple[list[tuple[int, object]], list[int]]:
        return list(self.fresh.items()), list(self.gone)

    def saved(self) -> None:
        self.logged.update(self.fresh)
        self.fresh.clear()
        self.gone.clear()

    def restored(self, seqs, next_seq: int) -> None:
        """The records ``seqs`` came back from the changelog (all saved)."""
        self.logged = set(seqs)
        self.fresh.clear()
        self.gone.clear()
        self.next_seq = max([next_seq, *(s + 1 for s in self.logged)])


class Seen(list):
    """A segment of the seen window: the ids first seen between two saves."""


class SeenWindow:
    """The ids of the most recent ``size`` events (at least), to drop a duplicate
    delivery. Ids seen since the last save form one segment, a journal record made
    at the save (``seal``); the oldest segments are dropped once the newer ones
    hold ``size`` ids."""

    def __init__(self, size: int, journal: Journal) -> None:
        self.size = size
        self.journal = journal
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.pending = Seen()
        self.segments: deque[tuple[int, Seen]] = deque()

    def is_new(self, eid: str) -> bool:
        """False for an id already seen; remembers ``eid`` otherwise."""
        if eid in self.ids:
            return False
        self.ids[eid] = None
        self.pending.append(eid)
        if len(self.ids) > self.size:
            self.ids.popitem(last=False)
        return True

    def seal(self) -> None:
        """A save: the ids seen since the last one become a record; old ones go."""
        if self.pending:
            self.segments.append((self.journal.add(self.pending), self.pending))
            self.pending = Seen()
        total = sum(len(ids) for _s, ids in self.segments)
        while self.segments and total - len(self.segments[0][1]) >= self.size:
            seq, ids = self.segments.popleft()
            total -= len(ids)
            self.journal.drop(seq)

    def restore(self, segments: list[tuple[int, list[str]]]) -> None:
        self.segments = deque((seq, Seen(ids)) for seq, ids in sorted(segments))
        self.pending = Seen()
        self.ids = OrderedDict.fromkeys([eid for _s, ids in self.segments for eid in ids][-self.size:])


class Entry(NamedTuple):
    """The entry ``key`` of the engine's tracked store ``store`` (detectors/store.py)."""
    store: str
    key: object
