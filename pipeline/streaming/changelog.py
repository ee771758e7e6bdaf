"""Stage state in Kafka: one compacted changelog topic per stage, so state
follows its partition to whichever worker is assigned it.

Why not faust tables: a stage's state per partition (parsers with their
open records, detector engine, event-time positions, held events, the last
input offset) must be written *and acknowledged* before the input offsets
are committed, and read back whole when the partition is assigned. faust
tables write their changelog per key, asynchronously to the commit, and
their exactly-once mode has open duplicate issues; a topic of our own,
written with acks=all before the ack, keeps the one rule the worker has:
nothing is committed past unsaved state.

Why two kinds of records: most of a partition's state, by far, is the events
held for their turn (eventtime.py): a backfill holds thousands per partition
for minutes. Rewritten with every save they cost 15-30 times the input in
bytes written. So each held event is written once, when first saved, and
deleted once, when released; so are the segments of the correlate stage's
recent ids, and each version of an open request window, link index entry or
root cause (journal.py); only the rest of the state (the *head*: parsers,
detectors, positions) is rewritten. A save costs what changed.

Layout: topic ``<app_id>.state.<stage>``, compacted, with as many partitions
as the input topic. The state of input partition ``topic/N`` lives in
changelog partition N, as

* head chunks ``<topic/N>#<gen>.<i>`` (at most ``CHUNK`` bytes each, under
  the broker's default 1 MiB message limit);
* held events ``<topic/N>@<seq>.<i>``: event ``seq`` (a number of its own,
  kept across restores) in one piece or more, written once, deleted once;
* a manifest ``<topic/N>`` = ``{"gen", "chunks", "bytes", "index", "sha256",
  "next_seq", "from"}``, written once the rest of the save was acknowledged:
  the head's generation, size and digest, and ``from``, the lowest changelog
  offset of any record it needs. The records it includes (their seqs, and the
  pieces of those in more than one) are the *index*, a bitmap of seqs
  (``index_of``) written after the head in the same chunks: it grows with the
  number of records, so it must not be limited to one Kafka message.

Successive saves alternate the head between generations 0 and 1, so a save
cut short by a crash leaves the previous manifest's head intact; held events
released since a manifest are deleted (tombstones) only by the next save,
once that manifest is acknowledged, so a manifest never points at deleted
events. Records no manifest needs (left by a save cut short) are deleted
after the next restore.

A restore reads the partition backwards from its end until it finds the
last manifest, then forwards from the manifest's ``from`` only: not the
whole history the compaction has not cleaned yet. A manifest whose head or
events are missing or damaged is refused with a warning, and the partition
starts fresh from its committed offset.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from dataclasses import dataclass, field

from pipeline import codec

log = logging.getLogger("osloscope.worker")

CHUNK = 512 * 1024
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                "segment.ms": str(3600_000), "delete.retention.ms": str(86400_000)}


def topic_name(settings, stage: str) -> str:
    return f"{settings.worker.app_id}.state.{stage}"


def partition_number(tp: str) -> int:
    return int(tp.rpartition("/")[2])


Record = tuple  # (key, value or None for a tombstone, changelog partition)
SEARCH = 256     # records read at a time (then 4, 16, ... times that) looking back for the manifest


def index_of(pieces: dict[int, int]) -> bytes:
    """The records of a state, seq -> pieces, as saved: a bitmap of the seqs from the lowest
    (compressed: most are runs, of held events, or scattered, of rewritten entries) and the
    pieces of the records in more than one."""
    first = min(pieces, default=0)
    bits = bytearray((max(pieces, default=-1) - first + 8) // 8)
    for seq in pieces:
        bits[(seq - first) >> 3] |= 1 << ((seq - first) & 7)
    return codec.dumps({"first": first, "bits": base64.b64encode(zlib.compress(bytes(bits), 6)).decode(),
                        "pieces": {str(seq): p for seq, p in pieces.items() if p > 1}})


def read_index(data: bytes) -> dict[int, int]:
    """``index_of``'s seq -> pieces."""
    doc = codec.loads(data)
    first, bits = int(doc["first"]), zlib.decompress(base64.b64decode(doc["bits"]))
    more = {int(s): int(p) for s, p in doc.get("pieces", {}).items()}
    return {first + 8 * i + b: more.get(first + 8 * i + b, 1)
            for i, byte in enumerate(bits) if byte for b in range(8) if byte >> b & 1}


