"""Local log files: expand paths, name host and service, read lines.

PATH arguments may be files (plain, ``.gz``, rotated ``.1``), directories
(walked recursively for log-looking files) or globs. Lines longer than
``max_line`` bytes are cut into pieces that fold back into their record as
continuation lines, so a runaway line never exhausts memory and no byte is
lost.
"""
from __future__ import annotations

import glob
import gzip
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from .extract import Source
from .naming import service_from_path

LOG_NAME = re.compile(
    r"(\.(?:log|txt|json|jsonl)(?:[.-]\d{1,8})*(?:\.gz)?|\.log\.\d+\.gz|^(?:messages|syslog)(?:[.-]\d{1,8})?(?:\.gz)?)$")
MAX_LINE = 1 << 20


class PathError(Exception):
    """A PATH argument that names nothing readable."""


@dataclass(frozen=True)
class LogFile:
    path: str
    source: Source
    size: int

    @property
    def compressed(self) -> bool:
        return self.path.endswith(".gz")


def _is_log(name: str) -> bool:
    return bool(LOG_NAME.search(name))


def _host_for(path: str, root: str | None, host: str | None) -> str | None:
    if host:
        return host
    if root is None:
        return None
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    return parts[0] if len(parts) >= 2 else None


def discover(paths: list[str], host: str | None = None) -> list[LogFile]:
    """Files to read, in a stable order; raises PathError listing every bad path."""
    found: dict[str, LogFile] = {}
    errors: list[str] = []

    def add(path: str, root: str | None) -> None:
        real = os.path.abspath(path)
        if real in found:
            return
        try:
            size = os.path.getsize(real)
            with open(real, "rb"):
                pass
        except OSError as exc:
            errors.append(f"{path}: cannot read: {exc.strerror or exc}")
            return
        src = Source(_host_for(real, root, host) or "unknown", service_from_path(real), real)
        found[real] = LogFile(real, src, size)

    for arg in paths:
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
        if not matches:
            errors.append(f"{arg}: no such file or directory (glob matched nothing)")
            continue
        for item in matches:
            if os.path.isdir(item):
                root = os.path.abspath(item)
                before = len(found)
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames.sort()
                    for name in sorted(filenames):
                        if _is_log(name):
                            add(os.path.join(dirpath, name), root)
                if len(found) == before:
                    errors.append(f"{item}: directory holds no log files (*.log, *.log.N, *.gz, *.txt, *.json)")
            elif os.path.exists(item):
                add(item, None)
            else:
                errors.append(f"{item}: no such file or directory")
    if errors:
        raise PathError("\n".join(errors))
    return list(found.values())


def read_lines(lf: LogFile, max_line: int = MAX_LINE,
               on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) pairs; offsets are of the uncompressed stream.

    ``on_progress(n)`` is called now and then with the bytes consumed from
    disk since the last call (compressed bytes for ``.gz``)."""
    opener = gzip.open if lf.compressed else open
    offset = 0
    reported = 0
    with opener(lf.path, "rb") as fh:
        disk = getattr(fh, "fileobj", None) or fh
        readline = fh.readline
        n = 0
        while True:
            raw = readline(max_line)
            if not raw:
                break
            yield offset, raw
            offset += len(raw)
            n += 1
            if on_progress is not None and n & 0x3FFF == 0:
                pos = disk.tell()
                on_progress(pos - reported)
                reported = pos
    if on_progress is not None:
        on_progress(max(lf.size - reported, 0))


READ_SIZE = 1 << 16


def read_chunks(lf: LogFile, max_line: int = MAX_LINE, read_size: int = READ_SIZE,
                on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, chunk) pairs: the lines ``read_lines`` yields, several
    at a time. Each chunk is whole lines (the last chunk's last line may lack
    its newline); a piece of an over-long line (``max_line`` bytes, no
    newline) always comes alone, so splitting every chunk after each newline
    gives exactly ``read_lines``' lines.

    ``on_progress(n)`` is called after each read with the bytes consumed from
    disk since the last call (compressed bytes for ``.gz``)."""
    opener = gzip.open if lf.compressed else open
    read_size = max(1, min(read_size, max_line))
    offset = 0
    reported = 0
    buf = b""
    with opener(lf.path, "rb") as fh:
        disk = getattr(fh, "fileobj", None) or fh
        read = fh.read
        eof = False
        while not eof:
            data = read(read_size)
            if data:
                buf = buf + data if buf else data
            else:
                eof = True
            while buf:
                if len(buf) > max_line:
                    cut = buf.rfind(b"\n", 0, max_line) + 1
                    if cut == 0:            # no newline in max_line bytes: a piece
                        cut = max_line
                elif eof:
                    cut = len(buf)
                else:
                    cut = buf.rfind(b"\n") + 1
                    if cut == 0:
                        break               # a line still incomplete: read on
                chunk = buf[:cut] if cut < len(buf) else buf
                buf = buf[cut:]
                yield offset, chunk
                offset += len(chunk)
            if on_progress is not None and data:
                pos = disk.tell()
                on_progress(pos - reported)
                reported = pos
    if on_progress is not None:
        on_progress(max(lf.size - reported, 0))
