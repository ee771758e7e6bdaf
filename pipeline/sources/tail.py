"""Follow log files as they grow: the tailer under ``osloscope ship`` and ``watch``.

Poll based (no inotify): every ``poll()`` reads what the files gained since
the last one and returns the complete lines as ``Line(file, offset, data)``
(``data`` ends with ``b"\\n"``, ``offset`` is the byte offset of its first
byte). PATHs are expanded as in ``sources.discover`` (files, directories
walked for log-looking names, globs) and re-expanded every
``rescan_interval`` seconds, so new files are picked up.

Contract
--------
* **Partial lines.** A last line without ``\\n`` is held back until it is
  completed. It is emitted as it is (without ``\\n``) when the file has not
  grown for ``partial_idle`` seconds, when a rotated file is closed, when an
  archive ends, or (``once``) when the file's mtime is ``partial_idle``
  seconds old. If its writer completes it later, the rest arrives as a line
  of its own (the parser folds prefix-less text into the record before it).
* **Long lines** are cut into pieces of ``max_line`` bytes exactly as
  ``sources.read_lines`` does (``readline(max_line)``); no byte is lost.
* **Rotation by rename** (the path now names another inode, or nothing):
  the old descriptor is read on -- writers often keep writing into it until
  they reopen -- and closed once it has been idle for ``rotate_linger``
  seconds; the new file at the path is read from 0 under the same stream
  name (``file.label``), after the old one within every poll. A closed
  rotated file that grows again (seen by a rescan) is reopened at its end.
* **copytruncate** (same inode, size below the read position, or the first
  bytes changed): read again from 0. The copy logrotate made just before the
  truncation (a sibling ``x.log.1``, ``x.log-DATE``, ``.gz``) is found by its
  fingerprint and read from the position the tailer had reached, so lines
  written between the last poll and the copy are not lost.
* **Archives** (``.gz``, ``x.log.1``, ``x.log-20240101``) are read once, never
  followed: at start-up with ``from_start``/``once`` or when a checkpoint says
  they are unfinished. Archives that appear later are the rotations of files
  already followed and are skipped (their content was read under the live
  name) unless their fingerprint matches an unfinished position.
* **Start positions.** A checkpoint for the file's identity (device, inode)
  whose fingerprint (sha1 of the first 256 bytes, of the uncompressed
  content for ``.gz``) still matches wins. Otherwise a file whose first 256
  bytes match a known position (the same content under a new inode, e.g.
  compressed) continues from it. Otherwise: ``from_start`` or ``once`` or a
  file that appears after start-up or a path a checkpoint names (it rotated
  while we were away) starts at 0; a live file present at start-up starts at
  its end (after its last complete line): live tail.
* **Own files.** Paths in ``exclude`` (and files below excluded
  directories) are never read: the caller's dead-letter file or checkpoint
  directory would otherwise feed itself back.
* **Errors** (permissions, files deleted under us, I/O errors) never raise
  out of ``poll``: they go to ``on_error(message)`` once per path and the
  file is retried at the next rescan. Binary garbage is passed through as
  bytes.

The tailer only *reads*: positions (``positions()``, ``position(file,
offset)``) are what the caller makes durable with ``Checkpoints`` when it
decides they are (the shipper: when Kafka has acknowledged the lines).
"""
from __future__ import annotations

import errno
import fcntl
import glob
import gzip
import hashlib
import os
import re
import stat
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, NamedTuple

import orjson

from pipeline.parsing.extract import Source
from pipeline.parsing.naming import service_from_path
from pipeline.parsing.envelope import PLACEHOLDER_HOST
from pipeline.sources.files import MAX_LINE, PathError, _host_for, _is_log

FP_BYTES = 256
READ_BLOCK = 1 << 16
READ_BUDGET = 4 << 20          # bytes read per file per poll (fairness, bounded memory)
TAIL_LOOKBACK = 1 << 16        # live tail: start after the last newline in this window
ARCHIVE = re.compile(r"(?:\.gz|\.(?:log|txt|json|jsonl)(?:[.-]\d{1,8})+|^(?:messages|syslog)[.-]\d{1,8})$")


def is_archive(path: str) -> bool:
    """A rotated or compressed file: read once, never followed."""
    return bool(ARCHIVE.search(os.path.basename(path)))


