"""service_silent watches only streams that log on a schedule (issue 15).

Real fleets first (tests/fixtures/corpus, sources in its README.md): an idle
controller whose API logs only when called gives nothing; a compute that
stops its periodic audit gives exactly one incident. Then the rules on
events built directly (support.ev) from the real periodic templates.
"""
from __future__ import annotations

import json

import pytest

from support import CORPUS, analyze_paths, at, by_time, engine as full_engine, ev, parse_file
from detectors import Engine
from detectors.service_silent import ServiceSilent, ServiceSilentConfig, is_periodic
from pipeline.settings import DetectorSettings

IDLE = CORPUS / "idle-controller"
STOPS = CORPUS / "compute-stops"
NODE = "compute-1"
AUDIT = f"Auditing locally available compute resources for {NODE} (node: {NODE})"


def run(events, det=None, *, end=None):
    """Every incident document the detector emits in an engine (and its detector)."""
    det = det or ServiceSilent()
    engine = Engine([det])
    docs = []
    for e in events:
        docs.extend(engine.feed(e).incidents)
    if end is not None:
        docs.extend(engine.advance(end).incidents)
    docs.extend(engine.flush().incidents)
    return docs, det


def latest(docs):
    return list({d["id"]: d for d in docs}.values())


# --- synthetic streams from the real templates -----------------------------------------------
def periodic_run(t, host="cmp1", service="nova-compute"):
    """One run of nova-compute's periodic tasks (oslo.service DEBUG, then the audit), over 3 s."""
    return [
        ev(at(t), "DEBUG", "oslo_service.periodic_task",
           "Running periodic task ComputeManager.update_available_resource", host=host, service=service),
        ev(at(t + 0.2), "DEBUG", "nova.compute.resource_tracker", AUDIT, host=host, service=service),
        ev(at(t + 2.9), "DEBUG", "oslo_service.periodic_task",
           "Running periodic task ComputeManager._heal_instance_info_cache", host=host, service=service),
    ]


def compute(times, host="cmp1"):
    return [e for t in times for e in periodic_run(t, host)]


def api_call(t, host="ctl1", service="glance-api", status=200):
    return ev(at(t), "INFO", "eventlet.wsgi.server",
              f'10.0.0.5 - - [06/Jun/2017 09:00:00] "GET /v2/images HTTP/1.1" {status} 1893 0.120774',
              host=host, service=service, http_method="GET", url_path="/v2/images", status_code=status,
              source_ip="10.0.0.5")


