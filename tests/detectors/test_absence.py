"""Absence detectors: request_stalled and service_silent.

Synthetic streams are built as events (support.ev, no parser) from real
templates (nova access lines, compute claims and resource-tracker lines, the
API's DEBUG action line). The rule under test everywhere: absence is judged
only against the event watermark other streams move on, never at the end of
input.
"""
from __future__ import annotations

import json
from functools import partial

import pytest

from support import engine as support_engine, CORPUS, FIXTURES, SAMPLES, T0, analyze_paths, at, by_time, ev
from detectors import Engine
from detectors.request_stalled import RequestStalled
from detectors.service_silent import ServiceSilent
from detectors.topology import accepted_operation
from detectors import registry

REQ_A = "req-1a3e0f52-7d3c-4e0b-9a77-8f2f1c0b6e21"
REQ_B = "req-0bd8e4b4-6989-4c34-a623-20d2bff98816"
REQ_C = "req-9d2e34e0-ff36-45c4-94c9-218f9c5e5bf6"
INSTANCE = "7b1c2a40-5d1e-4f7a-9c55-1e2d3f4a5b6c"

api = partial(ev, host="controller", service="nova-api")
conductor = partial(ev, host="controller", service="nova-conductor")
compute = partial(ev, host="compute-1", service="nova-compute")


def access(t, req, method="POST", path="/v2.1/servers", status=202, **fields):
    return api(t, "INFO", "nova.osapi_compute.wsgi.server",
               f'10.12.27.29 "{method} {path} HTTP/1.1" status: {status} len: 1221 time: 0.8207741',
               req=req, http_method=method, url_path=path, status_code=status, source_ip="10.12.27.29", **fields)


def claim(t, req=REQ_A):
    return compute(t, "INFO", "nova.compute.claims", "Attempting claim: memory 2048 MB, disk 20 GB, vcpus 2 CPU",
                   req=req, instance=INSTANCE)


def audit(t, node="compute-1"):
    return compute(t, "INFO", "nova.compute.resource_tracker",
                   f"Auditing locally available compute resources for node {node}")


def api_noise(t):
    return api(t, "INFO", "nova.osapi_compute.wsgi.server",
               '10.12.27.29 "GET /v2.1/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.1207741',
               req=REQ_B, http_method="GET", url_path="/v2.1/servers/detail", status_code=200,
               source_ip="10.12.27.29")


def run(events, detectors, *, end=None):
    """Feed an engine; ``end``: then advance the timer far beyond the input."""
    engine = Engine(detectors)
    docs = []
    for e in events:
        docs.extend(engine.feed(e).incidents)
    if end is not None:
        docs.extend(engine.advance(end).incidents)
    for det in detectors:
        docs.extend(det.flush())
    return docs


def latest(docs):
    return list({d["id"]: d for d in docs}.values())


def compute_periodic(start, stop, every=20.0, node="compute-1"):
    return [audit(at(s), node) for s in range_(start, stop, every)]


def earlier_boot():
    """An earlier boot the compute picked up: these workers handle this API's requests."""
    return {"api": [access(at(-300), REQ_C)], "compute": [claim(at(-299), REQ_C)]}


def range_(start, stop, step):
    t = start
    while t < stop:
        yield t
        t += step


# --- request_stalled ------------------------------------------------------------
def test_accepted_boot_with_no_follow_up_while_others_log_is_request_stalled(incident_validator):
    b = earlier_boot()
    events = by_time(b["api"] + [access(at(0), REQ_A)],
                     compute_periodic(-600, 400) + b["compute"])
    (inc,) = latest(run(events, [RequestStalled()]))
    assert (inc["type"], inc["rule"], inc["status"]) == ("request_stalled", "request_stalled.nova", "open")
    assert inc["request_ids"] == [REQ_A]
    assert inc["details"]["operations"] == {"create server": 1}
    assert inc["details"]["waited_seconds"] >= 120
    assert "rabbitmqctl list_queues" in inc["remediation"] and "conductor" in inc["probable_cause"]
    assert inc["evidence"][0]["message"].startswith('10.12.27.29 "POST /v2.1/servers')
    assert not [e.message for e in incident_validator.iter_errors(inc)]


@pytest.mark.parametrize("delay", [2.0, -0.2])        # after, or before the access line is written
def test_no_stall_when_compute_picks_the_request_up(delay):
    b = earlier_boot()
    events = by_time(b["api"] + [access(at(0), REQ_A)],
                     compute_periodic(-600, 400) + b["compute"] + [claim(at(delay))])
    assert run(events, [RequestStalled()]) == []


def test_no_stall_when_the_conductor_logs_the_request():
    picked_up = conductor(at(1), "WARNING", "nova.scheduler.utils",
                          "Failed to compute_task_build_instances: No valid host was found.", req=REQ_A)
    b = earlier_boot()
    events = by_time(b["api"] + [access(at(0), REQ_A)],
                     [picked_up],
                     compute_periodic(-600, 400) + b["compute"])
    assert run(events, [RequestStalled()]) == []


