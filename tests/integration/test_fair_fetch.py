"""A backlog on one topic must not hold back the worker's other topics.

Real Kafka, real aiokafka consumer. Topic "backlog" holds 20,000 messages;
one consumer subscribed to it and to topic "urgent" fetches the backlog,
and only then do 10 messages arrive on "urgent" (as the worker's parse stage
publishes events while the raw backlog sits in the consumer's buffer). The
consumer then polls with max_records=500, as the faust worker polls the raw,
events and incidents topics with ``broker_max_poll_records``.
"""
from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline import fairfetch

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


async def _backlog_before_urgent(bootstrap: str, backlog: str, urgent: str, fair: bool) -> tuple[int, int]:
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
            if fair:
                records = await fairfetch.fair_fetched_records(fetcher, consumer.assignment(), timeout=2,
                                                               max_records=MAX_RECORDS)
            else:
                records = await fetcher.fetched_records(consumer.assignment(), timeout=2,
                                                        max_records=MAX_RECORDS)
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


def test_fair_polling_serves_the_other_topic_within_one_poll(topics):
    before, urgent_seen = asyncio.run(_backlog_before_urgent(*topics, fair=True))
    assert urgent_seen == URGENT
    # the backlog partition is served once, then the urgent one has its turn
    assert before <= MAX_RECORDS, f"{before} backlog messages went first"


def test_plain_aiokafka_polling_starves_the_other_topic(topics):
    """Why pipeline/fairfetch.py exists. If this fails after an aiokafka
    upgrade, the library has become fair itself and the shim can go."""
    before, urgent_seen = asyncio.run(_backlog_before_urgent(*topics, fair=False))
    assert urgent_seen == URGENT
    assert before == BACKLOG, f"only {before} backlog messages went first"


@pytest.mark.parametrize("fair", [True, False])
def test_worker_consumer_polls_fairly_unless_told_not_to(settings_env, fair):
    """The worker's faust app uses the fair consumer and a bounded poll
    (worker.fair_polling, on by default), or faust's own when it is off."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from pipeline.settings import load
    from pipeline.worker import build_app

    env = dict(settings_env) if fair else {**settings_env, "OSLOSCOPE_WORKER_FAIR_POLLING": "false"}
    settings = load(env=env)
    assert settings.worker.fair_polling is fair
    app = build_app(settings, sink=object())
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, AIOKafkaConsumerThread)
    overridden = type(thread)._fetch_records is not AIOKafkaConsumerThread._fetch_records
    assert overridden is fair
    assert app.conf.broker_max_poll_records == (settings.worker.batch_size if fair else None)
