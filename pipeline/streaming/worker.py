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

Faults: a batch (or timer run) whose processing, delivery or state save
raises stops the process with status 70 before anything is acknowledged.
A record Kafka refuses as too large goes to the dead-letter topic with the
reason instead, and the stage goes on. Each stage has its own one-second
timer, and Elasticsearch is written from threads of its own: a frozen
Elasticsearch holds up the stages that index (logged as slow, measured on
/metrics), never the parse stage or its timer.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import codec
from pipeline.streaming.metrics import Metrics, consumer_lag
from pipeline.streaming.kafka_clients import topic_partitions
from pipeline.streaming.stage import FLEET_HEADER, MARKER_HEADER, UPSTREAM_HEADER, partition_of
from pipeline.streaming.stages import CorrelateStage, Output, ParseStage, RawMessage
from pipeline.streaming.changelog import Changelog, restore_partition

log = logging.getLogger("osloscope.worker")

# a record Kafka refused as too large becomes a dead letter capped to this (then to the fallback)
REFUSED_LETTER_BYTES = 64 * 1024
REFUSED_LETTER_FALLBACK_BYTES = 4 * 1024


def too_large(exc: BaseException | None) -> bool:
    """The error (or what caused it) says Kafka refused a record or batch for its size: by
    the broker (the topic's max.message.bytes) or by the producer (its max request size)."""
    from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def refused_letter(topic: str, value: bytes, exc: BaseException, limit: int) -> dict:
    """The dead letter of a record ``topic`` refused as too large: the reason, where the record
    came from (an event's host, service, file and offset; an incident's host and service)."""
    doc = None
    try:
        doc = codec.loads(value)
    except Exception:
        pass
    doc = doc if isinstance(doc, dict) else {}
    log_ = doc.get("log") if isinstance(doc.get("log"), dict) else {}
    file_ = log_.get("file") if isinstance(log_.get("file"), dict) else {}

    def name(field):
        return field.get("name") if isinstance(field, dict) else field

    return codec.dead_letter_doc(
        f"refused by Kafka topic {topic} as too large ({len(value)} bytes): {type(exc).__name__}: {exc}",
        value, timestamp=doc.get("@timestamp") if isinstance(doc.get("@timestamp"), str) else None,
        host=name(doc.get("host")), service=name(doc.get("service")),
        file=file_.get("path") or doc.get("file"),
        offset=log_.get("offset") if "offset" in log_ else doc.get("offset"), limit=limit)


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
        username=kafka.sasl_username, password=kafka.sasl_password, mechanism=kafka.sasl_mechanism or None,
        ssl_context=kafka.ssl_context() if kafka.security_protocol == "SASL_SSL" else None)


def faust_datadir(settings) -> Path:
    """faust's own directory (it keeps no stage state: that is in Kafka)."""
    return Path(settings.worker.state_dir) / settings.worker.app_id / "faust"


def make_datadir(settings, stop_after: float | None = None) -> bool:
    """Create faust's directory, waiting while the filesystem refuses (a full disk): said at
    once and every minute, tried every 5 s. False if still refused after ``stop_after`` s."""
    path = faust_datadir(settings)
    started = told = time.monotonic()
    attempts = 0
    while True:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            attempts += 1
            now = time.monotonic()
            if attempts == 1 or now - told >= 60:
                told = now
                log.error("cannot create the worker's directory %s (worker.state_dir): %s; nothing is "
                          "consumed until it can be, retrying every 5 s", path, exc)
            if stop_after is not None and now - started >= stop_after:
                return False
            time.sleep(5)
            continue
        if attempts:
            log.warning("the worker's directory %s was created after %d failed attempt(s)", path, attempts)
        return True