def test_no_stall_when_the_file_just_ends():
    """The logs end right after the 202 (the workers' too): a timer far in
    the future and the end of input judge nothing."""
    b = earlier_boot()
    events = by_time(b["api"] + [api_noise(at(-30)), access(at(0), REQ_A), api_noise(at(30))],
                     compute_periodic(-600, 40) + b["compute"])
    det = RequestStalled()
    assert run(events, [det], end=T0.timestamp() + 86400) == []
    assert len(det.pending) == 0                         # flush dropped it


def test_no_stall_judged_without_any_worker_logs_in_the_input():
    """Only nova-api logs (other requests keep time moving): the workers'
    absence is not evidence, their logs are simply not there."""
    noise = [api_noise(at(s)) for s in range_(10, 600, 10)]
    events = by_time([access(at(0), REQ_A)] + noise)
    assert run(events, [RequestStalled()]) == []


def test_no_stall_judged_when_the_workers_in_the_input_never_handled_this_api():
    """Compute logs of another cloud (or of hosts the scheduler never picks):
    they log, but no accepted request of this API was ever picked up."""
    events = by_time([access(at(0), REQ_A)],
                     compute_periodic(-600, 400))
    assert run(events, [RequestStalled()]) == []


def test_live_migration_named_by_the_debug_action_line_is_tracked():
    path = f"/v2.1/servers/{INSTANCE}/action"
    debug = api(at(-0.1), "DEBUG", "nova.api.openstack.wsgi",
                "Action: 'action', calling method: <bound method MigrateServerController._migrate_live of "
                "<nova.api.openstack.compute.migrate_server.MigrateServerController object at 0x7f>>, "
                'body: {"os-migrateLive": {"block_migration": "auto", "host": null}}', req=REQ_A)
    migrate = access(at(0), REQ_A, path=path, resources={"instance": [INSTANCE]})
    b = earlier_boot()
    events = by_time(b["api"] + [debug, migrate],
                     compute_periodic(-600, 400) + b["compute"])
    (inc,) = latest(run(events, [RequestStalled()]))
    assert inc["details"]["operations"] == {"live-migrate server": 1}
    assert inc["resources"]["instance"] == [INSTANCE]
    # without the action line an action is not judged (reboot, lock, ... may log nothing elsewhere)
    events = by_time(b["api"] + [migrate],
                     compute_periodic(-600, 400) + b["compute"])
    assert run(events, [RequestStalled()]) == []


def test_accepted_operations():
    assert accepted_operation("POST", "/v2/276eb659fd4b44859849c773dcfdf138/servers", 202)[:2] == (
        "nova", "create server")
    assert accepted_operation("POST", "/v2.1/servers", 400) is None
    assert accepted_operation("GET", "/v2.1/servers", 202) is None
    assert accepted_operation("POST", f"/v2.1/servers/{INSTANCE}/os-volume_attachments", 200) == (
        "nova", "attach volume", INSTANCE)
    assert accepted_operation("POST", "/v3/f19126d9035d4209b363386e8e267129/volumes", 202)[:2] == (
        "cinder", "create volume")
    assert accepted_operation("POST", f"/v3/f19126d9035d4209b363386e8e267129/volumes/{INSTANCE}/action",
                              202, "os-attach") == ("cinder", "attach volume", INSTANCE)


def test_many_stalled_requests_are_one_incident_and_a_late_pickup_is_noted():
    reqs = [f"req-1a3e0f52-7d3c-4e0b-9a77-8f2f1c0b6e{i:02d}" for i in range(5)]
    b = earlier_boot()
    accepted = [access(at(10 * i), r) for i, r in enumerate(reqs)]
    events = by_time(b["api"] + accepted,
                     compute_periodic(-600, 600) + b["compute"] + [claim(at(500), reqs[0])])
    (inc,) = latest(run(events, [RequestStalled()]))
    assert inc["count"] == 5 and inc["request_ids"] == reqs
    assert inc["details"]["picked_up_late"] == 1


def test_request_stalled_snapshot_restore_round_trip():
    events = by_time([access(at(0), REQ_A), access(at(50), REQ_B)],
                     compute_periodic(-600, 400) + [claim(at(60), REQ_B)])
    whole = run(events, [RequestStalled()])
    first = RequestStalled()
    docs = []
    half = len(events) // 2
    for e in events[:half]:
        docs.extend(first.feed(e))
    second = RequestStalled()
    second.restore(json.loads(json.dumps(first.snapshot())))
    for e in events[half:]:
        docs.extend(second.feed(e))
    assert docs == whole and len(latest(docs)) == 1


# --- service_silent -------------------------------------------------------------
def silent_compute(stop_at=1200, resume_at=None):
    events = compute_periodic(0, stop_at, every=30)
    if resume_at is not None:
        events += compute_periodic(resume_at, resume_at + 120, every=30)
    return events


def controller_noise(start, stop, every=10):
    return [api_noise(at(s)) for s in range_(start, stop, every)]


