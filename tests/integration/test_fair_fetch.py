"""A backlog on one topic must not hold back the worker's other topics.

Real Kafka, real aiokafka consumer. Topic "backlog" holds 20,000 messages;
one consumer subscribed to it and to topic "urgent" fetches the backlog,
and only then do 10 messages arrive on "urgent" (as the worker's parse stage
publishes events while the raw backlog sits in the consumer's buffer). The
consumer then polls with max_records=500, as the faust worker polls the raw,
events and incidents topics with ``broker_max_poll_records``: once through
the worker's own consumer thread (``FairConsumerThread._fetch_records``, the
code path the worker runs) and once through aiokafka alone.
"""
from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.settings import load
from pipeline.streaming.worker import build_app

BACKLOG, URGENT, MAX_RECORDS = 20_000, 10, 500


def _produce(bootstrap: str, topic: str, values) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    try:
        for value in values:
            producer.send(topic, value=value)
        producer.flush(60)
    finally:
        producer.close()


@pytest.fixture
def topics(services_up, names):
    backlog, urgent = f"{names.raw}.backlog", f"{names.raw}.urgent"
    admin = KafkaAdminClient(bootstrap_servers=services_up["bootstrap"])
    try:
        admin.create_topics([NewTopic(backlog, 1, 1), NewTopic(urgent, 1, 1)])
    finally:
        admin.close()
    _produce(services_up["bootstrap"], backlog,
             (b"2017-07-14 02:40:00.000 1 INFO nova.compute.manager [-] line %d" % i for i in range(BACKLOG)))
    return services_up["bootstrap"], backlog, urgent


async def _until(pred, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _backlog_before_urgent(bootstrap: str, backlog: str, urgent: str, poll) -> tuple[int, int]:
    """(backlog messages handed out before the first urgent one, urgent ones seen)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(backlog, urgent, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        fetcher = consumer._fetcher
        pending = fetcher._records          # partition -> fetched, not yet consumed

        def buffered(topic: str) -> bool:
            return any(tp.topic == topic for tp in pending)

        await _until(lambda: buffered(backlog), "the backlog's fetch result")
        await asyncio.to_thread(_produce, bootstrap, urgent, (b"urgent %d" % i for i in range(URGENT)))
        await _until(lambda: buffered(urgent), "the urgent topic's fetch result")
        before, urgent_seen, backlog_seen = 0, 0, 0
        while backlog_seen < BACKLOG or urgent_seen < URGENT:
            records = await poll(consumer, consumer.assignment())
            assert records, "no records within 2 s"
            for tp, msgs in records.items():
                assert len(msgs) <= MAX_RECORDS
                if tp.topic == urgent:
                    urgent_seen += len(msgs)
                else:
                    backlog_seen += len(msgs)
                    if not urgent_seen:
                        before += len(msgs)
        return before, urgent_seen
    finally:
        await consumer.stop()


def test_worker_polling_serves_the_other_topic_within_one_poll(topics, settings_env):
    app = build_app(load(env=settings_env), sink=object())
    thread = app.consumer._new_consumer_thread()          # what the worker polls with

    async def poll(consumer, partitions):
        return await thread._fetch_records(consumer, partitions, timeout=2, max_records=MAX_RECORDS)

    before, urgent_seen = asyncio.run(_backlog_before_urgent(*topics, poll))
    assert urgent_seen == URGENT
    # the backlog partition is served once, then the urgent one has its turn
    assert before <= MAX_RECORDS, f"{before} backlog messages went first"


def test_plain_aiokafka_polling_starves_the_other_topic(topics):
    """Why a poll limit alone is not enough (pipeline/fairfetch.py). If this
    fails after an aiokafka upgrade, the library has become fair itself and
    the rotation can go."""
    async def poll(consumer, partitions):
        return await consumer._fetcher.fetched_records(partitions, timeout=2, max_records=MAX_RECORDS)

    before, urgent_seen = asyncio.run(_backlog_before_urgent(*topics, poll))
    assert urgent_seen == URGENT
    assert before == BACKLOG, f"only {before} backlog messages went first"
