"""``osloscope ship``: tail oslo.log files into Kafka, one record per line.

Record: topic ``topics.raw``; key the host (one partition sees all of a
host, each file in order: host-scoped detectors see the whole host); value the line's bytes exactly as on disk without the final
``\\n`` (what rsyslog's omkafka or Filebeat send, no JSON wrapping); headers
``host``, ``service``, ``path`` (the stream name: a rotated file keeps the
name it was followed under), ``offset`` (decimal byte offset of the line in
its file), ``inode`` (``dev:ino`` of the file: offsets start again at 0 in a
new file under the same path) and ``shipper`` = ``osloscope/0.1``. Lines
longer than 1,000,000 bytes are cut into pieces (each its own record, so a
record stays under Kafka's default 1 MiB message limit).

Delivery: at least once, never a silent loss.
* The producer is idempotent (``enable_idempotence``, ``acks=all``, unbounded
  retries, a delivery timeout of a day): broker retries do not duplicate or
  reorder. kafka-python 3 has no ``buffer_memory``, so the shipper bounds the
  bytes sent but not yet acknowledged itself (``shipper.max_buffer_bytes``):
  when that much is in flight it stops reading and waits. While the broker is
  away it logs ``broker H unreachable, retrying in Ns`` and keeps trying;
  nothing is dropped. Failures that retrying cannot cure -- authentication
  (a wrong SASL password), TLS (a certificate the CA does not vouch for) or a
  listener of another security protocol -- are named and stop the shipper
  (``KafkaAccessError``, ``kafka_clients.diagnose``), at start within a
  second, later at the first stall.
* A file's checkpoint (``shipper.checkpoint_dir``, see ``tail.Checkpoints``)
  moves past a line only when Kafka has acknowledged that line and every
  earlier line of the file; checkpoints are written every second and at exit.
* A checkpoint write that fails (a full disk, ENOSPC) does not stop the
  shipper: it says so once, naming the file and the error (again every
  minute while it lasts), counts it in its progress line, ships on and
  writes again every second; "checkpoints saved again" says when it
  succeeds. Until then a restart resends what was shipped since the last
  checkpoint written: at least once, never lost.
* A restart resumes every file from its checkpoint. After SIGINT/SIGTERM the
  shipper flushes, waits for the acknowledgements (up to 30 s) and writes the
  checkpoints: a restart sends nothing twice. After a crash or SIGKILL the
  lines resent are at most those acknowledged since the last checkpoint write
  (one second) plus those in flight (at most ``max_buffer_bytes``).
* A record Kafka rejects for good (not retriable: authorization, invalid
  topic) stops the shipper with exit status 1; the checkpoint stays before
  that line, so nothing is skipped.

``--once`` ships what the files hold (from the checkpoint, else from their
start; a last line without ``\\n`` only if the file is 5 s old) and exits 0
once everything is acknowledged.
"""
from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections import deque
from typing import Callable, Iterable

from pipeline.sources.tail import Checkpoints, Line, Tailer, TailFile, check_paths

SHIPPER = b"osloscope/0.1"
SHIP_MAX_LINE = 1_000_000
MAX_BLOCK_MS = 10_000            # send() blocks this long at a time, then we log and retry
DELIVERY_TIMEOUT_MS = 86_400_000
CHECKPOINT_INTERVAL = 1.0
STOP_FLUSH_TIMEOUT = 30.0
STALL_WARNING = 10.0             # seconds without acknowledgements before saying so
SAVE_FAILING_REMINDER = 60.0     # while checkpoints cannot be written, say so again this often


class Rejected(Exception):
    """Kafka refused a record for good."""

    def __init__(self, tf: TailFile, offset: int, exc: BaseException) -> None:
        self.tf, self.offset, self.exc = tf, offset, exc
        super().__init__(f"Kafka rejected the line of {tf.label} at byte {offset}: {exc!r}")


def _stderr(msg: str) -> None:
    print(f"osloscope ship: {msg}", file=sys.stderr, flush=True)


def producer_config(settings) -> dict:
    sh = settings.shipper
    kw = settings.kafka.client_kwargs()
    kw.update(
        acks="all",
        enable_idempotence=True,          # kafka-python >= 2.1 with Kafka >= 0.11 (checked with 4.x)
        retries=2 ** 31 - 1,
        max_in_flight_requests_per_connection=5,
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        compression_type=None if sh.compression == "none" else sh.compression,
        batch_size=sh.batch_size,
        linger_ms=sh.linger_ms,
        max_block_ms=MAX_BLOCK_MS,
        bootstrap_timeout_ms=5000,
    )
    return kw