def fleet_noise(start, stop, every=10.0):
    """Another stream that keeps logging (moves the event watermark)."""
    n = int((stop - start) // every)
    return [ev(at(start + i * every), "INFO", "nova.scheduler.host_manager",
               "Successfully synced instances from host 'cmp9'.", host="ctl1", service="nova-scheduler")
            for i in range(n)]


def steps(start, stop, every):
    n = int((stop - start) // every)
    return [start + i * every for i in range(n)]


# --- real fleets -------------------------------------------------------------------------------
def test_idle_controller_gives_no_incident():
    """Kilo controller1 (os-log-merger): nova-api polled every ten minutes, then its client
    stops and it is quiet for an hour while nova-compute's audit and nova-scheduler go on.
    The detector before issue 15 fired service_silent on nova-api here."""
    assert analyze_paths(IDLE, engine=full_engine()) == []
    det = ServiceSilent()
    assert analyze_paths(IDLE, engine=Engine([det])) == []
    watched = {k[1]: det.scheduled(s) for k, s in det.streams.items()}
    assert watched == {"nova-compute": True, "nova-api": False, "nova-scheduler": False}
    cmp = det.streams.get(("controller1", "nova-compute"))
    assert 59 < cmp.interval < 63                        # the audit runs every ~61 s


def test_compute_that_stops_its_periodic_audit_gives_exactly_one_service_silent(incident_validator):
    """hotsos compute4: nova-compute's DEBUG periodic tasks until 00:00:00.447, the neutron
    agents on the same host log on: exactly one incident, nothing else."""
    (inc,) = analyze_paths(STOPS, engine=full_engine())
    assert (inc["type"], inc["rule"], inc["status"], inc["host"], inc["service"]) == (
        "service_silent", "service_silent.stream", "open", "compute4", "nova-compute")
    d = inc["details"]
    assert d["last_record_at"] == "2022-02-10T00:00:00.447+00:00"
    assert d["threshold_seconds"] == 300 and 300 < d["silent_seconds"] <= 320
    assert 20 <= d["usual_gap_seconds"] <= 62 and d["history_gaps"] >= 10
    assert "logs on a schedule" in inc["summary"] and "S15" in inc["probable_cause"]
    assert not [e.message for e in incident_validator.iter_errors(inc)]


def test_the_neutron_agents_in_the_fixture_have_a_schedule_too():
    det = ServiceSilent()
    analyze_paths(STOPS, engine=Engine([det]))
    intervals = {k[1]: round(s.interval) for k, s in det.streams.items() if det.scheduled(s)}
    assert intervals["neutron-dhcp-agent"] == 60         # ProcessMonitor, every 60 s
    assert 30 <= intervals["neutron-l3-agent"] <= 50     # periodic_sync_routers_task
    assert set(intervals) == {"nova-compute", "neutron-dhcp-agent", "neutron-l3-agent"}


@pytest.mark.parametrize("path,expected", [
    (IDLE / "controller1" / "nova-compute.log", True),          # Kilo INFO audit records
    (STOPS / "compute4" / "nova-compute.log", True),            # oslo_service.periodic_task DEBUG
    (STOPS / "compute4" / "neutron-dhcp-agent.log", True),      # Lock "_check_child_processes"
    (STOPS / "compute4" / "neutron-l3-agent.log", True),        # Running periodic task L3NAT...
    (IDLE / "controller1" / "nova-api.log", False),             # requests only
    (IDLE / "controller1" / "nova-scheduler.log", False),       # driven by the computes' RPC
])
def test_periodic_records_of_real_logs(path, expected):
    events = parse_file(path, host="h", service="s")
    assert any(is_periodic(e) for e in events) is expected


@pytest.mark.parametrize("message,expected", [
    ("Running periodic task VolumeManager._report_driver_status", True),
    ("Updating volume stats", True),                                      # cinder drivers
    ("Notifying Schedulers of capabilities ...", True),                   # cinder.manager
    ("Report state task started", True),                                  # neutron agents <= Liberty
    ("Agent rpc_loop - iteration:4211 started", True),                    # neutron OVS agent
    ("Agent has just been revived. Doing a full sync.", True),
    ("Final resource view: name=cmp1 phys_ram=5662MB used_ram=512MB", True),
    ("Compute_service record updated for cmp1:cmp1", True),
    ("Skipping periodic task _periodic_update_dns because its interval is negative", False),
    ('10.0.0.5 "GET /v2.1/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.12', False),
    ("Error during ComputeManager.update_available_resource: boom", False),
])
def test_periodic_templates(message, expected):
    assert is_periodic(ev(at(0), "DEBUG", "x", message)) is expected


# --- the rules -----------------------------------------------------------------------------------
def test_a_request_driven_service_that_goes_quiet_is_not_an_incident():
    """An image API polled every ten minutes for five hours, then its client stops; other
    streams log for five more hours."""
    api = [api_call(t) for t in steps(0, 5 * 3600, 600)]
    docs, det = run(by_time(api, fleet_noise(0, 10 * 3600, every=30)))
    assert docs == [] and not det.scheduled(det.streams.get(("ctl1", "glance-api")))


def test_a_scheduled_stream_that_stops_fires_and_resolves_when_it_speaks_again(incident_validator):
    events = by_time(compute(steps(0, 1200, 60)), compute([3000]), fleet_noise(0, 3100))
    docs, _ = run(events)
    opened, resolved = docs
    assert opened["id"] == resolved["id"] and (opened["status"], resolved["status"]) == ("open", "resolved")
    d = opened["details"]
    assert d["usual_gap_seconds"] == 60 and d["threshold_seconds"] == 300 and d["history_gaps"] == 19
    assert 300 < d["silent_seconds"] <= 310
    assert resolved["details"]["silent_seconds"] == pytest.approx(3000 - 1142.9, abs=0.01)
    for doc in docs:
        assert not [e.message for e in incident_validator.iter_errors(doc)]


def test_the_threshold_follows_the_learned_interval():
    """A ten-minute schedule: quiet for 40 min is normal, for 60 min it is not."""
    events = by_time(compute(steps(0, 6 * 3600, 600)), fleet_noise(0, 6 * 3600 - 600 + 2400, every=60))
    assert run(events)[0] == []
    events = by_time(compute(steps(0, 6 * 3600, 600)), fleet_noise(0, 6 * 3600 - 600 + 3600, every=60))
    (inc,) = run(events)[0]
    assert inc["details"]["usual_gap_seconds"] == 600 and inc["details"]["threshold_seconds"] == 3000


@pytest.mark.parametrize("runs,fires", [(10, False), (11, True)])
def test_learning_period_is_min_intervals_between_periodic_runs(runs, fires):
    """Ten intervals (eleven runs) must have been seen before silence is judged."""
    events = by_time(compute(steps(0, 60 * runs, 60)), fleet_noise(0, 60 * runs + 3600))
    docs, _ = run(events)
    assert bool(docs) is fires


def test_records_without_periodic_ones_do_not_teach_a_schedule():
    """A compute that logs steadily (every 30 s) but no periodic record is not watched."""
    claims = [ev(at(t), "INFO", "nova.compute.claims", "Claim successful on node cmp1", host="cmp1")
              for t in steps(0, 3600, 30)]
    docs, det = run(by_time(claims, fleet_noise(0, 7200)))
    assert docs == [] and det.streams.get(("cmp1", "nova-compute")).n == 0


def test_irregular_periodic_records_are_no_schedule():
    """Periodic records at wildly varying intervals (from 20 s to 3 h) are not a schedule."""
    gaps = [20, 45, 3000, 90, 10000, 25, 700, 5000, 33, 1500, 240, 8000, 60, 400]
    times = [sum(gaps[:i]) for i in range(len(gaps) + 1)]
    docs, det = run(by_time(compute(times), fleet_noise(0, times[-1] + 20000, every=60)))
    s = det.streams.get(("cmp1", "nova-compute"))
    assert s.n == len(gaps) and not s.regular and docs == []


def test_records_of_one_run_are_one_tick():
    """A run's records within tick_gap count once: the interval is the period, not the spread."""
    _, det = run(by_time(compute(steps(0, 1200, 60))))
    s = det.streams.get(("cmp1", "nova-compute"))
    assert s.n == 19 and set(s.gaps) == {60.0}


def test_the_silence_and_a_fleet_wide_gap_are_not_learned():
    events = by_time(compute(steps(0, 1200, 60)), fleet_noise(0, 2000),
                     compute(steps(2000, 2600, 60)),                        # after the silence
                     compute(steps(9000, 9600, 60)), fleet_noise(9000, 9700))   # after a fleet gap
    _, det = run(events)
    s = det.streams.get(("cmp1", "nova-compute"))
    assert set(s.gaps) == {60.0} and s.n == 19 + 9 + 9


def test_no_silence_when_every_stream_ends_together():
    events = by_time(compute(steps(0, 1800, 60)), fleet_noise(0, 1800))
    assert run(events, end=at(86400).timestamp())[0] == []


def test_state_is_bounded():
    det = ServiceSilent(ServiceSilentConfig(max_streams=50))
    events = [e for i in range(200) for e in periodic_run(i, host=f"cmp{i}")]
    events += compute(steps(300, 300 + 60 * 100, 60), host="cmpX")
    run(events, det)
    assert len(det.streams) <= 50
    assert all(len(s.gaps) <= 32 for s in det.streams.values())


def test_settings_reach_the_detector():
    config = DetectorSettings(service_silent_learn_intervals=3, service_silent_factor=4.0,
                              service_silent_floor=120.0).config().service_silent
    assert (config.min_intervals, config.factor, config.floor) == (3, 4.0, 120.0)
    events = by_time(compute(steps(0, 240, 60)), fleet_noise(0, 1000))
    assert run(events)[0] == []                                    # default: still learning
    (inc,) = run(events, ServiceSilent(config))[0]
    assert inc["details"]["threshold_seconds"] == 240              # 4 x 60 s


# --- state ---------------------------------------------------------------------------------------
def _events_of(scenario):
    """The events of a scenario folder as analyze reads it (host = first directory level)."""
    from pathlib import Path

    from pipeline.sources.files import discover

    out = []
    for lf in discover([str(scenario)]):
        out.extend(parse_file(Path(lf.path), host=lf.source.host, service=lf.source.service))
    return sorted(out, key=lambda e: e.ts or 0)


def _feed(det, events):
    return [d for e in events for d in det.feed(e)]


def test_snapshot_restore_round_trip():
    """Cut the real compute-stops fleet while learning, once scheduled and while silent:
    a detector restored from the JSON of the first part goes on exactly like the whole."""
    events = _events_of(STOPS)
    whole_det = ServiceSilent()
    whole = _feed(whole_det, events)
    assert [d["status"] for d in whole] == ["open"]
    final = json.loads(json.dumps(whole_det.snapshot()))
    silent = next(i for i, e in enumerate(events) if e.timestamp >= "2022-02-10T00:05:30")
    for cut in (len(events) // 5, len(events) // 2, silent):
        first = ServiceSilent()
        docs = _feed(first, events[:cut])
        second = ServiceSilent()
        second.restore(json.loads(json.dumps(first.snapshot())))
        docs += _feed(second, events[cut:])
        assert docs == whole, cut
        assert json.loads(json.dumps(second.snapshot())) == final, cut


def test_a_snapshot_of_the_format_before_schedules_restores_unlearned():
    """Worker state written before issue 15 (streams as lists of gaps between any records):
    the streams come back, their schedules are learned afresh."""
    old = {"incidents": [], "wm": 1000.0, "wm_time": "2017-06-06T09:16:40.000+00:00",
           "resume_ts": None, "last_check": 1000.0,
           "streams": [[["cmp1", "nova-compute"], 990.0, {"@timestamp": "2017-06-06T09:16:30.000+00:00",
                        "host": "cmp1", "service": "nova-compute", "level": "INFO", "logger": "x",
                        "request_id": None, "message": "m"}, [30.0] * 32, 40, 990.0]]}
    det = ServiceSilent()
    det.restore(old)
    s = det.streams.get(("cmp1", "nova-compute"))
    assert s.last_ts == 990.0 and s.n == 0 and not det.scheduled(s)
