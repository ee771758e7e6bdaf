"""The Kafka side of ``osloscope notify``'s high availability (the logic is in pipeline/alerting/).

Notifiers started with the same ``worker.app_id`` join one consumer group on the incidents topic.

  ActiveStandby   a partition assignor that gives every partition of the group to one member:
                  the one that held them before (it says so in its subscription's user data),
                  else the first by member id. That member is the active notifier; the others
                  are standbys with nothing assigned, until the active leaves the group or its
                  session times out and the group gives everything to one of them.
  StateLog        the active's state (groups, incident versions, pending notifications) as
                  records of a compacted topic with one partition, written in Kafka transactions
                  (transactional.id ``<app_id>-notify``) and read back read_committed. Opening it
                  (init_transactions) fences the previous active's producer and aborts its open
                  transaction, so a notifier that lost its place can no longer write state.
                  Values over CHUNK bytes are written as chunks in the same transaction.

Why one active rather than the partitions shared: a notification groups incidents of one type and
host, and the incidents topic is keyed by incident id, so only a notifier that sees every
partition can group them; incidents are few, so one process keeps up.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable, Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.abstract import (AbstractPartitionAssignor,
                                                  ConsumerProtocolAssignment,
                                                  ConsumerProtocolSubscription)
from kafka.errors import (InvalidProducerEpochError, KafkaError, ProducerFencedError,
                          TopicAlreadyExistsError, TransactionCoordinatorFencedError)

log = logging.getLogger("osloscope.notify")

CHUNK = 512 * 1024                      # under the broker's default 1 MiB message limit
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                "segment.ms": str(3600_000), "delete.retention.ms": str(86400_000)}
_HEAD = b"\x00chunks:"                  # value of a key written as chunks (JSON values never start so)
_ACTIVE = b"active"


class StateLogError(Exception):
    """The state could not be read or written (broker unreachable, timeout, ...)."""


class StateLogFenced(StateLogError):
    """Another notifier opened the state log since: this one is no longer the active one."""


def state_topic(settings) -> str:
    return f"{settings.worker.app_id}.state.notify"


def transactional_id(settings) -> str:
    return f"{settings.worker.app_id}-notify"


class ActiveStandby(AbstractPartitionAssignor):
    """Every partition of the subscribed topics to one member, the others get none; sticky."""

    name = "osloscope-active-standby"
    version = 0

    def __init__(self) -> None:
        self.active = False             # this member held partitions after the last rebalance

    def assign(self, cluster, members):
        topics = sorted({t for m in members for t in m.metadata.topics})
        parts = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        chosen = min(members, key=lambda m: ((m.metadata.user_data or b"") != _ACTIVE, m.member_id))
        return {m.member_id: ConsumerProtocolAssignment(self.version, parts if m is chosen else [], b"")
                for m in members}

    def metadata(self, topics):
        return ConsumerProtocolSubscription(self.version, sorted(topics), _ACTIVE if self.active else b"")

    def on_assignment(self, assignment, generation):
        self.active = bool(assignment.partitions())


def active_standby_consumer(kafka_settings, topic: str, group_id: str,
                            on_assigned: Callable[[set], None], on_revoked: Callable[[set], None],
                            **kw) -> KafkaConsumer:
    """A consumer of ``topic`` in ``group_id`` with the :class:`ActiveStandby` assignor; the
    callbacks get the partition numbers assigned and revoked (run inside ``poll``)."""

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            on_revoked({tp.partition for tp in revoked})

        def on_partitions_assigned(self, assigned):
            on_assigned({tp.partition for tp in assigned})

    c = KafkaConsumer(group_id=group_id, partition_assignment_strategy=[ActiveStandby()],
                      **kafka_settings.client_kwargs(), **kw)
    c.subscribe([topic], listener=Listener())
    return c


def rewind(consumer: KafkaConsumer) -> None:
    """Move every assigned partition back to its committed offset (the start if none)."""
    for tp in consumer.assignment():
        done = consumer.committed(tp)
        if done is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, done)


def pause_all(consumer: KafkaConsumer, paused: bool) -> None:
    parts = list(consumer.assignment())
    if parts:
        (consumer.pause if paused else consumer.resume)(*parts)


_FENCING = (ProducerFencedError, InvalidProducerEpochError, TransactionCoordinatorFencedError)


def _fenced(exc: BaseException) -> bool:
    """Whether ``exc`` says another producer took the transactional.id (kafka-python raises the
    broker's error, or a KafkaError naming it once the producer is in its fatal state)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, _FENCING) or any(e.__name__ in str(seen) for e in _FENCING):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StateLog:
    """The notifier's state topic: ``open`` (fences older writers), ``read``, ``write``."""

    def __init__(self, settings, *, timeout: float = 30.0) -> None:
        self.kafka = settings.kafka
        self.topic = state_topic(settings)
        self.txid = transactional_id(settings)
        self.timeout = timeout
        self.producer: KafkaProducer | None = None
        self.chunks: dict[bytes, int] = {}          # key -> chunks its value is written in

    def ensure_topic(self) -> str:
        """Create the topic (compacted, one partition) if missing; "created" or "exists"."""
        admin = KafkaAdminClient(**self.kafka.client_kwargs())
        try:
            if self.topic in set(admin.list_topics()):
                return "exists"
            try:
                admin.create_topics([NewTopic(self.topic, num_partitions=1,
                                              replication_factor=self.kafka.replication_factor,
                                              topic_configs=TOPIC_CONFIG)])
            except TopicAlreadyExistsError:
                return "exists"
            return "created"
        finally:
            admin.close()

    def open(self) -> None:
        """A transactional producer; fences every earlier one with the same transactional.id."""
        self.close()
        try:
            self.producer = KafkaProducer(
                **self.kafka.client_kwargs(), transactional_id=self.txid, acks="all",
                enable_idempotence=True, linger_ms=0, retry_backoff_ms=10,
                max_block_ms=int(self.timeout * 1000), max_request_size=4 * CHUNK,
                transaction_timeout_ms=60_000)
            self.producer.init_transactions()
        except KafkaError as exc:
            self.close()
            raise StateLogError(f"cannot open the notifier state in {self.topic}: {exc!r}") from exc

    def read(self) -> dict[bytes, bytes]:
        """The committed state: {key: value}, chunks joined, deleted keys left out."""
        c = KafkaConsumer(**self.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                          isolation_level="read_committed", fetch_max_bytes=64 * 1024 * 1024,
                          max_partition_fetch_bytes=16 * 1024 * 1024)
        raw: dict[bytes, bytes] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            c.assign([tp])
            c.seek_to_beginning(tp)
            end = c.end_offsets([tp])[tp]
            deadline = time.monotonic() + self.timeout
            while c.position(tp) < end:
                if time.monotonic() > deadline:
                    raise StateLogError(f"reading {self.topic} took longer than {self.timeout:.0f} s")
                for records in c.poll(timeout_ms=1000).values():
                    for r in records:
                        if r.value is None:
                            raw.pop(r.key, None)
                        else:
                            raw[r.key] = r.value
        except KafkaError as exc:
            raise StateLogError(f"cannot read the notifier state from {self.topic}: {exc!r}") from exc
        finally:
            c.close()
        state: dict[bytes, bytes] = {}
        self.chunks = {}
        for key, value in raw.items():
            if b"\x00#" in key:
                continue
            if value.startswith(_HEAD):
                n, digest = value[len(_HEAD):].decode().split(":")
                parts = [raw.get(key + b"\x00#%d" % i) for i in range(int(n))]
                joined = b"".join(p for p in parts if p is not None)
                if None in parts or hashlib.sha256(joined).hexdigest() != digest:
                    log.warning("%s: record %r has missing or damaged chunks; left out", self.topic, key)
                    continue
                self.chunks[key] = int(n)
                value = joined
            state[key] = value
        return state

    def _records(self, key: bytes, value: bytes | None) -> Iterable[tuple[bytes, bytes | None]]:
        had = self.chunks.pop(key, 0)
        n = 0
        if value is not None and len(value) > CHUNK:
            pieces = [value[i:i + CHUNK] for i in range(0, len(value), CHUNK)]
            n = len(pieces)
            for i, piece in enumerate(pieces):
                yield key + b"\x00#%d" % i, piece
            value = _HEAD + f"{n}:{hashlib.sha256(value).hexdigest()}".encode()
            self.chunks[key] = n
        for i in range(n, had):
            yield key + b"\x00#%d" % i, None
        yield key, value

    def write(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Write ``records`` (value None deletes the key) in one transaction; returns once it
        is committed (acks=all). StateLogFenced if another notifier has opened the log since."""
        if self.producer is None:
            raise StateLogFenced("the notifier state log is not open (this notifier is not active)")
        p = self.producer
        try:
            p.begin_transaction()
            for key, value in records:
                for k, v in self._records(key, value):
                    p.send(self.topic, key=k, value=v, partition=0)
            p.commit_transaction()
        except KafkaError as exc:
            fenced = _fenced(exc)
            try:
                if not fenced:
                    p.abort_transaction()
            except Exception:                       # noqa: BLE001 - the producer is dropped below
                pass
            self.close()
            if fenced:
                raise StateLogFenced(f"another osloscope notify took over the state in {self.topic}: "
                                     f"{exc!r}") from exc
            raise StateLogError(f"cannot write the notifier state to {self.topic}: {exc!r}") from exc

    def close(self) -> None:
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception:                       # noqa: BLE001 - closing a broken producer
                pass
            self.producer = None