def _why_unreachable(settings) -> str | None:
    """Why Kafka cannot be reached, when it is worth saying; raises KafkaAccessError when
    retrying cannot help (authentication, TLS, security protocol)."""
    from pipeline.streaming.kafka_clients import check_access

    problem = check_access(settings.kafka)
    return None if problem is None else problem.message


def _connect(settings, stop: threading.Event, log: Callable[[str], None]):
    from kafka import KafkaProducer
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, RetriableError

    unreachable = (KafkaTimeoutError, KafkaConnectionError, RetriableError, OSError)
    try:                                   # kafka-python < 3
        from kafka.errors import NoBrokersAvailable
        unreachable += (NoBrokersAvailable,)
    except ImportError:
        pass

    where = settings.kafka.bootstrap
    delay = 1.0
    while not stop.is_set():
        reason = _why_unreachable(settings)   # named at once, never retried
        if reason is None:
            try:
                return KafkaProducer(**producer_config(settings))
            except unreachable as exc:
                reason = _why_unreachable(settings) or exc
        if stop.is_set():
            break
        log(f"broker {where} unreachable, retrying in {delay:g}s ({reason})")
        stop.wait(delay)
        delay = min(delay * 2, 30.0)
    return None


class _CheckpointWriter:
    """Writes the checkpoints; a write that fails (OSError: a full disk) is said once per
    outage with the file and the errno (and every SAVE_FAILING_REMINDER seconds while it
    lasts), counted in ``failures`` and tried again at the next write."""

    def __init__(self, store: Checkpoints, log: Callable[[str], None]) -> None:
        self.store, self.log = store, log
        self.failures = 0                 # writes that failed (the progress line counts them)
        self._failing = 0                 # failed writes since the last one that succeeded
        self._told = 0.0

    def save(self, keep: Iterable[str] = ()) -> bool:
        try:
            written = self.store.save(keep=keep)
        except OSError as exc:
            self.failures += 1
            self._failing += 1
            now = time.monotonic()
            if self._failing == 1 or now - self._told >= SAVE_FAILING_REMINDER:
                self._told = now
                code = errno.errorcode.get(exc.errno, exc.errno)
                again = "" if self._failing == 1 else f"still, after {self._failing} attempts: "
                self.log(f"warning: {again}cannot write checkpoints to {self.store.path}: "
                         f"{exc.strerror or exc} ({code}); shipping goes on and the write is retried "
                         f"every {CHECKPOINT_INTERVAL:g}s (until it succeeds, a restart sends again "
                         "what was shipped since the last checkpoint written)")
            return False
        if self._failing:
            self.log(f"checkpoints saved again to {self.store.path} after {self._failing} failed attempt(s)")
            self._failing = 0
        return written

    @property
    def failing(self) -> bool:
        return self._failing > 0


def _headers(line: Line) -> list[tuple[str, bytes]]:
    src = line.file.source
    return [("host", (src.host or "").encode("utf-8", "surrogateescape")),
            ("service", (src.service or "").encode("utf-8", "surrogateescape")),
            ("path", line.file.label.encode("utf-8", "surrogateescape")),
            ("offset", b"%d" % line.offset),
            ("inode", b"%d:%d" % line.file.key),
            ("shipper", SHIPPER)]


