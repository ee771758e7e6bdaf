"""Fair polling across topic partitions for the worker's Kafka consumer.

One faust worker consumes three topics with one consumer: raw lines, events
keyed by request, incidents. Two things made a raw backlog hold back the
other two:

- faust polls without a limit by default (``broker_max_poll_records`` None),
  so one poll took everything aiokafka had buffered -- a fetch result of up
  to ``consumer_max_fetch_size`` (8 MiB) of raw lines -- and faust hands all
  of a poll to the agents before it polls again;
- with a limit, aiokafka's ``Fetcher.fetched_records`` walks its buffered
  partitions in insertion order and stops at the limit; a partition leaves
  that order only when its fetch result is used up, so every poll would
  still be served from the raw backlog first.

Measured with ``make bench-pipeline`` (100,000 lines): the correlate stage
received its first event only after the parse stage had read all 100,000
lines, so no event reached Elasticsearch for 14-16 s and the two stages
never overlapped. After a worker restart with a lag of hours, no incident
would be indexed until the whole lag was parsed.

The fix is a bounded poll (the worker sets ``broker_max_poll_records`` to
its batch size) plus the rule Kafka's own fetch sessions follow (KIP-227): a
partition that was just served goes to the end of the line. :func:`rotate`
moves every partition a poll returned records for behind the others, so the
next poll starts with those that were not served. :func:`fair_transport` is
the faust transport whose consumer polls that way.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

log = logging.getLogger("osloscope.worker")
_warned = False


def rotate(fetcher: Any, served: Iterable) -> None:
    """Move the partitions in ``served`` to the end of ``fetcher``'s buffer order.

    ``fetcher`` is an ``aiokafka.consumer.fetcher.Fetcher``; its ``_records``
    maps partition -> pending fetch result (or error), in the order
    ``fetched_records`` serves them (aiokafka 0.14, as installed). Partitions with
    nothing left pending are not in it and are skipped. Should a later
    aiokafka keep its buffer differently, nothing is moved and polling falls
    back to the library's own order (tests/integration/test_fair_fetch.py
    then fails and says so).
    """
    global _warned
    pending = getattr(fetcher, "_records", None)
    if not isinstance(pending, dict):
        if not _warned:          # an aiokafka whose buffer looks different: its own order stands
            _warned = True
            log.warning("fair polling is off: this aiokafka keeps its fetched records differently "
                        "(no Fetcher._records dict); a raw backlog can hold back events and incidents")
        return
    for tp in served:
        if tp in pending:
            pending[tp] = pending.pop(tp)


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
