"""``osloscope worker``: the faust-streaming app.

Three agents, each committing its input offsets only after its outputs were
acknowledged (Kafka acks=all for topics, Elasticsearch bulk acks for the
index):

  raw topic      --parse-->      events topic (key = request id), incidents
                                 topic (host-scoped detectors), dead letters
  events topic   --correlate-->  Elasticsearch events index (per setting),
                                 incidents topic (request-scoped detectors)
  incidents topic --index-->     Elasticsearch incidents index (upsert by id)

Batches come from ``stream.noack_take`` and are acked by hand: process ->
await the outputs' acknowledgements -> save the stage snapshot (fsync) ->
ack. A SIGKILL at any point therefore either replays a batch whose outputs
are overwritten downstream (deterministic ids), or resumes after it
(snapshot offsets say so). faust's exactly-once mode is not used (see
../shared/DESIGN.md, "Delivery").

Detector and parser state is kept per input partition, saved as versioned
JSON to the stage's compacted changelog topic (changelog.py) before the
input offsets are acked, and read back when a partition is assigned: the
state follows its partition to whichever worker gets it, on any machine.
Any number of workers with the same ``app_id`` share the partitions.

Event time: the parse stage holds events until every file of its partition
has passed them and sends watermark markers to every events partition; the
correlate stage holds events until every upstream partition has passed them
(eventtime.py). Detectors see timestamp order, whatever the arrival order.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from pipeline import codec
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.kafka_clients import topic_partitions
from pipeline.streaming.stage import MARKER_HEADER, UPSTREAM_HEADER
from pipeline.streaming.stages import CorrelateStage, Output, ParseStage, RawMessage
from pipeline.streaming.changelog import Changelog, restore_partition

log = logging.getLogger("osloscope.worker")


def _raw_message(event) -> RawMessage:
    msg = event.message
    headers = msg.headers or {}
    if not isinstance(headers, dict):
        headers = {k: v for k, v in headers}
    value = msg.value if isinstance(msg.value, (bytes, bytearray)) else event.value
    if isinstance(value, str):
        value = value.encode()
    return RawMessage(msg.topic, msg.partition, msg.offset, msg.key, bytes(value or b""),
                      {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()})


def faust_credentials(kafka):
    """``None`` for PLAINTEXT, else faust ``SSLCredentials`` / ``SASLCredentials`` for the
    ``[kafka]`` settings ``kafka``."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import faust
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(kafka.ssl_context())
    return faust.SASLCredentials(
        username=kafka.sasl_username, password=kafka.sasl_password, mechanism=kafka.sasl_mechanism,
        ssl_context=kafka.ssl_context() if kafka.security_protocol == "SASL_SSL" else None)


