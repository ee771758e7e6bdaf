"""The ``osloscope notify`` loop: the incidents topic in, :class:`Notifier` calls out.

  incidents topic --(consumer group <app_id>-notify, manual commits)--> Notifier.handle_many
  every half second and after every batch                              --> Notifier.tick

High availability: any number of notifiers with the same ``worker.app_id`` may run; they join
one consumer group whose assignor (pipeline/streaming/notify_state.py) gives every incidents
partition to one of them, the **active** one; the others are **standbys**, idle until the group
gives them the partitions (the active stopped, or died and its session timed out). The state
(groups, incident versions, pending notifications) follows the active: every change is written,
in a Kafka transaction, to the compacted topic ``<app_id>.state.notify`` before the change
counts (the outbox row before its POST, the batch's effect before its offsets are committed),
and a notifier that becomes active first fences the previous one's producer, then rebuilds its
local file from that topic and resumes from the committed offsets. A notification whose 2xx came
just before a crash, before its deletion from the state topic was written, is sent again by the
next active with the same ``Idempotency-Key``: delivery is at least once, and a receiver that
drops repeated keys sees each notification once.

Offsets are committed only after a batch's incidents are in the state, so a crash replays at most
documents whose effect is already stored (and a stored version makes handling them again a
no-op). Records that are not incident documents are logged and skipped. This loop passes the wall
clock to the notifier.

A ``notify.state_dir`` that cannot be written (a full disk) is waited for, not exited on: a
restart would not help, and a crash loop under a supervisor only adds noise. At start nothing is
read until the notifier's file can be created; later a failed write counts like a failed state
topic write (the topic may then hold a transaction the file could not commit): the notifier
stops acting, commits no offset and sends nothing, logs an error every RETRY_ACTIVATION seconds,
and takes over again from the state topic once the write succeeds, without a restart.
"""
from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time

from pipeline import codec
from pipeline.alerting.grouping import doc_problem
from pipeline.alerting.notifier import Notifier
from pipeline.streaming import kafka_clients, notify_state

log = logging.getLogger("osloscope.notify")

RETRY_ACTIVATION = 5.0                  # seconds between attempts to take over after a failure


class LocalStateError(Exception):
    """The notifier's file in ``notify.state_dir`` cannot be written (a full disk, mostly)."""

    def __init__(self, where, exc: Exception) -> None:
        super().__init__(f"cannot write the notifier state in {where} ({exc}): nothing is "
                         f"acknowledged or sent until it can")


class Role:
    """Active or standby, as the consumer group decides; the state log follows it."""

    def __init__(self, notifier: Notifier, state: notify_state.StateLog) -> None:
        self.notifier, self.state = notifier, state
        self.owned: set[int] = set()          # incidents partitions assigned to this notifier
        self.active = False                   # owns them and holds their state
        self.retry_at = 0.0
        self.consumer = None
        self._events: list[tuple[str, set]] = []
        self._lock = threading.Lock()

    # rebalance callbacks: kafka-python runs them in its network thread, during poll; they only
    # note what happened, and the loop acts on it when poll returns (the notifier is not shared)

    def revoked(self, partitions: set) -> None:
        with self._lock:
            self._events.append(("revoked", set(partitions)))

    def assigned(self, partitions: set) -> None:
        with self._lock:
            self._events.append(("assigned", set(partitions)))

    def apply(self) -> bool:
        """Act on the rebalances of the last poll, and retry a failed take-over when due; True
        if anything changed (the batch of that poll is then dropped: after a take-over the
        consumer reads again from the committed offsets)."""
        with self._lock:
            events, self._events = self._events, []
        for what, partitions in events:
            if what == "revoked":
                if self.active:
                    log.info("notify: partitions %s revoked; no longer the active notifier",
                             sorted(partitions))
                self._step_down()
                self.owned = set()
            else:
                self.owned = partitions
                self.retry_at = 0.0
                if not partitions:
                    log.info("notify: standby, no incidents partition assigned (another notifier "
                             "of this group is active)")
        if self.owned and not self.active and time.monotonic() >= self.retry_at:
            self.activate()
            return True
        return bool(events)

    # taking over and stepping down --------------------------------------------------------------

    def activate(self) -> bool:
        """Fence the previous active, take over its state, rewind to the committed offsets."""
        t0 = time.monotonic()
        try:
            self.state.open()
            records = self.state.read()
            if records:
                self.notifier.restore(records)
            else:                               # a new state topic: it starts from the local file
                self.state.write(self.notifier.state_records())
        except (notify_state.StateLogError, kafka_clients.KafkaError, sqlite3.OperationalError) as exc:
            if isinstance(exc, sqlite3.OperationalError):       # restoring into a full state_dir
                exc = LocalStateError(self.notifier.dir, exc)
            self.retry_at = time.monotonic() + RETRY_ACTIVATION
            log.error("notify: cannot take over the notifier state (retrying in %.0f s): %s",
                      RETRY_ACTIVATION, exc)
            self._step_down()
            return False
        try:
            notify_state.rewind(self.consumer)
        except kafka_clients.KafkaError as exc:
            self.retry_at = time.monotonic() + RETRY_ACTIVATION
            log.error("notify: cannot read the committed offsets (retrying in %.0f s): %s",
                      RETRY_ACTIVATION, exc)
            self._step_down()
            return False
        self.notifier.attach(self.state)
        notify_state.pause_all(self.consumer, False)
        self.active = True
        log.info("notify: active for partitions %s of the incidents topic (state: %d record(s) from "
                 "%s, %d group(s), outbox %s; took %.1f s)", sorted(self.owned), len(records),
                 self.state.topic, len(self.notifier.groups), self.notifier.outbox(),
                 time.monotonic() - t0)
        return True

    def _step_down(self) -> None:
        self.active = False
        self.notifier.attach(None)
        self.state.close()
        if self.consumer is not None:
            notify_state.pause_all(self.consumer, True)

    def failed(self, exc: Exception) -> None:
        """Writing the state failed: what this process holds in memory is no longer what the
        state topic says, so it stops acting on it and takes over afresh (if still assigned)."""
        if isinstance(exc, notify_state.StateLogFenced):
            log.warning("notify: %s; standing by", exc)
            self.retry_at = time.monotonic() + 3 * RETRY_ACTIVATION
        else:
            log.error("notify: %s; taking over again in %.0f s", exc, RETRY_ACTIVATION)
            self.retry_at = time.monotonic() + RETRY_ACTIVATION
        self._step_down()