class _Shipper:
    def __init__(self, settings, producer, tailer: Tailer, store: Checkpoints, stop: threading.Event,
                 log: Callable[[str], None], stats_interval: float,
                 writer: _CheckpointWriter | None = None) -> None:
        self.settings, self.producer, self.tailer, self.store = settings, producer, tailer, store
        self.writer = writer or _CheckpointWriter(store, log)
        self.topic = settings.topics.raw
        self.stop, self.log, self.stats_interval = stop, log, stats_interval
        self.pending: dict[tuple[int, int], tuple[TailFile, deque]] = {}
        self.max_inflight = settings.shipper.max_buffer_bytes
        self.inflight = 0                 # bytes sent, not yet acknowledged
        self.sent = self.acked = self.bytes = 0
        self.unsent = 0
        self._last_ack = time.monotonic()
        self._stall_logged = 0.0

    def send(self, line: Line):
        from kafka.errors import KafkaTimeoutError

        data = line.data[:-1] if line.data.endswith(b"\n") else line.data
        src = line.file.source
        key = (src.host or "").encode("utf-8", "surrogateescape")
        delay = 1.0
        while True:
            try:
                return self.producer.send(self.topic, value=data, key=key, headers=_headers(line))
            except KafkaTimeoutError as exc:
                if self.stop.is_set():
                    return None
                reason = _why_unreachable(self.settings) or exc
                self.log(f"broker {self.settings.kafka.bootstrap} unreachable, retrying in {delay:g}s "
                         f"({len(self.pending)} file(s) waiting; {reason})")
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def ship_lines(self, lines: list[Line]) -> None:
        pending = self.pending
        stopped = False
        for line in lines:
            size = len(line.data)
            if not stopped and self.inflight + size > self.max_inflight and not self.make_room(size):
                stopped = True
            fut = None if stopped else self.send(line)
            if fut is None:
                stopped = True            # stopping while the broker is away: not sent
                self.unsent += 1
                size = 0
            else:
                self.sent += 1
                self.bytes += size
                self.inflight += size
            entry = pending.get(line.file.key)
            if entry is None:
                entry = pending[line.file.key] = (line.file, deque())
            entry[1].append((line.offset, fut, size))

    def make_room(self, size: int) -> bool:
        """Wait until ``size`` more bytes fit under max_buffer_bytes; False if stopped."""
        from kafka.errors import KafkaTimeoutError

        while self.inflight and self.inflight + size > self.max_inflight:
            self.collect()
            if not self.inflight or self.inflight + size <= self.max_inflight:
                break
            if self.stop.is_set():
                return False
            oldest = next((dq[0][1] for _, dq in self.pending.values() if dq and dq[0][1] is not None), None)
            if oldest is None:
                break
            try:
                oldest.get(timeout=1.0)       # room as soon as the oldest batch is acknowledged
            except KafkaTimeoutError:
                self.check_stall(time.monotonic())
            except Exception:                 # a failed record: collect() raises Rejected
                pass
        return True

    def collect(self) -> None:
        """Pop acknowledged lines; raise Rejected on a permanent failure."""
        n = 0
        for key, (tf, dq) in list(self.pending.items()):
            while dq:
                offset, fut, size = dq[0]
                if fut is None or not fut.is_done:
                    break
                if fut.failed():
                    raise Rejected(tf, offset, fut.exception)
                dq.popleft()
                self.inflight -= size
                n += 1
            if not dq:
                del self.pending[key]
        if n:
            self.acked += n
            self._last_ack = time.monotonic()

    def waiting(self) -> int:
        return sum(len(dq) for _, dq in self.pending.values())

    def checkpoint(self) -> bool:
        positions = {p.key: p for p in self.tailer.positions()}
        for tf, dq in self.pending.values():
            if dq:                        # stop before the first line not acknowledged
                pos = self.tailer.position(tf, dq[0][0])
                positions[pos.key] = pos
        self.store.update(positions.values())
        keep = [f"{d}:{i}" for d, i in list(self.tailer.files) + list(self.pending)]
        return self.writer.save(keep=keep)

    def stats(self, elapsed: float, rate_lines: int) -> str:
        rate = rate_lines / elapsed if elapsed > 0 else 0.0
        failed = f", {self.writer.failures} checkpoint save(s) failed" if self.writer.failures else ""
        return (f"{self.sent} lines ({self.bytes / 1e6:.1f} MB) from {self.tailer.opened} file(s), "
                f"{self.acked} acknowledged, {self.waiting()} waiting, {rate:.0f} lines/s{failed}")

    def check_stall(self, now: float) -> None:
        waiting = self.waiting()
        if waiting and now - self._last_ack >= STALL_WARNING and now - self._stall_logged >= STALL_WARNING:
            self._stall_logged = now
            _why_unreachable(self.settings)   # a password or certificate that stopped working
            connected = self.producer.bootstrap_connected() if hasattr(self.producer, "bootstrap_connected") else True
            state = "unreachable" if not connected else "not acknowledging"
            self.log(f"broker {self.settings.kafka.bootstrap} {state} for {now - self._last_ack:.0f}s; "
                     f"{waiting} line(s) buffered, retrying")

    def flush(self, timeout: float | None) -> bool:
        """Wait for acknowledgements; False if ``timeout`` passed first."""
        from kafka.errors import KafkaTimeoutError

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 5.0 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic()))
            try:
                self.producer.flush(timeout=step)
                return True
            except KafkaTimeoutError:
                self.collect()
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                _why_unreachable(self.settings)
                self.log(f"waiting for Kafka ({self.settings.kafka.bootstrap}) to acknowledge "
                         f"{self.waiting()} line(s)")
                if self.stop.is_set() and deadline is None:
                    deadline = time.monotonic() + STOP_FLUSH_TIMEOUT