def check_paths(paths: Iterable[str]) -> None:
    """Raise PathError naming every PATH that names nothing readable.

    Unlike ``sources.discover`` an empty directory is fine: files may come."""
    errors = []
    for arg in paths:
        if glob.has_magic(arg):
            if not glob.glob(arg):
                errors.append(f"{arg}: no such file or directory (glob matched nothing)")
            continue
        if os.path.isdir(arg):
            if not os.access(arg, os.R_OK | os.X_OK):
                errors.append(f"{arg}: cannot read directory: permission denied")
        elif not os.path.exists(arg):
            errors.append(f"{arg}: no such file or directory")
        else:
            try:
                with open(arg, "rb"):
                    pass
            except OSError as exc:
                errors.append(f"{arg}: cannot read: {exc.strerror or exc}")
    if errors:
        raise PathError("\n".join(errors))


# ---------------------------------------------------------------- positions

@dataclass(frozen=True)
class Position:
    """Where reading of one file (identity dev/ino) continues; ``path`` is its
    stream name (the live path it was followed under). ``complete``: nothing
    more will ever be read from it (a finished or skipped archive)."""
    path: str
    dev: int
    ino: int
    offset: int
    fingerprint: str
    fp_len: int
    complete: bool = False
    updated: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Position":
        return cls(path=str(d["path"]), dev=int(d["dev"]), ino=int(d["ino"]), offset=int(d["offset"]),
                   fingerprint=str(d["fingerprint"]), fp_len=int(d["fp_len"]),
                   complete=bool(d.get("complete", False)), updated=float(d.get("updated", 0.0)))


class CheckpointError(Exception):
    """The checkpoint directory is unusable (corrupt file, locked by another process)."""


