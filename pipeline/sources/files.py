"""Local log files: expand paths, name host and service, read lines.

PATH arguments may be files (plain, ``.gz``, rotated ``.1``), directories
(walked recursively for log-looking files) or globs. A directory PATH is the
root of a ``<root>/<host>/.../<service>.log`` layout; so is the literal
directory part of a glob before its first wildcard component. Lines longer than
``max_line`` bytes are cut into pieces that fold back into their record as
continuation lines, so a runaway line never exhausts memory and no byte is
lost.

Damage never raises a traceback at the user: an unreadable subdirectory is a
warning (``on_warning``), and a file that breaks off while being read (a
truncated or corrupt ``.gz``, an I/O error) yields every line before the
damage and then raises ``ReadError``.
"""
from __future__ import annotations

import glob
import gzip
import os
import re
import sys
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

from pipeline.parsing.envelope import PLACEHOLDER_HOST
from pipeline.parsing.extract import Source
from pipeline.parsing.naming import service_from_path

LOG_NAME = re.compile(
    r"(\.(?:log|txt|json|jsonl)(?:[.-]\d{1,8})*(?:\.gz)?|\.log\.\d+\.gz|^(?:messages|syslog)(?:[.-]\d{1,8})?(?:\.gz)?)$")
MAX_LINE = 1 << 20


class PathError(Exception):
    """A PATH argument that names nothing readable."""


class ReadError(Exception):
    """A file broke off while being read: ``read_lines``/``read_chunks``
    raise it after yielding everything before the damage."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# what a damaged file raises on read: gzip.BadGzipFile and I/O errors are OSError
_DAMAGE = (OSError, EOFError, zlib.error)


def warn(message: str) -> None:
    """The default ``on_warning``: one line on stderr."""
    print(f"osloscope: warning: {message}", file=sys.stderr, flush=True)


def _problem(exc: BaseException, offset: int) -> str:
    if isinstance(exc, EOFError):
        return "truncated gzip stream"
    if isinstance(exc, gzip.BadGzipFile):
        if str(exc).startswith("Not a gzipped file"):
            return "not a gzip file" if offset == 0 else "data after the end of the gzip stream is not gzip"
        return f"corrupt gzip stream ({exc})"
    if isinstance(exc, zlib.error):
        return f"corrupt gzip stream ({exc})"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


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


def glob_root(pattern: str) -> str | None:
    """The literal directory before the first wildcard component of a glob
    (``sos/*/nova/*.log`` -> ``sos``): the root of the host layout. None for
    no glob, or a glob without such a prefix (``*/x.log``, ``/*/x.log``)."""
    if not glob.has_magic(pattern):
        return None
    drive, rest = os.path.splitdrive(pattern)
    parts = rest.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            literal = [p for p in parts[:i] if p]
            if not literal:
                return None
            return os.path.abspath(drive + os.sep.join(parts[:i]))
    return None


def _unreadable_error(item: str, root: str, failures: list[OSError]) -> str:
    first = failures[0]
    reason = first.strerror or str(first)
    if len(failures) == 1 and os.path.abspath(first.filename or "") == root:
        return f"{item}: cannot read directory: {reason}"
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    n = "y" if len(failures) == 1 else "ies"
    return (f"{item}: no log file could be read: {len(failures)} director{n} could not be read "
            f"({first.filename}: {reason}{more})")


def discover(paths: list[str], host: str | None = None,
             on_warning: Callable[[str], None] | None = warn) -> list[LogFile]:
    """Files to read, in a stable order; raises PathError listing every bad path.

    Subdirectories that cannot be read are reported to ``on_warning`` (one
    message each) and skipped; a directory PATH of which nothing could be
    read is an error saying so."""
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
        src = Source(_host_for(real, root, host) or PLACEHOLDER_HOST, service_from_path(real), real)
        found[real] = LogFile(real, src, size)

    for arg in paths:
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
        if not matches:
            errors.append(f"{arg}: no such file or directory (glob matched nothing)")
            continue
        layout = glob_root(arg)          # a glob's literal directory: the layout root
        for item in matches:
            if os.path.isdir(item):
                top = os.path.abspath(item)
                root = layout or top
                before = len(found)
                failures: list[OSError] = []
                for dirpath, dirnames, filenames in os.walk(top, onerror=failures.append):
                    dirnames.sort()
                    for name in sorted(filenames):
                        if _is_log(name):
                            add(os.path.join(dirpath, name), root)
                if len(found) == before and failures:
                    errors.append(_unreadable_error(item, top, failures))
                elif len(found) == before:
                    errors.append(f"{item}: directory holds no log files (*.log, *.log.N, *.gz, *.txt, *.json)")
                elif on_warning is not None:
                    for exc in failures:
                        on_warning(f"cannot read directory {exc.filename}: {exc.strerror or exc}; "
                                   "its logs are not analysed")
            elif os.path.exists(item):
                add(item, layout)
            else:
                errors.append(f"{item}: no such file or directory")
    if errors:
        raise PathError("\n".join(errors))
    return list(found.values())


def read_lines(lf: LogFile, max_line: int = MAX_LINE,
               on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) pairs; offsets are of the uncompressed stream: the
    chunks of ``read_chunks`` cut after each newline (``readline(max_line)``
    gives the same lines).

    ``on_progress(n)`` is called now and then with the bytes consumed from
    disk since the last call (compressed bytes for ``.gz``).

    A file that breaks off (truncated or corrupt ``.gz``, I/O error) raises
    ``ReadError`` after the lines before the damage."""
    for offset, chunk in read_chunks(lf, max_line, on_progress=on_progress):
        start, n = 0, len(chunk)
        while start < n:
            end = chunk.find(b"\n", start) + 1 or n
            yield offset + start, chunk[start:end]
            start = end


def _open(lf: LogFile):
    try:
        return (gzip.open if lf.compressed else open)(lf.path, "rb")
    except OSError as exc:
        raise ReadError(lf.path, _problem(exc, 0)) from exc


READ_SIZE = 1 << 16


def read_chunks(lf: LogFile, max_line: int = MAX_LINE, read_size: int = READ_SIZE,
                on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, chunk) pairs: the lines ``read_lines`` yields, several
    at a time. Each chunk is whole lines (the last chunk's last line may lack
    its newline); a piece of an over-long line (``max_line`` bytes, no
    newline) always comes alone, so splitting every chunk after each newline
    gives exactly ``read_lines``' lines.

    ``on_progress(n)`` is called after each read with the bytes consumed from
    disk since the last call (compressed bytes for ``.gz``).

    A file that breaks off (truncated or corrupt ``.gz``, I/O error) raises
    ``ReadError`` after the whole lines before the damage."""
    read_size = max(1, min(read_size, max_line))
    offset = 0
    reported = 0
    buf = b""
    damage = None
    fh = _open(lf)
    with fh:
        disk = getattr(fh, "fileobj", None) or fh
        read = fh.read1             # returns what it has before a damaged part
        eof = False
        while not eof:
            try:
                data = read(read_size)
            except _DAMAGE as exc:
                damage = exc
                data = b""
                buf = buf[:buf.rfind(b"\n") + 1]     # a line cut off by the damage is lost
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
    if damage is not None:
        raise ReadError(lf.path, _problem(damage, offset)) from damage