def ship(paths: Iterable[str], settings, *, from_start: bool = False, once: bool = False,
         host: str | None = None, layout_hosts: bool = False, stop_event: threading.Event | None = None,
         log: Callable[[str], None] = _stderr, stats_interval: float = 10.0) -> dict:
    """Ship ``paths`` into ``settings.topics.raw`` until ``stop_event`` (or, with
    ``once``, until everything present is acknowledged). Returns counters:
    ``lines`` (sent), ``bytes``, ``acked``, ``files``, ``seconds``, ``error``
    (None, or the message of a permanent failure), ``checkpoint_failures``
    (checkpoint writes that failed, e.g. on a full disk). Raises PathError for bad
    PATHs, CheckpointError for an unusable checkpoint directory and
    KafkaAccessError when Kafka rejects the settings (authentication, TLS,
    security protocol), after writing the checkpoints."""
    from pipeline.streaming.kafka_clients import KafkaAccessError

    paths = list(paths)
    check_paths(paths)
    stop = stop_event or threading.Event()
    sh = settings.shipper
    fixed_host = host or sh.host or None
    default_host = fixed_host or socket.gethostname().split(".")[0] or "unknown"
    store = Checkpoints(sh.checkpoint_dir)
    store.lock()
    started = time.monotonic()
    result = {"lines": 0, "bytes": 0, "acked": 0, "files": 0, "seconds": 0.0, "error": None,
              "checkpoint_failures": 0}
    writer = _CheckpointWriter(store, log)
    try:
        tailer = Tailer(paths, host=fixed_host, layout_hosts=layout_hosts, default_host=default_host,
                        checkpoints=store.load(), from_start=from_start, once=once,
                        rescan_interval=max(1.0, 4 * sh.poll_interval), max_line=SHIP_MAX_LINE,
                        on_error=lambda m: log(f"warning: {m}"), on_notice=log,
                        exclude=[sh.checkpoint_dir])
        tailer.start()                    # "from now on" means now, even if Kafka is away
        store.update(tailer.positions())
        writer.save()
        try:
            producer = _connect(settings, stop, log)
        except BaseException:
            tailer.close()
            raise
        if producer is None:
            tailer.close()
            result["checkpoint_failures"] = writer.failures
            return result
        s = _Shipper(settings, producer, tailer, store, stop, log, stats_interval, writer)
        fatal = None
        try:
            _run(s, tailer, stop, once, sh.poll_interval)
        except Rejected as exc:
            result["error"] = str(exc)
            log(f"error: {exc}; stopping (the checkpoint stays before this line)")
        except KafkaAccessError as exc:
            fatal = exc
        finally:
            if result["error"] is None and fatal is None:
                try:
                    s.flush(None if (once and not stop.is_set()) else STOP_FLUSH_TIMEOUT)
                except KafkaAccessError as exc:
                    fatal = exc
            if fatal is not None:             # raised below, after the checkpoints are written
                result["error"] = str(fatal)
            try:
                s.collect()
            except Rejected as exc:
                result["error"] = result["error"] or str(exc)
                log(f"error: {exc}")
            s.checkpoint()
            producer.close(timeout=5)
            tailer.close()
            elapsed = time.monotonic() - started
            result.update(lines=s.sent, bytes=s.bytes, acked=s.acked, files=tailer.opened,
                          seconds=round(elapsed, 3), checkpoint_failures=writer.failures)
            left = s.waiting()
            log("done: " + s.stats(elapsed, s.sent)
                + (f"; {left} line(s) not acknowledged will be sent again at the next start" if left else "")
                + (f"; the checkpoints could not be written to {store.path}: the next start sends again "
                   "what was shipped since the last checkpoint written" if writer.failing else ""))
        if fatal is not None:
            raise fatal
    finally:
        store.close()
    return result


def _run(s: _Shipper, tailer: Tailer, stop: threading.Event, once: bool, poll_interval: float) -> None:
    now = time.monotonic()
    next_cp = now + CHECKPOINT_INTERVAL
    next_stats = now + s.stats_interval
    last_stats, last_sent = now, 0
    while not stop.is_set():
        lines = tailer.poll()
        if lines:
            s.ship_lines(lines)
        s.collect()
        now = time.monotonic()
        if now >= next_cp:
            s.checkpoint()
            s.check_stall(now)
            next_cp = now + CHECKPOINT_INTERVAL
        if now >= next_stats:
            s.log(s.stats(now - last_stats, s.sent - last_sent))
            last_stats, last_sent = now, s.sent
            next_stats = now + s.stats_interval
        if once and tailer.drained and not lines:
            return
        if not lines and not tailer.more:
            stop.wait(poll_interval)


if __name__ == "__main__":          # python -m pipeline.streaming.ship PATH... (same as osloscope ship)
    from pipeline.cli import main
    raise SystemExit(main(["ship", *sys.argv[1:]]))