@dataclass
class Save:
    """One partition's save: ``first`` (deletions left from the last save, new held events,
    the head's chunks) must be acknowledged before the manifest (``Changelog.manifest``)
    is written; ``offsets`` are the changelog offsets ``first`` was given."""
    tp: str
    first: list[Record]
    gen: int
    chunks: int
    head: bytes
    new: dict[int, int] = field(default_factory=dict)      # seq -> pieces of the records written now
    gone: list[int] = field(default_factory=list)          # seqs deleted by this manifest
    index: bytes = b""                                     # index_of the records the manifest includes
    offsets: list[int] = field(default_factory=list)
    # set by ``manifest``: what the partition's records are once it is acknowledged
    live: dict[int, tuple[int, int]] = field(default_factory=dict)
    doomed: dict[bytes, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(len(v or b"") for _k, v, _n in self.first)


@dataclass
class Restored:
    """A partition's saved state: its head (the stage's versioned JSON), its held events
    (seq -> bytes) and the first seq never used on the changelog."""
    head: bytes
    items: dict[int, bytes]
    next_seq: int


class Changelog:
    """Writes and reads one stage's state. Writing is two steps for the caller's producer
    (acks=all): ``save = writes(tp, head, fresh, gone)``, send ``save.first`` and set
    ``save.offsets``; then send ``manifest(save)``; then ``written(save)``. ``read`` is
    synchronous (kafka-python); ``rebuild`` is its logic on records already read."""

    def __init__(self, settings, stage: str, reader=None) -> None:
        self.settings = settings
        self.stage = stage
        self.topic = topic_name(settings, stage)
        # (settings, topic, partition, timeout) -> a reader of the partition (kafka_clients.PartitionReader)
        self.reader = reader
        self.gen: dict[str, int] = {}                   # tp -> generation of its manifest
        self.chunks: dict[tuple[str, int], int] = {}    # (tp, gen) -> chunks written there
        # tp -> {seq: (offset of its first piece, pieces)} of the held events its manifest lists
        self.live: dict[str, dict[int, tuple[int, int]]] = {}
        # tp -> {key: offset}: records its manifest no longer needs, to delete with the next save
        self.doomed: dict[str, dict[bytes, int]] = {}

    @staticmethod
    def _item_keys(tp: str, seq: int, pieces: int) -> list[bytes]:
        return [f"{tp}@{seq}.{i}".encode() for i in range(pieces)]

    def writes(self, tp: str, head: bytes, fresh: list[tuple[int, bytes]] = (),
               gone: list[int] = ()) -> Save:
        """The records that save partition ``tp``: its ``head`` in full (in the other
        generation), the held events ``fresh`` (seq, bytes) saved for the first time, and
        the deletion of the saved events ``gone`` (released since the last save)."""
        number = partition_number(tp)
        gen = 1 - self.gen.get(tp, 1)
        first: list[Record] = [(key, None, number) for key in self.doomed.get(tp, {})]
        save = Save(tp, first, gen, 0, head, gone=list(gone))
        for seq, data in fresh:
            pieces = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
            save.new[seq] = len(pieces)
            first.extend((key, piece, number)
                         for key, piece in zip(self._item_keys(tp, seq, len(pieces)), pieces))
        live = {seq: p for seq, (_o, p) in self.live.get(tp, {}).items()}
        for seq in save.gone:
            live.pop(seq, None)
        live.update(save.new)
        save.index = index_of(live)
        whole = head + save.index
        pieces = [whole[i:i + CHUNK] for i in range(0, len(whole), CHUNK)] or [b""]
        save.chunks = len(pieces)
        first.extend((f"{tp}#{gen}.{i}".encode(), piece, number) for i, piece in enumerate(pieces))
        for i in range(len(pieces), self.chunks.get((tp, gen), 0)):
            first.append((f"{tp}#{gen}.{i}".encode(), None, number))
        return save

    def manifest(self, save: Save) -> Record:
        """The manifest of ``save``, once ``save.first`` was acknowledged at ``save.offsets``."""
        tp = save.tp
        at = dict(zip((key for key, _v, _n in save.first), save.offsets))
        live = dict(self.live.get(tp, {}))
        doomed: dict[bytes, int] = {}
        for seq in save.gone:
            where = live.pop(seq, None)
            if where is not None:
                for key in self._item_keys(tp, seq, where[1]):
                    doomed[key] = where[0]
        for seq, pieces in save.new.items():
            live[seq] = (at[self._item_keys(tp, seq, pieces)[0]], pieces)
        head_at = at[f"{tp}#{save.gen}.0".encode()]
        # the manifest needs its head, its events, and the events it deletes until they are
        # deleted (a restore from it finds them, and deletes them, if the next save never comes)
        lowest = min([head_at] + [off for off, _p in live.values()] + list(doomed.values()))
        save.live, save.doomed = live, doomed
        doc = {"gen": save.gen, "chunks": save.chunks, "bytes": len(save.head), "index": len(save.index),
               "sha256": hashlib.sha256(save.head + save.index).hexdigest(),
               "next_seq": max(live, default=-1) + 1, "from": lowest}
        return (tp.encode(), codec.dumps(doc), partition_number(tp))

    def written(self, save: Save) -> None:
        """``save``'s manifest was acknowledged: it is the partition's state now."""
        tp = save.tp
        self.gen[tp] = save.gen
        self.chunks[(tp, save.gen)] = save.chunks
        self.live[tp] = save.live
        self.doomed[tp] = save.doomed

    def abandon(self, tp: str) -> None:
        """The partition starts fresh: the events of the state read are deleted by the next save."""
        doomed = self.doomed.setdefault(tp, {})
        for seq, (off, pieces) in self.live.pop(tp, {}).items():
            for key in self._item_keys(tp, seq, pieces):
                doomed[key] = off

    def forget(self, tp: str) -> None:
        """The partition went to another worker: what we knew of its records is stale."""
        for d in (self.gen, self.live, self.doomed):
            d.pop(tp, None)
        for key in [k for k in self.chunks if k[0] == tp]:
            del self.chunks[key]

    # -- reading ---------------------------------------------------------------------
    def read(self, tp: str, timeout: float = 60.0) -> Restored | None:
        """Partition ``tp``'s saved state (None if it has none): the changelog partition is
        read backwards from its end to its last manifest, then from the manifest's ``from``.
        ``StateUnreadable`` if the manifest's records are missing or damaged; KafkaError if
        Kafka does not answer."""
        from pipeline.streaming.kafka_clients import PartitionReader

        key = tp.encode()
        reader = (self.reader or PartitionReader)(self.settings, self.topic, partition_number(tp), timeout)
        try:
            begin, end = reader.bounds()
            stop, window, found = end, SEARCH, None
            while stop > begin and found is None:
                start = max(begin, stop - window)
                for off, k, v in reversed(reader.read(start, stop)):
                    if k == key:
                        found = (off, v)         # the last manifest (a tombstone: no state)
                        break
                stop, window = start, window * 4
            if found is None or found[1] is None:
                return None
            try:
                lowest = int(codec.loads(found[1]).get("from", begin))
            except Exception:
                lowest = begin
            return self.rebuild(tp, reader.read(max(begin, min(lowest, found[0])), end))
        finally:
            reader.close()

    def rebuild(self, tp: str, records: list[tuple[int, bytes | None, bytes | None]]) -> Restored | None:
        """Partition ``tp``'s state from its changelog records (offset, key, value) in order,
        from at least the last manifest's ``from`` to the end; remembers the partition's
        records (for the next saves) and those no manifest needs (deleted by the next save)."""
        latest: dict[bytes, tuple[int, bytes]] = {}
        for off, key, value in records:
            if key is None:
                continue
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = (off, value)
        raw = latest.get(tp.encode())
        head_prefix, item_prefix = f"{tp}#".encode(), f"{tp}@".encode()
        item_keys: list[tuple[bytes, int, int]] = []       # (key, seq, offset) of held events
        for key, (off, _v) in latest.items():
            if key.startswith(head_prefix):
                gen_s, _, i_s = key[len(head_prefix):].decode().partition(".")
                if gen_s.isdigit() and i_s.isdigit():
                    k = (tp, int(gen_s))
                    self.chunks[k] = max(self.chunks.get(k, 0), int(i_s) + 1)
            elif key.startswith(item_prefix):
                seq_s, _, i_s = key[len(item_prefix):].decode().partition(".")
                if seq_s.isdigit() and i_s.isdigit():
                    item_keys.append((key, int(seq_s), off))
        if raw is None:
            return None
        try:
            manifest = codec.loads(raw[1])
            gen, n = int(manifest["gen"]), int(manifest["chunks"])
            size, index_size = int(manifest["bytes"]), int(manifest["index"])
            next_seq = int(manifest.get("next_seq", 0))
        except Exception as exc:
            raise StateUnreadable(f"manifest of {tp} in {self.topic} unreadable "
                                  f"(or of an older format): {exc!r}") from None
        parts = [latest.get(f"{tp}#{gen}.{i}".encode()) for i in range(n)]
        if any(p is None for p in parts):
            raise StateUnreadable(f"state of {tp} in {self.topic}: chunk(s) of generation {gen} missing")
        whole = b"".join(p[1] for p in parts)
        if len(whole) != size + index_size or hashlib.sha256(whole).hexdigest() != manifest.get("sha256"):
            raise StateUnreadable(f"state of {tp} in {self.topic}: chunks do not match their digest")
        head = whole[:size]
        try:
            pieces = read_index(whole[size:])
        except Exception as exc:
            raise StateUnreadable(f"index of {tp} in {self.topic} unreadable: {exc!r}") from None
        items: dict[int, bytes] = {}
        live: dict[int, tuple[int, int]] = {}
        for seq, count in sorted(pieces.items()):
            found = [latest.get(key) for key in self._item_keys(tp, seq, count)]
            if any(f is None for f in found):
                raise StateUnreadable(f"state of {tp} in {self.topic}: record {seq} missing")
            items[seq] = b"".join(f[1] for f in found)
            live[seq] = (found[0][0], count)
        doomed = {key: off for key, seq, off in item_keys if seq not in live}
        self.gen[tp] = gen
        self.live[tp] = live
        self.doomed[tp] = doomed
        used = max([next_seq - 1, *(seq for _k, seq, _o in item_keys)])
        return Restored(head, items, used + 1)


class StateUnreadable(Exception):
    pass


def restore_partition(stage, changelog: Changelog, tp: str, now: float) -> bool:
    """Bring partition ``tp``'s state from the changelog into ``stage``; True if
    restored. A state that cannot be used is left alone with one warning, and
    the partition starts fresh from its committed offset (its records are deleted
    by the next save)."""
    from pipeline.codec import StateRefused

    try:
        data = changelog.read(tp)
    except StateUnreadable as exc:
        log.warning("%s: %s; the partition starts fresh from its committed offset", stage.name, exc)
        changelog.abandon(tp)
        stage.drop(tp)
        return False
    if data is None:
        log.info("%s: no saved state for %s, starting fresh", stage.name, tp)
        stage.drop(tp)
        return False
    try:
        stage.restore(tp, data.head, now, data.items, data.next_seq)
    except Exception as exc:
        why = str(exc) if isinstance(exc, StateRefused) else f"{type(exc).__name__}: {exc}"
        log.warning("%s: state of partition %s %s (%s): %s; the partition starts fresh "
                    "from its committed offset", stage.name, tp,
                    "refused" if isinstance(exc, StateRefused) else "unusable", changelog.topic, why)
        changelog.abandon(tp)
        stage.drop(tp)
        stage.partition(tp).journal.next_seq = data.next_seq     # new records never reuse a number
        return False
    log.info("%s: state of %s restored from %s (offset %s, %d bytes, %d held events)", stage.name, tp,
             changelog.topic, stage.offsets.get(tp), len(data.head) + sum(map(len, data.items.values())),
             len(data.items))
    return True
