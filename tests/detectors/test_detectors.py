"""Detectors on real lines: each seed case yields its incident, healthy traffic none;
their behaviour on synthetic events (support.ev, no parser)."""
from __future__ import annotations

from functools import partial

import pytest

from support import engine as support_engine, CORPUS, FIXTURES, SAMPLES, analyze_paths, at, by_time, ev, parse_text
from detectors import Engine
from detectors.auth_failures import AuthFailures, AuthFailuresConfig
from detectors.disk_full import DiskFull
from detectors.retry_exhaustion import RetryExhaustion

SEEDS = FIXTURES / "seeds"


def these() -> Engine:
    """The three detectors this module tests, as analyze runs them."""
    return Engine([RetryExhaustion(), AuthFailures(), DiskFull()])


def _only(incidents, **match):
    hits = [i for i in incidents if all(i[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, [(i["rule"], i["host"]) for i in incidents])
    return hits[0]


# --- golden: each seed case with a signature of these detectors ---------------
def test_s20_volume_not_created_is_retry_exhaustion_with_its_evidence():
    (inc,) = analyze_paths(SEEDS / "S20", engine=these())
    assert (inc["type"], inc["rule"], inc["severity"]) == (
        "retry_exhausted", "retry_exhausted.volume_not_created", "error")
    assert (inc["host"], inc["service"]) == ("compute", "nova-compute")
    assert inc["resources"]["volume"] == ["dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"]
    assert inc["resources"]["instance"] == ["30e8a024-d1c0-4a64-aae7-a830e8c6be94"]
    assert inc["details"] == {"seconds": 189, "attempts": 61, "volume_status": "downloading"}
    assert inc["request_ids"] == ["req-c5016b48-399b-44f8-adea-a86421f1e129"]
    assert "block_device_allocate_retries_interval" in inc["remediation"]
    messages = [e["message"] for e in inc["evidence"]]
    assert any("Failed to delete volume" in m for m in messages)      # same request, before
    assert any("Build of insta" in m for m in messages)               # same request, after
    assert inc["count"] == 1


def test_s04_qemu_img_enospc_is_disk_full_on_instances_filesystem():
    (inc,) = analyze_paths(SEEDS / "S04", engine=these())
    assert (inc["type"], inc["severity"], inc["host"]) == ("disk_full", "critical", "compute")
    assert inc["details"]["filesystem"] == "/var/lib/nova/instances"
    assert inc["resources"]["path"] == [
        "/var/lib/nova/instances/_base/f5797db00aacfbe240bbfb0f53c2da80e4be6dfc.converted"]
    assert inc["resources"]["instance"] == ["2c5a8e62-62d0-430d-8747-795350bb6939"]
    assert "_base" in inc["remediation"]


def test_s10_image_not_authorized_is_auth_failure():
    (inc,) = analyze_paths(SEEDS / "S10", engine=these())
    assert (inc["type"], inc["rule"]) == ("auth_failure", "auth_failure.image")
    assert inc["resources"]["image"] == ["dcd85799-92f6-4294-91ec-48670a218651"]
    assert "auth_strategy=keystone" in inc["remediation"]


def test_s16_mysql_access_denied_is_auth_failure():
    (inc,) = analyze_paths(SEEDS / "S16", engine=these())
    assert (inc["rule"], inc["severity"], inc["service"]) == ("auth_failure.database", "critical", "nova-manage")
    assert inc["resources"]["user"] == ["nova"]
    assert inc["resources"]["database"] == ["nova_api"]
    assert "GRANT ALL PRIVILEGES" in inc["remediation"]


@pytest.mark.parametrize("case", ["S01", "S08", "S09", "S11", "S23"])
def test_seed_cases_of_other_detectors_do_not_fire_here(case):
    assert analyze_paths(SEEDS / case, engine=these()) == []


def test_the_real_corpus_is_healthy_for_these_detectors():
    """AMQP outage that recovers, SQL retries forever (-1 attempts left) that
    recover, one 401 for a missing token: all normal, no incident."""
    assert analyze_paths(*sorted(CORPUS.glob("*.log")),
                         CORPUS / "elastic-recheck_logstash_oslofmt_events_2013.jsonl", engine=these()) == []


def test_demo_sample_has_one_incident_of_each_type():
    incidents = analyze_paths(SAMPLES, engine=these())
    assert {i["type"] for i in incidents} == {"retry_exhausted", "auth_failure", "disk_full"}
    disk = _only(incidents, type="disk_full")
    assert (disk["host"], disk["count"]) == ("compute-2", 2)
    assert sorted(disk["resources"]["instance"]) == ["2c5a8e62-62d0-430d-8747-795350bb6939",
                                                     "5f0e8c7a-3b2d-4e1f-8a9b-6c7d8e9f0a1b"]
    burst = _only(incidents, rule="auth_failure.burst")
    assert burst["resources"]["source_ip"] == ["203.0.113.45"]
    assert burst["count"] == 22 and set(burst["services"]) == {"keystone", "nova-api"}
    # the single 401 from 10.12.27.29 stays below the threshold
    assert all("10.12.27.29" not in i["resources"]["source_ip"] for i in incidents)


# --- behaviour on synthetic streams: the real templates as events, no parser -------
REQ = "req-c5016b48-399b-44f8-adea-a86421f1e129"
cmp1 = partial(ev, host="cmp1", service="nova-compute")


def _run(events, engine: Engine | None = None):
    engine = engine or these()
    latest = {}
    for e in by_time(events):
        for doc in engine.feed(e).incidents:
            latest[doc["id"]] = doc
    return list(latest.values())


def _access_401(t, ip="198.51.100.7"):
    return cmp1(t, "INFO", "nova.osapi_compute.wsgi.server",
                f'{ip} "GET /v2.1/servers HTTP/1.1" status: 401 len: 282 time: 0.0103340',
                http_method="GET", url_path="/v2.1/servers", status_code=401, source_ip=ip)


def test_a_single_401_is_normal():
    assert _run([_access_401(at(0))]) == []


def test_nine_401s_stay_quiet_and_ten_in_five_minutes_fire():
    nine = [_access_401(at(20 * i)) for i in range(9)]
    assert _run(nine) == []
    slow = [_access_401(at(40 * i)) for i in range(10)]  # 6 min
    assert _run(slow) == []
    ten = [_access_401(at(20 * i)) for i in range(10)]
    (inc,) = _run(ten)
    assert (inc["rule"], inc["count"], inc["resources"]["source_ip"]) == ("auth_failure.burst", 10, ["198.51.100.7"])
    assert len(inc["evidence"]) == 10


def test_password_spraying_one_user_from_many_addresses_is_a_user_burst():
    events = [cmp1(at(10 * i), "WARNING", "keystone.common.wsgi", "Could not find user: alice.", service="keystone")
              for i in range(12)]
    (inc,) = _run(events)
    assert inc["resources"]["user"] == ["alice"]


def test_retry_followed_by_success_is_not_an_incident():
    inst = "30e8a024-d1c0-4a64-aae7-a830e8c6be94"
    events = [
        cmp1(at(0), "DEBUG", "nova.compute.manager",
             f"Build of instance {inst} was re-scheduled: Insufficient compute resources",
             req=REQ, instance=inst, resources={"instance": [inst]}),
        cmp1(at(30), "INFO", "nova.compute.manager", "Took 12.10 seconds to build instance.", req=REQ, instance=inst),
        cmp1(at(0), "WARNING", "oslo_db.sqlalchemy.engines", "SQL connection failed. 10 attempts left."),
        cmp1(at(10), "INFO", "nova.service", "Starting compute node"),
        cmp1(at(0), "WARNING", "keystoneauth.session",
             "Failure: Unable to establish connection to http://ctl:8778/resource_providers: timed out. "
             "Retrying in 0.5s. 2 retries left"),
        cmp1(at(1), "INFO", "nova.compute.resource_tracker", "Compute node record updated"),
    ]
    assert _run(events) == []


def test_scheduling_retries_exhausted_carry_the_per_host_attempts():
    inst = "7b1c2a40-5d1e-4f7a-9c55-1e2d3f4a5b6c"
    events = [cmp1(at(n), "DEBUG", "nova.compute.manager",
                   f"Build of instance {inst} was re-scheduled: internal error: qemu-kvm: Cirrus VGA not available",
                   req=REQ, instance=inst, resources={"instance": [inst]})
              for n in range(3)]
    events.append(cmp1(at(5), "WARNING", "nova.scheduler.utils",
                       f"Failed to compute_task_build_instances: Exceeded maximum number of retries. Exhausted all "
                       f"hosts available for retrying build failures for instance {inst}.",
                       req=REQ, resources={"instance": [inst]}))
    (inc,) = _run(events)
    assert inc["rule"] == "retry_exhausted.max_scheduling_retries"
    assert inc["resources"]["instance"] == [inst]
    assert inc["details"]["attempts_seen"] == 3
    assert sum("re-scheduled" in e["message"] for e in inc["evidence"]) == 3


def _sql_failed(t, left):
    return cmp1(t, "WARNING", "oslo_db.sqlalchemy.engines", f"SQL connection failed. {left} attempts left.")


def test_finite_db_retries_then_connection_error_exhausts_and_infinite_never_does():
    events = [_sql_failed(at(10 * i), 3 - i) for i in range(3)]
    events.append(cmp1(at(40), "CRITICAL", "nova",
                       "DBConnectionError: (pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on 'db'\")",
                       error_type="DBConnectionError",
                       error_message="(pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on 'db'\")"))
    (inc,) = _run(events)
    assert inc["rule"] == "retry_exhausted.db_retry_limit" and inc["details"]["attempts_seen"] == 3
    forever = [_sql_failed(at(10 * i), -1 - i) for i in range(5)]
    forever.append(cmp1(at(60), "ERROR", "nova", "DBConnectionError: still down",
                        error_type="DBConnectionError", error_message="still down"))
    assert _run(forever) == []


def test_keystoneauth_retries_then_failure_is_exhaustion():
    events = [cmp1(at(i), "WARNING", "keystoneauth.session",
                   "Failure: Unable to establish connection to http://ctl:8778/resource_providers: "
                   f"Connection refused. Retrying in 0.5s. {2 - i} retries left") for i in range(3)]
    events.append(cmp1(at(4), "ERROR", "nova.compute.manager",
                       "Error updating resources: Unable to establish connection to http://ctl:8778/resource_providers"))
    (inc,) = _run(events)
    assert inc["rule"] == "retry_exhausted.keystoneauth_retries"
    assert "http://ctl:8778/resource_providers" in inc["title"]


def test_disk_full_one_incident_per_host_and_filesystem_resolves_and_reopens():
    def enospc(t, path="/var/lib/nova/instances/_base/abc.part"):
        return cmp1(t, "ERROR", "nova.image.glance", f"Error writing to {path}: [Errno 28] No space left on device")
    events = [enospc(at(0)), enospc(at(300)), enospc(at(360), "/var/log/nova/x.log")]
    incidents = _run(events)
    assert sorted((i["details"]["filesystem"], i["count"]) for i in incidents) == [
        ("/var/lib/nova/instances", 2), ("/var/log", 1)]
    # quiet for longer than 30 minutes: the first resolves, a recurrence is a new incident
    later = events + [enospc(at(3000))]
    incidents = _run(later)
    nova = sorted((i for i in incidents if i["details"]["filesystem"] == "/var/lib/nova/instances"),
                  key=lambda i: i["first_seen"])
    assert [(i["status"], i["count"]) for i in nova] == [("resolved", 2), ("open", 1)]
    assert nova[0]["id"] != nova[1]["id"]


def test_cinder_capacity_filter_is_not_enospc():
    e = cmp1(at(0), "WARNING", "cinder.scheduler.filters.capacity_filter",
             "Insufficient free space for volume creation on host c1@lvm#lvm (requested / avail): 100/20.0")
    assert _run([e]) == []


def test_rabbitmq_access_refused_is_a_hard_auth_failure():
    e = cmp1(at(0), "ERROR", "oslo.messaging._drivers.impl_rabbit",
             "AMQP server on 10.0.0.5:5672 is unreachable: (0, 0): (403) ACCESS_REFUSED - Login was refused "
             "using authentication mechanism AMQPLAIN. For details see the broker logfile.. Trying again in 1 seconds.")
    (inc,) = _run([e])
    assert (inc["rule"], inc["severity"]) == ("auth_failure.rabbitmq", "critical")


def test_replay_gives_the_same_incident_ids_and_snapshot_restore_continues_exactly():
    text = SAMPLES.joinpath("controller-1/nova/nova-api.log").read_text() + \
        SAMPLES.joinpath("controller-1/keystone/keystone.log").read_text()
    events = sorted(parse_text(text, host="ctl"), key=lambda e: e.ts or 0)

    def run(evs, engine):
        out = {}
        for e in evs:
            for doc in engine.feed(e).incidents:
                out[doc["id"]] = doc
        return out

    whole = run(events, support_engine())
    assert whole == run(events, support_engine())
    half = len(events) // 2
    first = support_engine()
    part1 = run(events[:half], first)
    import json
    state = json.loads(json.dumps(first.snapshot()))        # must be JSON-safe
    second = support_engine()
    second.restore(state)
    part2 = run(events[half:], second)
    assert {**part1, **part2} == whole


def test_detector_state_is_bounded_by_key_count():
    det = AuthFailures(AuthFailuresConfig(threshold=10, window=300, max_keys=100))
    engine = Engine([det])
    _run([_access_401(at(i / 1000), ip=f"10.9.{i // 250}.{i % 250}") for i in range(1000)], engine)
    assert len(det.recent) <= 100
