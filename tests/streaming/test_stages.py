"""The worker's stages without Kafka: same results as embedded mode, exact
state across snapshot/restore, replay skipping, dedupe, idle flush.
(tests/streaming/test_partition_state.py: state per partition as JSON.)"""
from __future__ import annotations

import json

import pytest

from changelog_support import move
from support import (PROMPT_EVENT_TIME, FIXTURES, SAMPLES, analyze_paths, engine as support_engine,
                     events_topic, raw_messages)

from pipeline.codec import MAX_DOC_BYTES, event_id
from pipeline.settings import load
from pipeline.streaming.stages import CorrelateStage, ParseStage, RawMessage, source_of


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5"})


@pytest.fixture
def prompt(tmp_path, monkeypatch):
    """Settings for tests about parsing: an event goes on once its own file passed it."""
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5", **PROMPT_EVENT_TIME})


def run(settings, msgs, parse=None, corr=None, flush=True):
    parse = parse or ParseStage(settings)
    corr = corr or CorrelateStage(settings)
    out = parse.process(msgs, 0.0)
    if flush:
        out.extend(parse.tick(1e9))
    out2 = corr.process(events_topic(out), 0.0)
    out2.extend(corr.tick(2e9))
    incidents = {}
    for d in out.incidents + out2.incidents:
        incidents[d["id"]] = d
    return out, incidents


def test_streaming_stages_find_what_analyze_finds(settings):
    msgs = raw_messages([SAMPLES])
    out, incidents = run(settings, msgs)
    expected = {d["id"]: d for d in analyze_paths(SAMPLES, engine=support_engine())}
    assert {(k, v["rule"]) for k, v in incidents.items()} == {(k, v["rule"]) for k, v in expected.items()}
    assert {d["type"] for d in incidents.values()} >= {"retry_exhausted", "auth_failure", "disk_full"}
    n_events = len(out.events)
    docs = [json.loads(v) for _k, v, _up in out.events]
    assert len({d["_id"] for d in docs}) == n_events          # ids unique
    keys = {k for k, _v, _up in out.events}
    assert any(k.startswith(b"req-") for k in keys)            # keyed by request id