class Checkpoints:
    """Positions in ``<directory>/checkpoints.json``, written atomically
    (temporary file, fsync, rename, fsync of the directory). ``lock()``
    keeps a second process off the same directory. A save that fails (a
    full disk: OSError ENOSPC) removes its temporary file, leaves the last
    saved file as it was and raises; the next ``save`` writes again."""

    FILENAME = "checkpoints.json"

    def __init__(self, directory: str, *, retain: float = 7 * 86400.0, max_entries: int = 10000) -> None:
        self.directory = directory
        self.path = os.path.join(directory, self.FILENAME)
        self.retain = retain
        self.max_entries = max_entries
        self.positions: dict[str, Position] = {}
        self._lock_fh = None
        self._saved: dict[str, Position] = {}

    def lock(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        fh = open(os.path.join(self.directory, "lock"), "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise CheckpointError(f"{self.directory}: checkpoint directory in use by another "
                                  "process (one shipper per checkpoint directory)") from None
        self._lock_fh = fh
        for name in os.listdir(self.directory):   # a crashed save's temporary file holds space
            if name.startswith(self.FILENAME + ".tmp."):
                _unlink(os.path.join(self.directory, name))

    def load(self) -> dict[str, Position]:
        try:
            with open(self.path, "rb") as fh:
                data = orjson.loads(fh.read())
            positions = [Position.from_json(d) for d in data["files"]]
        except FileNotFoundError:
            positions = []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: unreadable checkpoint file ({exc}); move it "
                                  "away to start over") from None
        self.positions = {p.key: p for p in positions}
        self._saved = dict(self.positions)
        return dict(self.positions)

    def update(self, positions: Iterable[Position]) -> None:
        for p in positions:
            old = self.positions.get(p.key)
            if old is not None and old.updated and _same_place(old, p):
                continue                  # unchanged: keep its time, write nothing
            self.positions[p.key] = p

    def save(self, *, keep: Iterable[str] = (), now: float | None = None) -> bool:
        """Write if anything changed; entries not in ``keep`` (the files being
        read) are dropped once older than ``retain``. True if written."""
        now = time.time() if now is None else now
        keep = set(keep)
        for k, p in list(self.positions.items()):
            if k not in keep and p.updated and now - p.updated > self.retain:
                del self.positions[k]
        if len(self.positions) > self.max_entries:
            old = sorted((p for k, p in self.positions.items() if k not in keep), key=lambda p: p.updated)
            for p in old[: len(self.positions) - self.max_entries]:
                del self.positions[p.key]
        if self.positions == self._saved:
            return False
        os.makedirs(self.directory, exist_ok=True)
        body = orjson.dumps({"version": 1, "files": [p.to_json() for p in self.positions.values()]},
                            option=orjson.OPT_INDENT_2)
        tmp = f"{self.path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            # a full disk: the part written would hold space the next save needs
            _unlink(tmp)
            raise
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._saved = dict(self.positions)
        return True

    def close(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _same_place(a: Position, b: Position) -> bool:
    return (a.path, a.offset, a.fingerprint, a.fp_len, a.complete) == (b.path, b.offset, b.fingerprint,
                                                                       b.fp_len, b.complete)


# ------------------------------------------------------------------ tailer

def _fingerprint(data: bytes) -> tuple[str, int]:
    data = data[:FP_BYTES]
    return hashlib.sha1(data).hexdigest(), len(data)


def _matches(p: Position, fp: str, fp_len: int, head: bytes) -> bool:
    """Does a file whose first bytes are ``head`` match position ``p``?"""
    if p.fp_len > len(head):
        return False
    if p.fp_len == fp_len:
        return p.fingerprint == fp
    return hashlib.sha1(head[: p.fp_len]).hexdigest() == p.fingerprint


class TailFile:
    """One open file. ``label`` is the stream name (the live path), ``real``
    where the file is now; ``offset`` the next byte not yet emitted."""

    __slots__ = ("label", "real", "source", "dev", "ino", "archive", "gz", "fh", "read_pos", "pending",
                 "fp", "fp_len", "rotated_at", "successor", "last_growth", "after", "closed", "generation",
                 "size_seen")

    def __init__(self, label: str, real: str, source: Source, dev: int, ino: int, archive: bool,
                 gz: bool, fh, offset: int, head: bytes, now: float) -> None:
        self.label, self.real, self.source = label, real, source
        self.dev, self.ino = dev, ino
        self.archive, self.gz, self.fh = archive, gz, fh
        self.read_pos = offset
        self.pending = bytearray()
        self.fp, self.fp_len = _fingerprint(head)
        self.rotated_at: float | None = None
        self.successor = False
        self.last_growth = now
        self.after: TailFile | None = None      # read only once this one is closed
        self.closed = False
        self.generation = 0                     # +1 at every truncation
        self.size_seen = -1

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    @property
    def offset(self) -> int:
        return self.read_pos - len(self.pending)

    def __repr__(self) -> str:
        return f"TailFile({self.label!r}, real={self.real!r}, offset={self.offset})"


class Line(NamedTuple):
    file: TailFile
    offset: int
    data: bytes


class Tailer:
    def __init__(self, paths: Iterable[str], *, host: str | None = None, layout_hosts: bool = True,
                 default_host: str = PLACEHOLDER_HOST, checkpoints: Mapping[str, Position] | None = None,
                 from_start: bool = False, once: bool = False, rescan_interval: float = 2.0,
                 partial_idle: float = 5.0, rotate_linger: float = 10.0, max_line: int = MAX_LINE,
                 read_budget: int = READ_BUDGET, on_error: Callable[[str], None] | None = None,
                 on_notice: Callable[[str], None] | None = None, exclude: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.paths = list(paths)
        # our own output (dead letters, checkpoints) must never be read back
        self.exclude = tuple(os.path.abspath(p) for p in exclude)
        self.host, self.layout_hosts, self.default_host = host, layout_hosts, default_host
        self.checkpoints: dict[str, Position] = dict(checkpoints or {})
        self._cp_paths = {p.path for p in self.checkpoints.values()}
        self.from_start, self.once = from_start, once
        self.rescan_interval, self.partial_idle, self.rotate_linger = rescan_interval, partial_idle, rotate_linger
        self.max_line = max_line
        self.read_budget = max(read_budget, max_line)
        self.on_error, self.on_notice = on_error, on_notice
        self.clock, self.wall = clock, wall
        self.files: dict[tuple[int, int], TailFile] = {}
        self.done: dict[tuple[int, int], Position] = {}     # closed or skipped files
        self._heads: dict[tuple, tuple] = {}                # untracked identity -> (size, mtime, head)
        self._reported: set[tuple[str, str]] = set()
        self._started = False
        self._next_scan = 0.0
        self.more = False          # the last poll stopped at a budget: poll again at once
        self.opened = 0

    # ---------------------------------------------------------- public API

    def start(self) -> None:
        """Find the files and fix their start positions without reading
        (``poll`` does it the first time if not done)."""
        if not self._started:
            self._started = True
            now = self.clock()
            self._scan(startup=True, now=now, out=[])
            self._next_scan = now + self.rescan_interval

    def poll(self) -> list[Line]:
        now = self.clock()
        out: list[Line] = []
        if not self._started:
            self.start()
        elif not self.once and now >= self._next_scan:
            self._scan(startup=False, now=now, out=out)
            self._next_scan = now + self.rescan_interval
        self.more = False
        busy: set[str] = set()       # labels whose older file still has unread data
        for tf in list(self.files.values()):
            if tf.closed:
                continue
            if tf.after is not None:
                if not tf.after.closed:
                    continue
                tf.after = None
            if tf.label in busy:
                continue
            if not self.once and not tf.archive and not tf.successor:
                self._check(tf, now, out)
                if tf.closed or (tf.after is not None and not tf.after.closed):
                    continue
            if self._read(tf, now, out):
                busy.add(tf.label)
                self.more = True
                continue
            self._settle(tf, now, out)
        return out

    @property
    def drained(self) -> bool:
        """``once``: every file read to its end and closed."""
        return self._started and not self.files

    def position(self, tf: TailFile, offset: int) -> Position:
        if tf.fp_len < FP_BYTES and not tf.closed and not tf.gz:
            try:
                tf.fp, tf.fp_len = _fingerprint(os.pread(tf.fh.fileno(), FP_BYTES, 0))
            except OSError:
                pass
        return Position(tf.label, tf.dev, tf.ino, offset, tf.fp, tf.fp_len, False, self.wall())

    def positions(self) -> list[Position]:
        """Current read positions (next byte not yet emitted) of every file
        being read, and final positions of closed or skipped ones."""
        return [self.position(tf, tf.offset) for tf in self.files.values()] + list(self.done.values())

    def close(self) -> None:
        for tf in list(self.files.values()):
            self._close_fh(tf)
        self.files.clear()

    # ------------------------------------------------------------ helpers

    def _report(self, path: str, message: str) -> None:
        if (path, message) in self._reported:
            return
        if len(self._reported) > 10000:
            self._reported.clear()
        self._reported.add((path, message))
        if self.on_error is not None:
            self.on_error(message)

    def _notice(self, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(message)

    def _host_of(self, real: str, root: str | None) -> str:
        if self.host:
            return self.host
        return (_host_for(real, root, None) if self.layout_hosts else None) or self.default_host

    def _excluded(self, real: str) -> bool:
        return any(real == x or real.startswith(x + os.sep) for x in self.exclude)

    def _expand(self) -> dict[str, str]:
        """Files named by the PATHs now: real path -> host."""
        found: dict[str, str] = {}

        def onerror(exc: OSError) -> None:
            self._report(exc.filename or "?", f"{exc.filename}: cannot read directory: {exc.strerror or exc}")

        for arg in self.paths:
            items = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
            for item in items:
                if os.path.isdir(item):
                    root = os.path.abspath(item)
                    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
                        dirnames.sort()
                        for name in sorted(filenames):
                            if _is_log(name):
                                real = os.path.join(dirpath, name)
                                if real not in found and not self._excluded(real):
                                    found[real] = self._host_of(real, root)
                else:
                    real = os.path.abspath(item)
                    if real not in found and not self._excluded(real):
                        found[real] = self._host_of(real, None)
        return found

    def _head(self, real: str, gz: bool, st: os.stat_result) -> bytes:
        """The first FP_BYTES bytes of the content (cached per identity/size/mtime)."""
        key = (st.st_dev, st.st_ino)
        cached = self._heads.get(key)
        if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        if gz:
            try:
                with gzip.open(real, "rb") as fh:
                    head = fh.read(FP_BYTES)
            except (EOFError, zlib.error, gzip.BadGzipFile):
                with open(real, "rb") as fh:       # truncated or corrupt archive: its raw bytes
                    head = b"gz:" + fh.read(FP_BYTES - 3)
        else:
            with open(real, "rb") as fh:
                head = fh.read(FP_BYTES)
        self._heads[key] = (st.st_size, st.st_mtime_ns, head)
        return head

    def _known_by_fingerprint(self, fp: str, key: tuple[int, int]) -> Position | None:
        """A position of a file no longer open whose content starts the same
        (the file was compressed or copied elsewhere). A copy of a file still
        being read is a file of its own (copytruncate copies are matched at
        the truncation, see ``_find_copy``)."""
        for p in list(self.done.values()) + list(self.checkpoints.values()):
            if p.fp_len == FP_BYTES and p.fingerprint == fp and (p.dev, p.ino) != key:
                live = self.files.get((p.dev, p.ino))
                if live is None or live.fp != fp:   # (a truncated file no longer holds it)
                    return p
        return None

    # --------------------------------------------------------------- scan

    def _scan(self, *, startup: bool, now: float, out: list[Line]) -> None:
        seen: set[tuple[int, int]] = set()
        for real, host in self._expand().items():
            try:
                st = os.stat(real)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._report(real, f"{real}: cannot read: {exc.strerror or exc}")
                continue
            if not stat.S_ISREG(st.st_mode):        # FIFOs, sockets, devices: never opened
                self._report(real, f"{real}: not a regular file; skipped")
                continue
            key = (st.st_dev, st.st_ino)
            seen.add(key)
            tf = self.files.get(key)
            if tf is not None:
                if not startup and not tf.gz and tf.fp_len == FP_BYTES and not tf.archive:
                    self._verify_head(tf, now, out)
                continue
            self._consider(real, host, st, startup=startup, now=now)
        for key in list(self._heads):
            if key not in seen and key not in self.files:
                del self._heads[key]
        wall = self.wall()
        for key, p in list(self.done.items()):
            if key not in seen and wall - p.updated > 60.0:
                del self.done[key]

    def _consider(self, real: str, host: str, st: os.stat_result, *, startup: bool, now: float,
                  label: str | None = None) -> TailFile | None:
        key = (st.st_dev, st.st_ino)
        archive = is_archive(real) and label is None
        gz = real.endswith(".gz")
        try:
            head = self._head(real, gz, st)
        except OSError as exc:
            self._report(real, f"{real}: cannot read: {exc.strerror or exc}")
            return None
        fp, fp_len = _fingerprint(head)
        done = self.done.get(key)
        if done is not None:
            if _matches(done, fp, fp_len, head):
                if not done.complete and not gz and st.st_size > done.offset and not self.once:
                    return self._open(real, done.path, host, st, done.offset, archive=True, now=now)
                return None
            del self.done[key]                      # inode reused by another file
        cp = self.checkpoints.get(f"{key[0]}:{key[1]}")
        if cp is not None and _matches(cp, fp, fp_len, head):
            if cp.complete:
                self.done[key] = cp
                return None
            offset = cp.offset if (gz or cp.offset <= st.st_size) else 0
            return self._open(real, cp.path, host, st, offset, archive=archive or cp.path != real, now=now)
        if fp_len == FP_BYTES:
            same = self._known_by_fingerprint(fp, key)
            if same is not None:                    # the same content under a new inode
                if same.complete:
                    self.done[key] = Position(same.path, key[0], key[1], 0, fp, fp_len, True, self.wall())
                    return None
                return self._open(real, same.path, host, st, same.offset, archive=True, now=now)
        name = label or real
        if archive:
            if startup and (self.from_start or self.once):
                return self._open(real, real, host, st, 0, archive=True, now=now)
            self.done[key] = Position(real, key[0], key[1], 0 if gz else st.st_size, fp, fp_len, True,
                                      self.wall())
            return None
        if startup and not (self.from_start or self.once or real in self._cp_paths):
            offset = self._tail_start(real, st.st_size)
        else:
            offset = 0
        return self._open(real, name, host, st, offset, archive=False, now=now)

    def _tail_start(self, real: str, size: int) -> int:
        if size == 0:
            return 0
        start = max(0, size - TAIL_LOOKBACK)
        try:
            with open(real, "rb") as fh:
                fh.seek(start)
                block = fh.read(size - start)
        except OSError:
            return size
        nl = block.rfind(b"\n")
        return start + nl + 1 if nl >= 0 else size

    def _open(self, real: str, label: str, host: str, st: os.stat_result, offset: int, *,
              archive: bool, now: float) -> TailFile | None:
        gz = real.endswith(".gz")
        try:
            if gz:
                fh = gzip.open(real, "rb")
                if os.fstat(fh.fileobj.fileno())[1:3] != (st.st_ino, st.st_dev):
                    fh.close()
                    return None
                head = self._head(real, True, st)
                if offset:
                    try:
                        fh.seek(offset)
                    except (EOFError, zlib.error, gzip.BadGzipFile, OSError):
                        pass
                    offset = fh.tell()
            else:
                fh = open(real, "rb", buffering=0)
                if os.fstat(fh.fileno())[1:3] != (st.st_ino, st.st_dev):
                    fh.close()                       # replaced between stat and open
                    return None
                head = os.pread(fh.fileno(), FP_BYTES, 0)
                fh.seek(offset)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(real, f"{real}: cannot read: {exc.strerror or exc}")
            return None
        self._reported = {r for r in self._reported if r[0] != real}
        source = Source(host, service_from_path(label), label)
        tf = TailFile(label, real, source, st.st_dev, st.st_ino, archive, gz, fh, offset, head, now)
        if label != real:           # an older file of a stream: the live file waits for it
            for live in self.files.values():
                if live.label == label and live.real == label and live.after is None:
                    live.after = tf
        self.files[tf.key] = tf
        self.done.pop(tf.key, None)
        self.opened += 1
        return tf

    # ------------------------------------------------------ rotation checks

    def _check(self, tf: TailFile, now: float, out: list[Line]) -> None:
        try:
            st = os.stat(tf.real)
        except FileNotFoundError:
            if tf.rotated_at is None:
                tf.rotated_at = now
                self._notice(f"{tf.real}: removed or renamed; reading on what it still gets")
            return
        except OSError as exc:
            self._report(tf.real, f"{tf.real}: cannot stat: {exc.strerror or exc}")
            return
        key = (st.st_dev, st.st_ino)
        if key != tf.key and not stat.S_ISREG(st.st_mode):
            return
        if key != tf.key:
            if tf.rotated_at is None:
                tf.rotated_at = now
            tf.successor = True
            if key not in self.files:
                host = tf.source.host or self.default_host
                new = self._consider(tf.real, host, st, startup=False, now=now, label=tf.label)
                if new is not None:
                    self._notice(f"{tf.real}: rotated; following the new file")
            return
        tf.rotated_at = None
        if tf.gz:
            return
        if st.st_size < tf.read_pos:
            self._truncated(tf, now, out)
        elif st.st_size != tf.size_seen and tf.fp_len == FP_BYTES:
            self._verify_head(tf, now, out)     # truncated and regrown past our position?
        tf.size_seen = st.st_size

    def _verify_head(self, tf: TailFile, now: float, out: list[Line]) -> None:
        """Truncated and grown again past our position between two polls?"""
        try:
            head = os.pread(tf.fh.fileno(), FP_BYTES, 0)
        except OSError:
            return
        if _fingerprint(head) != (tf.fp, tf.fp_len):
            self._truncated(tf, now, out)

    def _truncated(self, tf: TailFile, now: float, out: list[Line]) -> None:
        old_fp, old_len, start, pending = tf.fp, tf.fp_len, tf.offset, bytes(tf.pending)
        tf.fh.seek(0)
        tf.read_pos = 0
        tf.pending.clear()
        tf.generation += 1
        tf.last_growth = now
        try:
            tf.fp, tf.fp_len = _fingerprint(os.pread(tf.fh.fileno(), FP_BYTES, 0))
        except OSError:
            tf.fp, tf.fp_len = _fingerprint(b"")
        copy = self._find_copy(tf, old_fp, start, now) if old_len == FP_BYTES else None
        if copy is not None:
            tf.after = copy
            self._notice(f"{tf.real}: truncated (copytruncate); reading the rest of the copy "
                         f"{copy.real} from byte {start}, then the file from 0")
        else:
            if pending:
                out.append(Line(tf, start, pending))
            self._notice(f"{tf.real}: truncated (copytruncate); reading from 0")

    def _find_copy(self, tf: TailFile, fp: str, offset: int, now: float) -> TailFile | None:
        pattern = glob.escape(tf.real)
        candidates = dict.fromkeys(sorted(glob.glob(pattern + ".*") + glob.glob(pattern + "-*")),
                                   tf.source.host or self.default_host)
        candidates.update(self._expand())
        for real, host in candidates.items():
            if real == tf.real:
                continue
            try:
                st = os.stat(real)
                if (st.st_dev, st.st_ino) in self.files or not stat.S_ISREG(st.st_mode):
                    continue
                head = self._head(real, real.endswith(".gz"), st)
            except OSError:
                continue
            if _fingerprint(head) == (fp, FP_BYTES):
                return self._open(real, tf.label, host, st, offset, archive=True, now=now)
        return None

    # ------------------------------------------------------------ reading

    def _read(self, tf: TailFile, now: float, out: list[Line]) -> bool:
        """Read what the file gained; True if the budget stopped us."""
        got = 0
        while got < self.read_budget:
            try:
                chunk = tf.fh.read(READ_BLOCK)
            except (OSError, EOFError, zlib.error) as exc:
                msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
                self._report(tf.real, f"{tf.real}: read error at byte {tf.read_pos}: {msg}")
                if isinstance(exc, OSError) and exc.errno == errno.EINTR:
                    break
                self._finish(tf, out, emit_partial=True, complete=tf.gz)
                return False
            if not chunk:
                break
            got += len(chunk)
            self._split(tf, chunk, out)
        if got:
            tf.last_growth = now
            if tf.fp_len < FP_BYTES and not tf.gz:
                try:
                    tf.fp, tf.fp_len = _fingerprint(os.pread(tf.fh.fileno(), FP_BYTES, 0))
                except OSError:
                    pass
        return got >= self.read_budget

    def _split(self, tf: TailFile, chunk: bytes, out: list[Line]) -> None:
        buf = tf.pending
        base = tf.offset
        buf += chunk
        tf.read_pos += len(chunk)
        max_line = self.max_line
        start = 0
        end = len(buf)
        find = buf.find
        while start < end:
            nl = find(b"\n", start, start + max_line)
            if nl >= 0:
                stop = nl + 1
            elif end - start >= max_line:
                stop = start + max_line
            else:
                break
            out.append(Line(tf, base + start, bytes(buf[start:stop])))
            start = stop
        if start:
            del buf[:start]

    def _settle(self, tf: TailFile, now: float, out: list[Line]) -> None:
        """At the end of what a file holds now: emit an idle partial line,
        close finished files."""
        if tf.archive:                  # read once, to its current end
            self._finish(tf, out, emit_partial=True, complete=tf.gz)
            return
        if self.once:
            self._finish(tf, out, emit_partial=self._mtime_idle(tf), complete=False)
            return
        if tf.rotated_at is not None and now - tf.rotated_at >= self.rotate_linger \
                and now - tf.last_growth >= self.rotate_linger:
            self._finish(tf, out, emit_partial=True, complete=False)
            return
        if tf.pending and now - tf.last_growth >= self.partial_idle:
            out.append(Line(tf, tf.offset, bytes(tf.pending)))
            tf.pending.clear()

    def _mtime_idle(self, tf: TailFile) -> bool:
        try:
            return self.wall() - os.fstat(tf.fh.fileno()).st_mtime >= self.partial_idle
        except (OSError, AttributeError, ValueError):
            return True

    def _finish(self, tf: TailFile, out: list[Line], *, emit_partial: bool, complete: bool) -> None:
        if emit_partial and tf.pending:
            out.append(Line(tf, tf.offset, bytes(tf.pending)))
            tf.pending.clear()
        pos = self.position(tf, tf.offset)
        if complete:
            pos = Position(pos.path, pos.dev, pos.ino, pos.offset, pos.fingerprint, pos.fp_len, True, pos.updated)
        self._close_fh(tf)
        self.files.pop(tf.key, None)
        self.done[tf.key] = pos

    def _close_fh(self, tf: TailFile) -> None:
        tf.closed = True
        try:
            tf.fh.close()
        except (OSError, EOFError, zlib.error):
            pass
