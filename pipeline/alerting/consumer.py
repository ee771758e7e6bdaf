"""The ``osloscope notify`` loop: the incidents topic in, :class:`Notifier` calls out.

  incidents topic --(consumer group <app_id>-notify, manual commits)--> Notifier.handle_many
  every half second and after every batch                              --> Notifier.tick

Offsets are committed only after a batch's incidents are in the notifier's SQLite file, so a
crash replays at most documents whose effect is already stored (and a stored version makes
handling them again a no-op). Records that are not incident documents are logged and skipped.
The Kafka consumer comes from ``pipeline.streaming.kafka_clients``; this loop passes the wall
clock to the notifier.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

from pipeline import codec
from pipeline.alerting.grouping import doc_problem
from pipeline.alerting.notifier import Notifier
from pipeline.streaming import kafka_clients

log = logging.getLogger("osloscope.notify")


def run(settings, *, stop=None, stats_interval: float = 60.0) -> int:
    """Consume the incidents topic until SIGTERM/SIGINT (or ``stop.set()``), notifying receivers."""
    notifier = Notifier.from_settings(settings)
    group_id = f"{settings.worker.app_id}-notify"
    session = int(settings.worker.session_timeout * 1000)
    consumer = kafka_clients.consumer(
        settings.kafka, settings.topics.incidents, group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=500, session_timeout_ms=session,
        heartbeat_interval_ms=max(1000, session // 5))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("notify: %s -> %s (group %s, state in %s)", settings.topics.incidents,
             ", ".join(f"{r.name} ({r.style})" for r in settings.receivers), group_id, notifier.dir)
    seen = skipped = 0
    last_stats = time.monotonic()
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=500)
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
            if docs:
                seen += notifier.handle_many(docs, time.time())
            if batch:                      # the docs' effect is stored: now the offsets may move
                try:
                    consumer.commit()
                except kafka_clients.CommitFailedError as exc:
                    log.warning("offset commit failed (rebalance?); the batch will be seen again, "
                                "which changes nothing: %s", exc)
            notifier.tick(time.time())
            if time.monotonic() - last_stats >= stats_interval:
                last_stats = time.monotonic()
                log.info("notify stats: %d incident change(s), %d skipped, %d group(s), outbox %s",
                         seen, skipped, len(notifier.groups), notifier.outbox())
    finally:
        consumer.close(autocommit=False)
        notifier.close()
    return 0
