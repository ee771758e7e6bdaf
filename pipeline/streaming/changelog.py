"""Stage state in Kafka: one compacted changelog topic per stage, so state
follows its partition to whichever worker is assigned it.

Why not faust tables: a stage's state per partition is one document (parsers
with their open records, detector engine, event-time positions, held events,
the last input offset) that must be written *and acknowledged* before the
input offsets are committed, and read back whole when the partition is
assigned. faust tables write their changelog per key, asynchronously to the
commit, and their exactly-once mode has open duplicate issues; a topic of our
own, written with acks=all before the ack, keeps the one rule the worker has:
nothing is committed past unsaved state.

Layout: topic ``<app_id>.state.<stage>``, compacted, with as many partitions
as the input topic. The state of input partition ``topic/N`` lives in
changelog partition N, as

* chunks ``<topic/N>#<gen>.<i>`` (at most ``CHUNK`` bytes each, under the
  broker's default 1 MiB message limit), and
* a manifest ``<topic/N>`` = ``{"gen", "chunks", "bytes", "sha256"}``,
  written after its chunks.

Successive saves alternate between generation 0 and 1, so a save cut short
by a crash leaves the previous generation, which the manifest still points
to, intact. Chunks a smaller state no longer needs are deleted (tombstones).
A manifest whose chunks are missing or do not match its digest is refused
with a warning, and the partition starts fresh from its committed offset.
"""
from __future__ import annotations

import hashlib
import logging

from pipeline import codec

log = logging.getLogger("osloscope.worker")

CHUNK = 512 * 1024
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                "segment.ms": str(3600_000), "delete.retention.ms": str(86400_000)}


def topic_name(settings, stage: str) -> str:
    return f"{settings.worker.app_id}.state.{stage}"


def partition_number(tp: str) -> int:
    return int(tp.rpartition("/")[2])


class Changelog:
    """Writes and reads one stage's state; ``writes`` are (key, value, partition)
    for the caller's producer (acks=all), ``read`` is synchronous (kafka-python)."""

    def __init__(self, settings, stage: str) -> None:
        self.settings = settings
        self.stage = stage
        self.topic = topic_name(settings, stage)
        self.gen: dict[str, int] = {}                   # tp -> generation of its manifest
        self.chunks: dict[tuple[str, int], int] = {}    # (tp, gen) -> chunks written there

    def writes(self, tp: str, data: bytes) -> list[tuple[bytes, bytes | None, int]]:
        """The records that replace partition ``tp``'s state by ``data``: chunks of
        the other generation, tombstones for its leftovers, then the manifest."""
        number = partition_number(tp)
        gen = 1 - self.gen.get(tp, 1)
        pieces = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
        out: list[tuple[bytes, bytes | None, int]] = [
            (f"{tp}#{gen}.{i}".encode(), piece, number) for i, piece in enumerate(pieces)]
        for i in range(len(pieces), self.chunks.get((tp, gen), 0)):
            out.append((f"{tp}#{gen}.{i}".encode(), None, number))
        manifest = {"gen": gen, "chunks": len(pieces), "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()}
        out.append((tp.encode(), codec.dumps(manifest), number))
        return out

    def written(self, tp: str, records: list[tuple[bytes, bytes | None, int]]) -> None:
        """``writes(tp, ...)`` was acknowledged: its generation is the current one."""
        manifest = codec.loads(records[-1][1])
        self.gen[tp] = manifest["gen"]
        self.chunks[(tp, manifest["gen"])] = manifest["chunks"]

    def forget(self, tp: str) -> None:
        """The partition went to another worker: what we knew of its chunks is stale."""
        self.gen.pop(tp, None)
        for key in [k for k in self.chunks if k[0] == tp]:
            del self.chunks[key]

    # -- reading ---------------------------------------------------------------------
    def read(self, tp: str, timeout: float = 60.0) -> bytes | None:
        """Partition ``tp``'s saved state (None if it has none). Reads its changelog
        partition from the start to its end. ``StateUnreadable`` if a manifest's
        chunks are missing or damaged; KafkaError if Kafka does not answer."""
        from pipeline.streaming.kafka_clients import read_partition

        records = read_partition(self.settings, self.topic, partition_number(tp), timeout)
        latest: dict[bytes, bytes] = {}
        for key, value in records:
            if key is None:
                continue
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = value
        raw = latest.get(tp.encode())
        # remember every chunk present, so later saves delete those they no longer need
        prefix = f"{tp}#".encode()
        for key in latest:
            if key.startswith(prefix):
                gen_s, _, i_s = key[len(prefix):].decode().partition(".")
                if gen_s.isdigit() and i_s.isdigit():
                    k = (tp, int(gen_s))
                    self.chunks[k] = max(self.chunks.get(k, 0), int(i_s) + 1)
        if raw is None:
            return None
        try:
            manifest = codec.loads(raw)
            gen, n = int(manifest["gen"]), int(manifest["chunks"])
        except Exception as exc:
            raise StateUnreadable(f"manifest of {tp} in {self.topic} unreadable: {exc}") from None
        self.gen[tp] = gen
        parts = [latest.get(f"{tp}#{gen}.{i}".encode()) for i in range(n)]
        if any(p is None for p in parts):
            raise StateUnreadable(f"state of {tp} in {self.topic}: chunk(s) of generation {gen} missing")
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            raise StateUnreadable(f"state of {tp} in {self.topic}: chunks do not match their digest")
        return data


class StateUnreadable(Exception):
    pass


def restore_partition(stage, changelog: Changelog, tp: str, now: float) -> bool:
    """Bring partition ``tp``'s state from the changelog into ``stage``; True if
    restored. A state that cannot be used is left alone with one warning, and
    the partition starts fresh from its committed offset."""
    from pipeline.codec import StateRefused

    try:
        data = changelog.read(tp)
    except StateUnreadable as exc:
        log.warning("%s: %s; the partition starts fresh from its committed offset", stage.name, exc)
        stage.drop(tp)
        return False
    if data is None:
        log.info("%s: no saved state for %s, starting fresh", stage.name, tp)
        stage.drop(tp)
        return False
    try:
        stage.restore(tp, data, now)
    except StateRefused as exc:
        log.warning("%s: state of partition %s refused (%s): %s; the partition starts fresh "
                    "from its committed offset", stage.name, tp, changelog.topic, exc)
        stage.drop(tp)
        return False
    except Exception as exc:
        log.warning("%s: state of partition %s unusable (%s): %s: %s; the partition starts fresh "
                    "from its committed offset", stage.name, tp, changelog.topic, type(exc).__name__, exc)
        stage.drop(tp)
        return False
    log.info("%s: state of %s restored from %s (offset %s, %d bytes)", stage.name, tp, changelog.topic,
             stage.offsets.get(tp), len(data))
    return True