def build_app(settings, *, sink=None):
    """The faust App with its agents, timers and metrics page."""
    import faust

    from pipeline.streaming.fairfetch import fair_transport

    w, k, t = settings.worker, settings.kafka, settings.topics
    web = w.metrics_port != 0
    datadir = Path(w.state_dir) / w.app_id / "faust"       # faust's own files (no stage state)
    datadir.mkdir(parents=True, exist_ok=True)
    if w.fair_polling:
        transport_cls = fair_transport()

        class App(faust.App):
            # every topic gets its turn: a raw backlog must not hold back the
            # events and incidents topics (pipeline/fairfetch.py)
            def _new_transport(self):
                return transport_cls(self.conf.broker_consumer, self)
    else:
        App = faust.App
    app = App(
        w.app_id,
        broker=[f"kafka://{h.strip()}" for h in k.bootstrap.split(",") if h.strip()],
        broker_credentials=faust_credentials(k),
        value_serializer="raw", key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # a batch's outputs are sent together and awaited together: let them
        # travel in few large produce requests (faust's default is 16 KiB, ~12 events)
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=4 * 1024 * 1024,
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        web_enabled=web, web_port=w.metrics_port or 6066, web_bind=w.metrics_host,
        web_in_thread=False,
        # a SIGKILLed member holds its partitions until its session times out
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        consumer_max_fetch_size=8 * 1024 * 1024,      # events are ~1-2 KiB: fetch whole batches
        # a poll hands out at most this many records, so polls alternate between topics
        # (faust's own BROKER_MAX_POLL_RECORDS environment variable would override it)
        broker_max_poll_records=w.batch_size if w.fair_polling else None,
        stream_buffer_maxsize=4 * w.batch_size,
        broker_session_timeout=w.session_timeout,
        broker_heartbeat_interval=max(1.0, w.session_timeout / 5),
        datadir=str(datadir),
    )
    raw_topic = app.topic(t.raw, value_type=bytes, key_type=bytes)
    events_topic = app.topic(t.events, value_type=bytes, key_type=bytes)
    incidents_topic = app.topic(t.incidents, value_type=bytes, key_type=bytes)

    metrics = Metrics()
    parse_stage = ParseStage(settings)
    correlate_stage = CorrelateStage(settings)
    changelogs = {"parse": Changelog(settings, "parse"), "correlate": Changelog(settings, "correlate")}
    loaded: dict[str, set[str]] = {"parse": set(), "correlate": set()}   # partitions whose state is here
    stage_of_topic = {t.raw: parse_stage, t.events: correlate_stage}
    if sink is None and settings.elasticsearch.enabled:
        from pipeline.sinks.elasticsearch import ElasticsearchSink
        sink = ElasticsearchSink(settings.elasticsearch)
    locks = {"parse": asyncio.Lock(), "correlate": asyncio.Lock()}
    loop_run = asyncio.get_event_loop

    events_partitions: list[int] = []

    async def partitions_of_events() -> list[int]:
        """The events topic's partitions (a watermark marker goes to each)."""
        if not events_partitions:
            found = await loop_run().run_in_executor(None, topic_partitions, settings, t.events)
            events_partitions.extend(sorted(found))
        return events_partitions

    async def publish(out: Output, stage: str) -> None:
        """Send every output and wait until Kafka acknowledged all of them; the
        watermark markers go after the events they cover were acknowledged."""
        t0 = time.perf_counter()
        send = app.producer.send        # the transport directly: no per-message schema work
        futs = []
        for key, value, upstream in out.events:
            futs.append(await send(t.events, key, value, None, None,
                                   [(UPSTREAM_HEADER, upstream.encode())]))
        for doc in out.incidents:
            futs.append(await send(t.incidents, doc["id"].encode(), codec.cap(doc), None, None, None))
        for dl in out.deadletters:
            key = f"{dl.get('host')}|{dl.get('file')}".encode()
            futs.append(await send(t.deadletter, key, codec.cap(dl), None, None, None))
        if futs:
            await asyncio.gather(*futs)
        if out.markers:
            futs = []
            for number in await partitions_of_events():
                for _upstream, value in out.markers:
                    futs.append(await send(t.events, None, value, number, None, [(MARKER_HEADER, b"1")]))
            await asyncio.gather(*futs)
        metrics.time(stage, "publish", time.perf_counter() - t0)
        metrics.add(stage, "events_out", len(out.events))
        metrics.add(stage, "incidents_out", len(out.incidents))
        metrics.incidents(out.incidents)
        metrics.add(stage, "dead_letters", len(out.deadletters))

    async def index(actions: list[dict], stage: str) -> None:
        if not actions or sink is None:
            return
        t0 = time.perf_counter()
        rejected = await loop_run().run_in_executor(None, sink.write, actions)
        metrics.time(stage, "index", time.perf_counter() - t0)
        metrics.add(stage, "es_indexed", len(actions) - len(rejected))
        if rejected:
            metrics.add(stage, "es_rejected", len(rejected))
            await publish(Output(deadletters=[r.dead_letter() for r in rejected]), stage)

    async def save(stage) -> None:
        """Write the state of every partition the stage changed since its last save
        to its changelog topic, and wait for Kafka's acknowledgements."""
        t0 = time.perf_counter()
        changelog = changelogs[stage.name]
        send = app.producer.send
        written = []
        futs = []
        for tp in stage.dirty():
            records = changelog.writes(tp, stage.snapshot(tp))
            for key, value, number in records:
                futs.append(await send(changelog.topic, key, value, number, None, None))
            written.append((tp, records))
        if futs:
            await asyncio.gather(*futs)
        for tp, records in written:
            changelog.written(tp, records)
            stage.saved(tp)
            metrics.add(stage.name, "state_bytes", sum(len(v or b"") for _k, v, _n in records))
        metrics.time(stage.name, "save", time.perf_counter() - t0)

    async def restore(stage, tps: set[str]) -> None:
        """Read the state of partitions ("topic/N") this worker has not loaded since
        they were assigned."""
        for tp in sorted(tps - loaded[stage.name]):
            t0 = time.perf_counter()
            await loop_run().run_in_executor(None, restore_partition, stage, changelogs[stage.name], tp,
                                             time.monotonic())
            loaded[stage.name].add(tp)
            metrics.time(stage.name, "restore", time.perf_counter() - t0)

    async def deliver(out: Output, stage) -> None:
        """Index and publish a stage's outputs, then save its state: all before any ack."""
        await index(out.es_actions, stage.name)
        out.es_actions = []
        await publish(out, stage.name)
        await save(stage)

    async def batches(stream, name: str):
        """Batches of raw messages; a batch is acked when the caller asks for the next one,
        i.e. only after its outputs were delivered (never if processing raised)."""
        async for events in stream.noack_take(w.batch_size, within=w.batch_timeout):
            msgs = [_raw_message(e) for e in events]
            metrics.add(name, "records_in", len(msgs))
            metrics.add(name, "batches", 1)
            metrics.observe_offsets(msgs)
            yield msgs
            for e in events:
                await stream.ack(e)

    async def run_stage(stream, stage, **kw) -> None:
        async for msgs in batches(stream, stage.name):
            async with locks[stage.name]:
                try:
                    await restore(stage, {f"{m.topic}/{m.partition}" for m in msgs})
                    t0 = time.perf_counter()
                    out = stage.process(msgs, time.monotonic(), **kw)
                    metrics.time(stage.name, "process", time.perf_counter() - t0)
                    await deliver(out, stage)
                except Exception:
                    fail(stage.name, msgs)

    def fail(stage: str, msgs: list[RawMessage]) -> None:
        """A batch whose processing, delivery or state save raised is never acknowledged:
        restarting the agent would let faust commit later offsets past it. Stop the
        process at once instead; restarted (systemd, Kubernetes), it resumes from the
        committed offsets with the state saved in the changelog, and nothing is lost."""
        first, last = msgs[0], msgs[-1]
        log.critical("%s: batch %s/%s@%s..%s failed and is NOT acknowledged; exiting (status 70) so the "
                     "worker restarts from the last committed offsets and saved state",
                     stage, first.topic, first.partition, first.offset, last.offset, exc_info=True)
        logging.shutdown()
        os._exit(70)

    @app.agent(raw_topic, name="osloscope.parse")
    async def parse(stream):
        await run_stage(stream, parse_stage)

    @app.agent(events_topic, name="osloscope.correlate")
    async def correlate(stream):
        await run_stage(stream, correlate_stage, sink=sink)

    @app.agent(incidents_topic, name="osloscope.index-incidents")
    async def index_incidents(stream):
        async for msgs in batches(stream, "index"):
            if sink is None:
                continue
            latest: dict[str, dict] = {}     # versions arrive in order: the last one wins
            for m in msgs:
                try:
                    doc = codec.loads(m.value)
                    latest.pop(doc["id"], None)
                    latest[doc["id"]] = sink.incident_action(doc)
                except Exception as exc:
                    await publish(Output(deadletters=[codec.dead_letter_doc(
                        f"bad incident record: {exc}", m.value,
                        kafka=codec.kafka_position(m.topic, m.partition, m.offset))]), "index")
            await index(list(latest.values()), "index")

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs) -> None:
        """Partitions that go elsewhere: forget their state (the new owner reads it
        from the changelog; if they come back, so do we)."""
        for tp_ in revoked:
            stage = stage_of_topic.get(tp_.topic)
            if stage is None:
                continue
            async with locks[stage.name]:
                tp = f"{tp_.topic}/{tp_.partition}"
                stage.drop(tp)
                loaded[stage.name].discard(tp)
                changelogs[stage.name].forget(tp)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:
        """Read the state of every partition assigned now, not on its next message:
        a partition may hold events waiting for their turn and receive nothing more."""
        for stage in (parse_stage, correlate_stage):
            tps = sorted(f"{tp_.topic}/{tp_.partition}" for tp_ in assigned
                         if stage_of_topic.get(tp_.topic) is stage)
            if tps:
                async with locks[stage.name]:
                    await restore(stage, set(tps))

    @app.timer(1.0, name="osloscope.tick")
    async def tick():
        now = time.monotonic()
        for stage in (parse_stage, correlate_stage):
            async with locks[stage.name]:
                out = stage.tick(now, sink=sink)
                if out:
                    await deliver(out, stage)

    def observe_event_time() -> None:
        for stage in (parse_stage, correlate_stage):
            metrics.observe_event_time(stage.name, stage.eventtime_stats())

    @app.timer(w.log_interval, name="osloscope.stats")
    async def stats():
        observe_event_time()
        metrics.update_lag(app)
        log.info("osloscope stats %s", metrics.summary())

    if web:
        @app.page("/metrics")
        async def prometheus(web_, request):
            observe_event_time()
            metrics.update_lag(app)
            return web_.bytes(metrics.prometheus().encode(),
                              content_type="text/plain; version=0.0.4")

    app.osloscope = {"parse": parse_stage, "correlate": correlate_stage, "metrics": metrics,
                     "sink": sink, "changelogs": changelogs}
    return app


def run(settings, *, loglevel: str = "info") -> int:
    """Run the worker until SIGTERM/SIGINT."""
    import faust

    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("elastic_transport", "elasticsearch", "kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from pipeline.streaming.topics import create_topics

    # the state changelogs are named after the app id: make sure they (and the data topics) exist
    create_topics(settings, log=log.info)
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