def test_a_silent_compute_fires_and_resolves_when_it_speaks_again(incident_validator):
    events = by_time(silent_compute(1200, resume_at=2400),
                     controller_noise(0, 2600))
    docs = run(events, [ServiceSilent()])
    opened, resolved = docs
    assert (opened["type"], opened["status"], opened["host"], opened["service"]) == (
        "service_silent", "open", "compute-1", "nova-compute")
    assert opened["id"] == resolved["id"] and resolved["status"] == "resolved"
    d = opened["details"]
    assert d["usual_gap_seconds"] == 30 and d["threshold_seconds"] == 300
    assert 300 < d["silent_seconds"] <= 320
    assert d["last_record_at"].startswith("2017-06-06T09:19:30")
    assert resolved["details"]["silent_seconds"] == pytest.approx(1230, abs=1)
    assert resolved["evidence"][-1]["message"].startswith("Auditing locally available")
    assert "systemctl status nova-compute" in opened["remediation"] and "S15" in opened["probable_cause"]
    for doc in docs:
        assert not [e.message for e in incident_validator.iter_errors(doc)]


def test_a_late_record_withdraws_a_silence_judged_too_early():
    """compute-1's records for 1200..1500 s arrive after the others had moved on (its
    shipper lagged past the allowed lateness): the silence was judged at ~1530 s, then a
    late record at 1230 s shows the stream was logging -- the incident resolves as
    withdrawn, claiming no silence (issue: a late record can resolve an early absence)."""
    on_time = by_time(silent_compute(1200), controller_noise(0, 2000))
    late = compute_periodic(1230, 1500, every=30)
    docs = run(on_time + late, [ServiceSilent()])
    opened, resolved = docs[0], docs[-1]
    assert opened["status"] == "open" and resolved["id"] == opened["id"]
    assert resolved["status"] == "resolved" and resolved["details"]["judged_early"] is True
    assert resolved["summary"].startswith("withdrawn: a late record shows nova-compute on compute-1")
    assert resolved["title"] == "nova-compute on compute-1 was not silent: its records arrived late"
    assert resolved["details"]["silent_seconds"] <= resolved["details"]["threshold_seconds"]


def test_a_stream_that_never_pauses_has_a_history_too():
    busy = [audit(at(s)) for s in range_(0, 600, 0.5)]
    events = by_time(busy, controller_noise(0, 1000))
    (inc,) = run(events, [ServiceSilent()])
    assert inc["details"]["threshold_seconds"] == 300 and inc["details"]["history_gaps"] >= 20


def test_no_silence_when_the_file_just_ends():
    """One stream, its file ends: nothing, whatever the timer says."""
    events = by_time(silent_compute(1200))
    assert run(events, [ServiceSilent()], end=T0.timestamp() + 86400) == []


def test_no_silence_when_every_stream_ends_together():
    events = by_time(silent_compute(1200),
                     controller_noise(0, 1200))
    assert run(events, [ServiceSilent()], end=T0.timestamp() + 86400) == []


def test_a_fleet_wide_gap_is_no_evidence():
    """Everything stops for an hour, then only the controller speaks again
    for four minutes: shorter than the threshold since the fleet resumed."""
    events = by_time(silent_compute(1200),
                     controller_noise(0, 1200) + controller_noise(4800, 5040))
    assert run(events, [ServiceSilent()]) == []


def test_no_silence_before_the_stream_has_a_history():
    events = by_time(silent_compute(150),        # 5 records only
                     controller_noise(0, 2600))
    assert run(events, [ServiceSilent()]) == []


def test_a_quiet_stream_learns_its_own_rhythm():
    """A service that logs every 10 minutes is not silent after 20."""
    events = by_time(compute_periodic(0, 36000, every=600),
                     controller_noise(0, 37200, every=30))
    assert run(events, [ServiceSilent()]) == []


def test_service_silent_snapshot_restore_round_trip():
    events = by_time(silent_compute(1200, resume_at=2400),
                     controller_noise(0, 2600))
    whole = run(events, [ServiceSilent()])
    for cut in (len(events) // 3, 2 * len(events) // 3):     # before and while silent
        first, docs = ServiceSilent(), []
        for e in events[:cut]:
            docs.extend(first.feed(e))
        second = ServiceSilent()
        second.restore(json.loads(json.dumps(first.snapshot())))
        for e in events[cut:]:
            docs.extend(second.feed(e))
        assert docs == whole


# --- healthy input ----------------------------------------------------------------
def _absence(incidents):
    return [i for i in incidents if i["type"] in ("request_stalled", "service_silent")]


def test_healthy_corpus_samples_and_seeds_have_no_absence_incident():
    engine = lambda: support_engine()  # noqa: E731
    assert _absence(analyze_paths(*sorted(CORPUS.glob("*.log")),
                                  CORPUS / "elastic-recheck_logstash_oslofmt_events_2013.jsonl",
                                  engine=engine())) == []
    assert _absence(analyze_paths(SAMPLES, engine=engine())) == []
    for case in sorted(p for p in (FIXTURES / "seeds").iterdir() if p.is_dir()):
        assert _absence(analyze_paths(case, engine=engine())) == [], case.name


def test_scopes_place_them_where_their_state_lives():
    assert any(isinstance(d, ServiceSilent) for d in registry.build("host"))
    assert any(isinstance(d, RequestStalled) for d in registry.build("request"))
