"""Fair polling across topic partitions for the worker's Kafka consumer.

One faust worker consumes three topics with one consumer: raw lines, events
keyed by request, incidents. aiokafka's ``Fetcher.fetched_records`` walks its
buffer of fetched partitions in insertion order and stops at
``max_records``; a partition leaves that order only when its whole fetch
result has been consumed. With a backlog on the raw topic, one fetch result
holds megabytes of raw lines, and every poll is served from it until it is
empty: the events and incidents partitions, fetched long before, wait behind
the whole backlog. Measured with ``make bench-pipeline`` (100,000 lines): the
correlate stage received its first event only after the parse stage had read
all 100,000 lines, so no event reached Elasticsearch for 12-18 s and the two
stages never overlapped. After a worker restart with a lag of hours, no
incident would be indexed until the whole lag was parsed.

The fix is the rule Kafka's own fetch sessions follow (KIP-227): a partition
that was just served goes to the end of the line. :func:`rotate` moves every
partition a poll returned records for behind the others, so the next poll
starts with the partitions that were not served; together with a bounded
``broker_max_poll_records`` every topic gets its turn every few polls.
:func:`fair_transport` is the faust transport whose consumer polls that way.
"""
from __future__ import annotations

from typing import Any, Iterable


def rotate(fetcher: Any, served: Iterable) -> None:
    """Move the partitions in ``served`` to the end of ``fetcher``'s buffer order.

    ``fetcher`` is an ``aiokafka.consumer.fetcher.Fetcher``; its ``_records``
    maps partition -> pending fetch result (or error), in the order
    ``fetched_records`` serves them (aiokafka 0.8 to 0.14). Partitions with
    nothing left pending are not in it and are skipped. Should a later
    aiokafka keep its buffer differently, nothing is moved and polling falls
    back to the library's own order (tests/integration/test_fair_fetch.py
    then fails and says so).
    """
    pending = getattr(fetcher, "_records", None)
    if not isinstance(pending, dict):
        return            # an aiokafka whose buffer looks different: its own order stands
    for tp in served:
        if tp in pending:
            pending[tp] = pending.pop(tp)


async def fair_fetched_records(fetcher: Any, partitions, timeout: float = 0, max_records: int | None = None):
    """``fetcher.fetched_records(...)``, then the partitions it served go last."""
    records = await fetcher.fetched_records(partitions, timeout=timeout, max_records=max_records)
    if records:
        rotate(fetcher, records)
    return records


def fair_transport():
    """faust's aiokafka transport with a consumer that polls partitions in turn."""
    from faust.transport.drivers import aiokafka as driver

    class FairConsumerThread(driver.AIOKafkaConsumerThread):
        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                                   max_records=max_records)
            if records:
                rotate(consumer._fetcher, records)
            return records

    class FairConsumer(driver.Consumer):
        def _new_consumer_thread(self):
            return FairConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class FairTransport(driver.Transport):
        Consumer = FairConsumer

    return FairTransport