def run(settings, *, stop=None, stats_interval: float = 60.0) -> int:
    """Consume the incidents topic until SIGTERM/SIGINT (or ``stop.set()``), notifying receivers
    while this notifier is the active one of its group."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    notifier = _open_notifier(settings, stop)
    if notifier is None:
        return 0                            # stopped while waiting for a writable state_dir
    group_id = f"{settings.worker.app_id}-notify"
    session = int(settings.worker.session_timeout * 1000)
    state = notify_state.StateLog(settings)
    role = Role(notifier, state)
    consumer = None
    seen = skipped = 0
    last_stats = time.monotonic()
    try:
        if state.ensure_topic() == "created":
            log.info("notify: created the state topic %s", state.topic)
        consumer = role.consumer = notify_state.active_standby_consumer(
            settings.kafka, settings.topics.incidents, group_id, role.assigned, role.revoked,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500,
            session_timeout_ms=session, heartbeat_interval_ms=max(1000, session // 5))
        log.info("notify: %s -> %s (group %s, state in %s and %s)", settings.topics.incidents,
                 ", ".join(f"{r.name} ({r.style})" for r in settings.receivers), group_id,
                 state.topic, notifier.dir)
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
            changed = role.apply()
            if time.monotonic() - last_stats >= stats_interval:
                last_stats = time.monotonic()
                log.info("notify stats: %s, %d incident change(s), %d skipped, %d group(s), outbox %s",
                         "active" if role.active else "standby", seen, skipped, len(notifier.groups),
                         notifier.outbox())
            if changed or not role.active:
                continue                    # read again from the committed offsets when active
            docs = []
            for msgs in batch.values():
                for m in msgs:
                    try:
                        doc = codec.loads(m.value)
                        problem = doc_problem(doc)
                    except Exception as exc:               # not JSON
                        problem = str(exc)
                    if problem:
                        skipped += 1
                        log.warning("skipping %s[%d]@%d: not an incident document: %s",
                                    m.topic, m.partition, m.offset, problem)
                    else:
                        docs.append(doc)
            try:
                if docs:
                    seen += notifier.handle_many(docs, time.time())
                if batch:                  # the docs' effect is stored: now the offsets may move
                    try:
                        consumer.commit()
                    except kafka_clients.CommitFailedError as exc:
                        log.warning("offset commit failed (rebalance?); the batch will be seen again, "
                                    "which changes nothing: %s", exc)
                if role.active:
                    notifier.tick(time.time())
            except notify_state.StateLogError as exc:
                role.failed(exc)
            except sqlite3.OperationalError as exc:     # the file lags the state topic now
                role.failed(LocalStateError(notifier.dir, exc))
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)          # leaves the group: a standby takes over now
        state.close()
        notifier.close()
    return 0


def _open_notifier(settings, stop: threading.Event) -> Notifier | None:
    """The notifier, once its file in ``notify.state_dir`` can be created (None: stopped first);
    until then nothing is read from the incidents topic, so nothing is acknowledged."""
    while True:
        try:
            return Notifier.from_settings(settings)
        except sqlite3.OperationalError as exc:
            log.error("notify: %s; retrying in %.0f s",
                      LocalStateError(settings.notify.state_dir, exc), RETRY_ACTIVATION)
        if stop.wait(RETRY_ACTIVATION):
            return None
