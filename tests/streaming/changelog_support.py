"""A stage changelog topic in memory, as Kafka answers it: offsets that only grow, the
newest record per key after a compaction, tombstones. For unit tests of the changelog's
logic (pipeline/streaming/changelog.py); the same through a real broker is in
tests/integration/test_changelog_kafka.py."""
from __future__ import annotations

from pipeline.streaming.changelog import Changelog


class MemoryPartition:
    def __init__(self) -> None:
        self.records: list[tuple[int, bytes | None, bytes | None]] = []
        self.end = 0
        self.reads = 0                 # records handed out by ``read``
        self.read_bytes = 0            # their keys' and values' bytes

    def append(self, records) -> list[int]:
        """(key, value, partition) records appended; their offsets."""
        out = []
        for key, value, _n in records:
            self.records.append((self.end, key, value))
            out.append(self.end)
            self.end += 1
        return out

    def compact(self) -> None:
        """What the log cleaner leaves once every record is past its lag and every
        tombstone past delete.retention.ms: the newest value per key, no tombstones."""
        newest = {key: off for off, key, _v in self.records}
        self.records = [r for r in self.records if newest[r[1]] == r[0] and r[2] is not None]

    # the PartitionReader interface
    def bounds(self) -> tuple[int, int]:
        return (self.records[0][0] if self.records else self.end), self.end

    def read(self, start: int, stop: int):
        out = [r for r in self.records if start <= r[0] < stop]
        self.reads += len(out)
        self.read_bytes += sum(len(k or b"") + len(v or b"") for _o, k, v in out)
        return out

    def close(self) -> None:
        pass


class MemoryTopic:
    def __init__(self) -> None:
        self.partitions: dict[int, MemoryPartition] = {}

    def partition(self, number: int) -> MemoryPartition:
        return self.partitions.setdefault(number, MemoryPartition())

    def reader(self, _settings, _topic, number: int, _timeout) -> MemoryPartition:
        return self.partition(number)

    def changelog(self, settings, stage: str) -> Changelog:
        return Changelog(settings, stage, reader=self.reader)


def save(stage, changelog: Changelog, topic: MemoryTopic, crash_before_manifest: bool = False) -> int:
    """What the worker's save does (pipeline/streaming/worker.py), into ``topic``; the bytes
    written. ``crash_before_manifest``: the records but not the manifests get written."""
    written = 0
    for tp in stage.dirty():
        sv = changelog.writes(tp, stage.snapshot(tp), *stage.changes(tp))
        part = topic.partition(int(tp.rpartition("/")[2]))
        sv.offsets = part.append(sv.first)
        written += sv.bytes
        if crash_before_manifest:
            continue
        manifest = changelog.manifest(sv)
        part.append([manifest])
        written += len(manifest[1])
        changelog.written(sv)
        stage.saved(tp)
    return written


def held(stage, tp: str) -> list[tuple]:
    """What partition ``tp`` of ``stage`` holds, as saved: (ts, order, record) in order."""
    from pipeline.streaming.eventtime import Held

    part = stage.parts[tp]
    return [(ts, order, part.record(Held(ts, order, item))) for ts, order, item in part.held.items()]


def entries(stage, tp: str) -> dict[str, list]:
    """The entries of partition ``tp``'s tracked stores as saved, store by store, in their
    order of use (the order a restore must give back)."""
    return {name: [store.entry(key) for key in store] for name, store in stage.parts[tp].stores.items()}


def move(stage, settings):
    """A new stage of the same kind with ``stage``'s state, saved to a changelog and read
    back as a worker taking its partitions over does."""
    from pipeline.streaming.changelog import restore_partition

    topic = MemoryTopic()
    save(stage, topic.changelog(settings, stage.name), topic)
    fresh = type(stage)(settings)
    log = topic.changelog(settings, stage.name)
    for tp in stage.partitions():
        assert restore_partition(fresh, log, tp, 0.0), tp
        assert entries(fresh, tp) == entries(stage, tp), tp
    return fresh