def test_snapshot_restore_mid_stream_is_exact(settings):
    msgs = raw_messages([SAMPLES])
    _out, reference = run(settings, msgs)
    for cut in (1, len(msgs) // 3, len(msgs) // 2, len(msgs) - 2):
        p1 = ParseStage(settings)
        first = p1.process(msgs[:cut], 0.0)
        p2 = move(p1, settings)
        # redelivery of already processed messages (offsets not yet committed) is skipped
        second = p2.process(msgs[max(0, cut - 10):], 0.0)
        second.extend(p2.tick(1e9))
        assert p2.stats["skipped_replay"] == min(10, cut)
        events = first.events + second.events
        ids = [json.loads(v)["_id"] for _k, v, _up in events]
        assert len(ids) == len(set(ids))
        corr = CorrelateStage(settings)
        incidents = {d["id"]: d for d in first.incidents + second.incidents}
        for d in corr.process(events_topic([first, second]), 0.0).incidents + corr.tick(2e9).incidents:
            incidents[d["id"]] = d
        assert {k: v["count"] for k, v in incidents.items()} == \
            {k: v["count"] for k, v in reference.items()}, cut


def test_correlate_drops_duplicate_events_and_survives_restore(settings):
    out, _ = run(settings, raw_messages([SAMPLES]))
    ev = events_topic(out)
    c1 = CorrelateStage(settings)
    c1.process(ev[:40], 0.0)
    c2 = move(c1, settings)
    # the parse stage replayed a batch: same events again, at new offsets
    again = [RawMessage("events", 0, 1000 + i, m.key, m.value, m.headers) for i, m in enumerate(ev[30:40])]
    c2.process(again, 0.0)
    assert c2.stats["duplicates"] == 10
    assert c2.stats["records_in"] == 10


def test_source_from_headers_key_or_nothing():
    src, off = source_of(RawMessage("raw", 0, 5, b"x|y", b"line",
                                    {"host": b"compute-1", "path": b"/var/log/nova/nova-compute.log",
                                     "offset": b"123"}))
    assert (src.host, src.service, src.path, off) == ("compute-1", "nova-compute",
                                                      "/var/log/nova/nova-compute.log", 123)
    src, off = source_of(RawMessage("raw", 0, 5, b"ctl-1|/var/log/cinder/volume.log", b"line"))
    assert (src.host, src.path, off) == ("ctl-1", "/var/log/cinder/volume.log", None)
    assert src.service == "cinder-volume"
    src, off = source_of(RawMessage("raw", 3, 5, None, b"line"))
    assert src.path == "kafka:raw/3" and src.host is None


def test_idle_stream_record_completes_on_tick(prompt):
    line = (b"2017-06-06 08:12:41.201 2931 ERROR nova.compute.manager "
            b"[req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10 - - - - -] boom")
    p = ParseStage(prompt)
    msg = RawMessage("raw", 0, 0, b"h|/var/log/nova/nova-compute.log", line,
                     {"host": b"h", "path": b"/var/log/nova/nova-compute.log", "offset": b"0"})
    assert not p.process([msg], 100.0).events                  # still open: a traceback may follow
    assert not p.tick(102.0).events                            # not idle long enough
    out = p.tick(105.5)
    assert len(out.events) == 1
    doc = json.loads(out.events[0][1])
    assert doc["openstack"]["request_id"] == "req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10"
    assert out.events[0][0] == b"req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10"


def test_garbage_goes_to_dead_letters_and_huge_records_are_capped(prompt):
    p = ParseStage(prompt)
    msgs = [RawMessage("raw", 0, 0, b"h|/x.log", b"\x00\xff\xfe garbage", {"host": b"h", "path": b"/x.log"}),
            RawMessage("raw", 0, 1, b"h|/x.log", b"2017-06-06 08:12:41.201 1 ERROR nova.x [-] "
                       + b"A" * (3 * MAX_DOC_BYTES), {"host": b"h", "path": b"/x.log"})]
    out = p.process(msgs, 0.0)
    out.extend(p.tick(1e9))
    assert len(out.deadletters) == 1 and out.deadletters[0]["reason"]
    assert "garbage" in out.deadletters[0]["raw"]
    assert len(out.events) == 1 and len(out.events[0][1]) <= MAX_DOC_BYTES


def test_event_ids_are_deterministic():
    from detectors.model import Event
    a = Event(host="h", file_path="/f", offset=10, message="m")
    b = Event(host="h", file_path="/f", offset=10, message="other")
    c = Event(host="h", file_path="/f", offset=11, message="m")
    assert event_id(a) == event_id(b) != event_id(c)


def test_filebeat_envelopes_without_key_or_headers_route_to_their_host_and_flush_when_idle(prompt):
    line = ("2017-06-06 09:30:29.364 665097 INFO nova.compute.manager "
            "[req-c5016b48-399b-44f8-adea-a86421f1e129 - - - - -] Took 0.72 seconds to deallocate network")
    docs = [{"message": line, "host": {"name": h}, "log": {"file": {"path": "/var/log/nova/nova-compute.log"},
                                                          "offset": 100 * i}}
            for i, h in enumerate(["cmp1", "cmp2"])]
    p = ParseStage(prompt)
    msgs = [RawMessage("raw", 0, i, None, json.dumps(d).encode()) for i, d in enumerate(docs)]
    assert not p.process(msgs, 10.0).events           # records stay open until idle
    out = p.tick(20.0)
    got = sorted((json.loads(v)["host"]["name"], json.loads(v)["log"]["offset"]) for _k, v, _up in out.events)
    assert got == [("cmp1", 0), ("cmp2", 100)]


def test_rotated_file_records_get_new_ids(prompt):
    line = b"2017-06-06 09:30:29.364 1 INFO nova.compute.manager [-] same offset, other file"
    p = ParseStage(prompt)

    def msg(i, inode):
        return RawMessage("raw", 0, i, b"h|/var/log/nova/nova-compute.log", line,
                          {"host": b"h", "path": b"/var/log/nova/nova-compute.log", "offset": b"0",
                           "inode": inode})
    out = p.process([msg(0, b"2049:11")], 0.0)
    out.extend(p.tick(1e9))
    out.extend(p.process([msg(1, b"2049:12")], 0.0))
    out.extend(p.tick(2e9))
    ids = [json.loads(v)["_id"] for _k, v, _up in out.events]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_correlate_stage_gives_incidents_their_root_cause(settings):
    out, incidents = run(settings, raw_messages([FIXTURES / "seeds" / "S20"]))
    c = CorrelateStage(settings)
    docs = c.process(events_topic(out), 0.0).incidents + c.tick(1e12).incidents
    # the window closes when time moves on; flush what is left the way a quiet stream would
    docs += c.partition("events/0").engine.flush().incidents
    final = {}
    for d in docs:
        final[d["id"]] = d
    inc = next(d for d in final.values() if d["rule"] == "retry_exhausted.volume_not_created")
    assert inc["details"]["root_cause"]["component"] == "cinder-volume"


def _raw(host: str, path: str, line: str, offset: int, n: int) -> RawMessage:
    headers = {"host": host.encode(), "path": path.encode(), "offset": str(offset).encode()}
    return RawMessage("raw", 0, n, f"{host}|{path}".encode(), line.encode(), headers)


def test_an_idle_file_on_one_host_does_not_complete_another_hosts_record_of_the_same_path(prompt):
    """/var/log/nova/nova-compute.log is the same path on every compute node:
    compute-1 going idle must not cut compute-2's open traceback in two."""
    path = "/var/log/nova/nova-compute.log"
    rid = "req-7b1c2a40-5d1e-4f7a-9c55-1e2d3f4a5b6c"
    t = "2017-06-06 09:20:01.118"
    stage = ParseStage(prompt)
    out = stage.process([
        _raw("compute-1", path, f"{t} 11 INFO nova.compute.manager [{rid} - - - - -] one", 0, 0),
        _raw("compute-2", path, f"{t} 22 ERROR nova.compute.manager [{rid} - - - - -] boom", 0, 1),
        _raw("compute-2", path, f"{t} 22 ERROR nova.compute.manager Traceback (most recent call last):", 70, 2),
    ], now=0.0)
    # compute-1 falls idle (its stream is older than idle_flush); compute-2 is still writing
    stage.partition("raw/0").parsers["UTC"].activity[("compute-2", path)] = 4.0
    out.extend(stage.tick(6.0))
    out.extend(stage.process([
        _raw("compute-2", path, f"{t} 22 ERROR nova.compute.manager ValueError: tail", 140, 3)], now=6.5))
    out.extend(stage.tick(1e9))
    docs = [json.loads(v) for _k, v, _up in out.events]
    boom = [d for d in docs if d["host"]["name"] == "compute-2"]
    assert len(boom) == 1, [d["message"] for d in boom]
    assert boom[0]["openstack"]["request_id"] == rid
    assert boom[0]["error"]["stack_trace"].endswith("ValueError: tail")


def test_a_routed_event_the_stage_cannot_place_is_a_dead_letter_with_its_reason(prompt):
    """A routed copy with a key that names no fleet detector (or none at all) loses
    nothing and stops nothing: it goes to the dead letters, the rest goes on."""
    from pipeline.streaming.stage import FLEET_HEADER, UPSTREAM_HEADER, fleet_record_key

    out = ParseStage(prompt).process(raw_messages([SAMPLES / "compute-2"]), 0.0)
    out.extend(ParseStage(prompt).tick(1e9))
    good = events_topic(out)
    value = next(m.value for m in good if FLEET_HEADER not in m.headers and m.key)
    bad = [RawMessage("events", 0, 10_000 + i, key, value, {UPSTREAM_HEADER: b"raw/0", FLEET_HEADER: b"x"})
           for i, key in enumerate([fleet_record_key("no_such_detector", "k"), b"no-separator"])]
    corr = CorrelateStage(prompt)
    got = corr.process(good + bad, 0.0)
    reasons = [d["reason"] for d in got.deadletters]
    assert len(reasons) == 2 and all(r.startswith("bad routed event on events/0@1000") for r in reasons)
    assert "no fleet detector 'no_such_detector'" in reasons[0]
    assert corr.stats["bad_records"] == 2 and corr.stats["records_in"] == len(good) + 2
