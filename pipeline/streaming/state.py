"""Where the worker keeps its stages' state: one file per stage and input
partition, ``<worker.state_dir>/<app_id>/<stage>/<topic>-<partition>.json``,
each a versioned JSON snapshot (``pipeline.codec.state``) replaced atomically.

The files survive a restart of the worker on the same machine. (A partition
that moves to another worker starts there from its committed offset with
fresh state, until state travels through a changelog topic.)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.codec import StateRefused

log = logging.getLogger("osloscope.worker")

SUFFIX = ".json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore:
    def __init__(self, directory: str | os.PathLike, app_id: str) -> None:
        self.dir = Path(directory) / app_id
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, stage: str, partition: str) -> Path:
        """The file of ``partition`` ("topic/partition": a topic name has no "/")."""
        topic, _, number = partition.rpartition("/")
        return self.dir / stage / f"{topic}-{number}{SUFFIX}"

    def partitions(self, stage: str) -> list[str]:
        """The partitions ``stage`` has saved state for."""
        folder = self.dir / stage
        if not folder.is_dir():
            return []
        out = []
        for f in sorted(folder.glob(f"*{SUFFIX}")):
            topic, _, number = f.name[:-len(SUFFIX)].rpartition("-")
            if topic and number.isdigit():
                out.append(f"{topic}/{number}")
        return out

    def save(self, stage: str, partition: str, data: bytes) -> None:
        """Replace the partition's file: tmp + fsync + rename + directory fsync.
        On failure the tmp file is removed and the error raised (the old file stays)."""
        final = self.path(stage, partition)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.dir)
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    def load(self, stage: str, partition: str) -> bytes | None:
        try:
            return self.path(stage, partition).read_bytes()
        except FileNotFoundError:
            return None

    def legacy(self, stage: str) -> Path | None:
        """The stage's state file of format version 1 (one pickle per stage), if any."""
        old = self.dir / f"{stage}.state"
        return old if old.exists() else None


def restore_stage(stage, store: StateStore, now: float) -> list[str]:
    """Restore every partition ``store`` holds for ``stage``; returns those restored.
    A snapshot that cannot be used is left alone with one warning, and its
    partition starts fresh from the committed offsets."""
    old = store.legacy(stage.name)
    if old is not None:
        log.warning("%s: ignoring %s (state format version 1, one pickle per stage; this worker "
                    "reads version 2 per partition): partitions start fresh from the committed offsets",
                    stage.name, old)
    restored = []
    for tp in store.partitions(stage.name):
        path = store.path(stage.name, tp)
        data = store.load(stage.name, tp)
        if data is None:
            continue
        try:
            stage.restore(tp, data, now)
        except StateRefused as exc:
            log.warning("%s: state of partition %s refused (%s): %s; the partition starts fresh "
                        "from the committed offsets", stage.name, tp, path, exc)
            continue
        except Exception as exc:
            log.warning("%s: state of partition %s unusable (%s): %s: %s; the partition starts fresh "
                        "from the committed offsets", stage.name, tp, path, type(exc).__name__, exc)
            continue
        restored.append(tp)
    if restored:
        log.info("%s: state restored for %s (offsets %s)", stage.name, ", ".join(restored),
                 {tp: stage.offsets[tp] for tp in restored})
    else:
        log.info("%s: no saved state, starting fresh", stage.name)
    return restored