def build_app(settings, *, sink=None):
    """The faust App with its agents, timers and metrics page."""
    import faust

    from pipeline.streaming.fairfetch import fair_transport

    w, k, t = settings.worker, settings.kafka, settings.topics
    web = w.metrics_port != 0
    datadir = faust_datadir(settings)
    datadir.mkdir(parents=True, exist_ok=True)      # (``run`` waits for it on a full disk)
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
    # Elasticsearch is written from threads of its own (correlate, index-incidents): while it
    # hangs, the default executor stays free for state restores and topic lookups
    sink_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="osloscope-sink")

    events_partitions: list[int] = []

    async def partitions_of_events() -> list[int]:
        """The events topic's partitions (a watermark marker goes to each)."""
        if not events_partitions:
            found = await loop_run().run_in_executor(None, topic_partitions, settings, t.events)
            events_partitions.extend(sorted(found))
        return events_partitions

    async def send_records(records: list[tuple]) -> list[tuple[tuple, BaseException]]:
        """Send (topic, key, value, partition, headers) records and wait until Kafka
        acknowledged them; returns those refused as too large, each with its error, after
        a second try on its own (a refused batch takes its small records down with it).
        Any other failure raises."""
        send = app.producer.send        # the transport directly: no per-message schema work
        errors: list[BaseException | None] = [None] * len(records)
        futs = []
        for i, (topic, key, value, number, headers) in enumerate(records):
            try:
                futs.append((i, await send(topic, key, value, number, None, headers)))
            except Exception as exc:      # refused before it left: larger than a produce request
                errors[i] = exc
        results = await asyncio.gather(*(f for _i, f in futs), return_exceptions=True)
        for (i, _f), res in zip(futs, results):
            if isinstance(res, BaseException):
                errors[i] = res
        failed = [(rec, exc) for rec, exc in zip(records, errors) if exc is not None]
        for _rec, exc in failed:
            if not too_large(exc):
                raise exc
        refused = []
        for rec, _exc in failed:               # alone, each in a batch of its own
            topic, key, value, number, headers = rec
            try:
                await (await send(topic, key, value, number, None, headers))
            except Exception as exc:
                if not too_large(exc):
                    raise
                refused.append((rec, exc))
        return refused

    async def dead_letter_refused(refused: list[tuple[tuple, BaseException]], stage: str) -> None:
        """Records Kafka refused as too large go to the dead-letter topic with the reason,
        capped far below any broker limit; the stage goes on."""
        for (topic, _key, value, _n, _h), exc in refused:
            log.error("%s: a record of %d bytes was refused by Kafka topic %s as too large (%s: %s); "
                      "it goes to the dead-letter topic %s with the reason", stage, len(value or b""), topic,
                      type(exc).__name__, exc, t.deadletter)
            letters = []
            for limit in (REFUSED_LETTER_BYTES, REFUSED_LETTER_FALLBACK_BYTES):
                dl = refused_letter(topic, value or b"", exc, limit)
                letters.append((t.deadletter, f"{dl.get('host')}|{dl.get('file')}".encode(),
                                codec.cap(dl, limit), None, None))
            if not await send_records(letters[:1]):
                continue
            if await send_records(letters[1:]):
                raise RuntimeError(f"the dead-letter topic {t.deadletter} refused a dead letter of "
                                   f"{REFUSED_LETTER_FALLBACK_BYTES} bytes as too large: check its "
                                   "max.message.bytes")
        metrics.add(stage, "refused_by_kafka", len(refused))
        metrics.add(stage, "dead_letters", len(refused))

    async def publish(out: Output, stage: str) -> None:
        """Send every output and wait until Kafka acknowledged all of them; the
        watermark markers go after the events they cover were acknowledged."""
        t0 = time.perf_counter()
        records = [(t.events, key, value, None, [(UPSTREAM_HEADER, upstream.encode())])
                   for key, value, upstream in out.events]
        records += [(t.events, key, value, None, [(UPSTREAM_HEADER, upstream.encode()),
                                                  (FLEET_HEADER, fleet.encode())])
                    for key, value, upstream, fleet in out.fleet]      # routed to a fleet detector
        records += [(t.incidents, doc["id"].encode(), codec.cap(doc), None, None) for doc in out.incidents]
        records += [(t.deadletter, f"{dl.get('host')}|{dl.get('file')}".encode(), codec.cap(dl), None, None)
                    for dl in out.deadletters]
        refused = await send_records(records) if records else []
        if refused:
            await dead_letter_refused(refused, stage)
        if out.markers:
            markers = [(t.events, None, value, number, [(MARKER_HEADER, b"1")])
                       for number in await partitions_of_events() for _upstream, value in out.markers]
            if await send_records(markers):
                raise RuntimeError(f"Kafka topic {t.events} refused a watermark marker as too large")
        metrics.time(stage, "publish", time.perf_counter() - t0)
        metrics.add(stage, "events_out", len(out.events))
        metrics.add(stage, "incidents_out", len(out.incidents))
        metrics.incidents(out.incidents)
        metrics.add(stage, "dead_letters", len(out.deadletters))

    async def index(actions: list[dict], stage: str) -> None:
        if not actions or sink is None:
            return
        t0 = time.perf_counter()
        rejected = await loop_run().run_in_executor(sink_threads, sink.write, actions)
        metrics.time(stage, "index", time.perf_counter() - t0)
        metrics.add(stage, "es_indexed", len(actions) - len(rejected))
        metrics.indexed_lines(stage, actions, rejected)
        if rejected:
            metrics.add(stage, "es_rejected", len(rejected))
            await publish(Output(deadletters=[r.dead_letter() for r in rejected]), stage)

    async def save(stage) -> None:
        """Write what the stage changed since its last save to its changelog topic, and wait
        for Kafka's acknowledgements: per changed partition its head, the events it holds
        now that were never saved, the deletion of saved ones released (changelog.py)."""
        t0 = time.perf_counter()
        changelog = changelogs[stage.name]
        send = app.producer.send
        saves = [changelog.writes(tp, stage.snapshot(tp), *stage.changes(tp)) for tp in stage.dirty()]
        # the rest first; a manifest only once all its records were acknowledged, so a refused or
        # lost record never leaves a manifest pointing at records that are not there
        futs = [await send(changelog.topic, key, value, number, None, None)
                for sv in saves for key, value, number in sv.first]
        offsets = iter(meta.offset for meta in await asyncio.gather(*futs))
        for sv in saves:
            sv.offsets = [next(offsets) for _ in sv.first]
        manifests = [changelog.manifest(sv) for sv in saves]
        futs = [await send(changelog.topic, key, value, number, None, None) for key, value, number in manifests]
        await asyncio.gather(*futs)
        for sv, (_k, value, _n) in zip(saves, manifests):
            changelog.written(sv)
            stage.saved(sv.tp)
            metrics.add(stage.name, "state_bytes", sv.bytes + len(value))
        metrics.add(stage.name, "state_partitions_saved", len(saves))
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

    async def batches(stream, name: str, unowned: set[str] | None = None):
        """Batches of raw messages; a batch is acked when the caller asks for the next one,
        i.e. only after its outputs were delivered (never if processing raised). Records of the
        partitions the caller put in ``unowned`` (revoked: not processed) are not acked."""
        async for events in stream.noack_take(w.batch_size, within=w.batch_timeout):
            msgs = [_raw_message(e) for e in events]
            metrics.add(name, "records_in", len(msgs))
            metrics.add(name, "batches", 1)
            yield msgs
            for e, m in zip(events, msgs):
                if not unowned or partition_of(m) not in unowned:
                    await stream.ack(e)
            if unowned:
                unowned.clear()

    def owned_now() -> set[str] | None:
        """The partitions ("topic/N") assigned to this worker now (None: not known)."""
        try:
            return {f"{tp_.topic}/{tp_.partition}" for tp_ in app.consumer.assignment()}
        except Exception:
            return None

    async def run_stage(stream, stage, **kw) -> None:
        unowned: set[str] = set()
        async for msgs in batches(stream, stage.name, unowned):
            async with locks[stage.name]:
                # a batch taken before a rebalance can hold records of partitions revoked since:
                # another worker owns them and their state now, and reads them again from the
                # committed offset (so they are not acked here). Processed here, they would be
                # processed twice, and the partition's state written by two workers.
                owned = owned_now()
                if owned is not None:
                    unowned.update(tp for tp in set(map(partition_of, msgs)) if tp not in owned)
                if unowned:
                    mine = [m for m in msgs if partition_of(m) not in unowned]
                    metrics.add(stage.name, "records_of_revoked_partitions", len(msgs) - len(mine))
                    log.info("%s: %d record(s) of partition(s) %s, revoked since they were fetched, are "
                             "left to their new owner", stage.name, len(msgs) - len(mine),
                             ", ".join(sorted(unowned)))
                    msgs = mine
                if not msgs:
                    continue
                try:
                    await restore(stage, set(map(partition_of, msgs)))
                    t0 = time.perf_counter()
                    out = stage.process(msgs, time.monotonic(), **kw)
                    metrics.time(stage.name, "process", time.perf_counter() - t0)
                    await deliver(out, stage)
                except Exception:
                    first, last = msgs[0], msgs[-1]
                    fail(stage.name, f"batch {first.topic}/{first.partition}@{first.offset}..{last.offset}")

    def fail(stage: str, what: str) -> None:
        """A batch (or timer run) whose processing, delivery or state save raised is never
        acknowledged: restarting the agent would let faust commit later offsets past it.
        Stop the process at once instead; restarted (systemd, Kubernetes), it resumes from
        the committed offsets with the state saved in the changelog, and nothing is lost."""
        log.critical("%s: %s failed and is NOT acknowledged; exiting (status 70) so the worker "
                     "restarts from the last committed offsets and saved state", stage, what, exc_info=True)
        logging.shutdown()
        os._exit(70)

    @app.agent(raw_topic, name="osloscope.parse")
    async def parse(stream):
        await run_stage(stream, parse_stage)

    @app.agent(events_topic, name="osloscope.correlate")
    async def correlate(stream):
        # every raw partition holds the correlate stage back until it is heard from (or
        # stays quiet for source_idle_timeout): one not processed yet must not be overtaken
        raw_parts = await loop_run().run_in_executor(None, topic_partitions, settings, t.raw)
        correlate_stage.upstreams = [f"{t.raw}/{n}" for n in sorted(raw_parts)]
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

    restoring: set[asyncio.Future] = set()

    async def restore_assigned(stage, tps: set[str]) -> None:
        async with locks[stage.name]:
            try:
                owned = {f"{tp_.topic}/{tp_.partition}" for tp_ in app.consumer.assignment()}
                await restore(stage, tps & owned)        # not those revoked meanwhile
            except Exception:
                fail(stage.name, f"restoring the state of {', '.join(sorted(tps))}")

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:
        """Read the state of every partition assigned now, not on its next message:
        a partition may hold events waiting for their turn and receive nothing more.
        In a task of its own, holding the stage's lock: a restore that takes longer than
        the session timeout must not hold up the rebalance (the group would expel this
        worker, rebalance again, and again). A batch of such a partition waits for the lock,
        and restores it itself if it comes first."""
        for stage in (parse_stage, correlate_stage):
            tps = {f"{tp_.topic}/{tp_.partition}" for tp_ in assigned
                   if stage_of_topic.get(tp_.topic) is stage}
            if tps:
                task = asyncio.ensure_future(restore_assigned(stage, tps))
                restoring.add(task)
                task.add_done_callback(restoring.discard)

    def empty_raw_partitions() -> list[str]:
        """Raw partitions assigned here, their state read, with nothing to read."""
        try:
            lag = consumer_lag(app.consumer)
        except Exception:
            return []
        return [tp for tp in (f"{topic}/{n}" for (topic, n), behind in lag.items()
                              if topic == t.raw and behind == 0) if tp in loaded["parse"]]

    def stage_timer(stage) -> None:
        """The stage's own one-second timer (idle flush, release of held events, idle
        detectors): it waits only for its own stage, so a stage stuck on its sink never
        stops another stage's timer."""
        @app.timer(1.0, name=f"osloscope.tick.{stage.name}")
        async def tick():
            async with locks[stage.name]:
                try:
                    now = time.monotonic()
                    out = stage.tick(now, sink=sink)
                    if stage is parse_stage:
                        out.extend(parse_stage.idle_partitions(empty_raw_partitions(), now))
                    if out:
                        await deliver(out, stage)
                except Exception:
                    fail(stage.name, "timer run")
            metrics.tick(stage.name, time.monotonic())

    stage_timer(parse_stage)
    stage_timer(correlate_stage)

    if sink is not None and hasattr(sink, "watch"):
        @app.timer(1.0, name="osloscope.sink-watch")
        async def sink_watch():
            """Logs a bulk request in flight too long (its thread cannot: it is blocked)."""
            sink.watch()

    def observe_event_time() -> None:
        for stage in (parse_stage, correlate_stage):
            metrics.observe_event_time(stage.name, stage.eventtime_stats())
        metrics.observe_lines(parse_stage.name, parse_stage.lines, parse_stage.pending_lines())

    def observe() -> None:
        observe_event_time()
        metrics.update_lag(app)
        if sink is not None and hasattr(sink, "latency"):
            metrics.observe_sink(sink.latency.snapshot())

    @app.timer(w.log_interval, name="osloscope.stats")
    async def stats():
        observe()
        log.info("osloscope stats %s", metrics.summary())

    if web:
        @app.page("/metrics")
        async def prometheus(web_, request):
            observe()
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
    from pipeline.streaming.kafka_clients import KafkaAccessError, require_access
    from pipeline.streaming.topics import create_topics

    try:    # named at once: authentication, TLS, security protocol; a broker that is away gets 60 s
        require_access(settings.kafka, wait=60.0, log=log.warning)
    except KafkaAccessError as exc:
        log.critical("Kafka %s: %s", settings.kafka.bootstrap, exc)
        return 1 if exc.retriable else 2
    # the state changelogs are named after the app id: make sure they (and the data topics) exist
    create_topics(settings, log=log.info)
    make_datadir(settings)
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
