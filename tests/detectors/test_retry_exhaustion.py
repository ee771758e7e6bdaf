"""retry_exhausted: the audit's crash, false positives and duplicated evidence.

Every stream is built, as events (support.ev, no parser), from the real
oslo.log templates (see the project's oslo.log format reference): nova's
scheduling give-ups, oslo.db's ``SQL connection failed. %s attempts left.`` (max_retries - attempt,
so the last warning before the DBConnectionError says ``1 attempts left``),
keystoneauth's ``Failure: ... Retrying in Xs. N retries left`` and nova's
glance client ``Error contacting glance server ... retrying / done trying``.
"""
from __future__ import annotations

import datetime as dt
import json
from functools import partial

from support import engine as support_engine, at, by_time, ev
from detectors.retry_exhaustion import RetryExhaustion

T0 = dt.datetime(2018, 3, 14, 11, 20, 0)
INST = "7b1c2a40-5d1e-4f7a-9c55-1e2d3f4a5b6c"
REQ_A = "req-0f3c9a52-6a1e-4d7b-9b2c-5e8f1a2b3c4d"
REQ_B = "req-9d8e7f60-1b2c-4a3d-8e9f-0a1b2c3d4e5f"
PLACEMENT = "http://ctl01:8778/resource_providers/4e1f8a9b-6c7d-4e8f-9a0b-1c2d3e4f5a6b/inventories"
DB_LOST = ("oslo_db.exception.DBConnectionError",
           "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query')")

cmp1 = partial(ev, host="cmp1", service="nova-compute")
ctl01 = partial(ev, host="ctl01", service="nova-conductor")


def _at(seconds: float) -> dt.datetime:
    return at(seconds, T0)


def _run(events) -> list[dict]:
    engine = support_engine()
    latest = {}
    for e in by_time(events):
        for doc in engine.feed(e).incidents:
            latest[doc["id"]] = doc
    return list(latest.values())


def _retry(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["type"] == "retry_exhausted"]


def _ksa_retry(t, left: int, req: str = REQ_A, host: str = "cmp1"):
    return ev(t, "WARNING", "keystoneauth.session",
              f"Failure: Unable to establish connection to {PLACEMENT}: Connection refused. "
              f"Retrying in 0.5s. {left} retries left", host=host, req=req)


def _sql_failed(t, left: int):
    return ctl01(t, "WARNING", "oslo_db.sqlalchemy.engines", f"SQL connection failed. {left} attempts left.")


def _lost_connection(t):
    return ctl01(t, "ERROR", "oslo_messaging.rpc.server", f"Exception during message handling: {': '.join(DB_LOST)}",
                 req=REQ_B, error_type=DB_LOST[0], error_message=DB_LOST[1])


# --- 1. scheduling give-ups that used to crash with KeyError 'instance' --------
def test_queens_conductor_wording_names_the_instance():
    e = ctl01(_at(0), "ERROR", "nova.conductor.manager",
              "Failed to schedule instances: Exceeded maximum number of retries. Exceeded max "
              f"scheduling attempts 3 for instance {INST}. Last exception: internal error: "
              "process exited while connecting to monitor", req=REQ_A, resources={"instance": [INST]})
    (inc,) = _retry(_run([e]))
    assert inc["rule"] == "retry_exhausted.max_scheduling_retries"
    assert inc["title"] == f"Instance {INST} failed on every scheduled host"
    assert inc["resources"]["instance"] == [INST]
    assert inc["details"]["attempts"] == 3


def test_live_migration_wording_names_the_instance():
    e = ctl01(_at(0), "ERROR", "nova.conductor.manager",
              "Failed to live migrate: Exceeded maximum number of retries. Exceeded max scheduling "
              f"retries 5 for instance {INST} during live migration", req=REQ_A, resources={"instance": [INST]})
    (inc,) = _retry(_run([e]))
    # nova-conductor's "retries N" counts the destinations tried after the first
    # ([DEFAULT] migrate_max_retries), not [scheduler] max_attempts
    assert inc["title"] == f"Live migration of instance {INST} failed on every destination tried"
    assert inc["resources"]["instance"] == [INST]
    assert inc["details"]["retries"] == 5 and "attempts" not in inc["details"]
    assert "migrate_max_retries" in inc["remediation"] and "max_attempts" not in inc["remediation"]


def test_a_give_up_without_any_instance_does_not_crash_the_detector():
    e = ctl01(_at(0), "ERROR", "nova.conductor.manager",
              "Failed to schedule instances: Exceeded maximum number of retries.")
    (inc,) = _retry(_run([e]))
    assert inc["title"] == "An instance failed on every scheduled host"     # no "?" for the unknown id
    assert "?" not in inc["summary"] + inc["probable_cause"] + inc["remediation"]


# --- 2. a retry followed by success is not an incident --------------------------
def test_keystoneauth_retry_then_success_then_unrelated_timeout_is_no_incident():
    events = [
        cmp1(_at(0), "WARNING", "keystoneauth.session",
             "Failure: Unable to establish connection to http://10.0.0.3:9696/v2.0/ports: "
             "Connection reset by peer. Retrying in 0.5s. 2 retries left", req=REQ_A),
        cmp1(_at(1), "INFO", "nova.compute.manager", "Took 5.20 seconds to build instance.",
             req=REQ_A, instance=INST),
        cmp1(_at(120), "ERROR", "nova.compute.manager",
             "Instance failed to spawn: Request to http://10.0.0.7:9292/v2/images timed out",
             req=REQ_B, instance="2c5a8e62-62d0-430d-8747-795350bb6939"),
    ]
    assert _retry(_run(events)) == []


def test_keystoneauth_error_of_another_request_does_not_complete_the_retries():
    events = [
        cmp1(_at(0), "WARNING", "keystoneauth.session",
             f"Failure: Unable to establish connection to {PLACEMENT}: timed out. "
             "Retrying in 0.5s. 2 retries left", req=REQ_A),
        cmp1(_at(3), "ERROR", "nova.compute.manager",
             f"Error updating resources: Unable to establish connection to {PLACEMENT}", req=REQ_B),
    ]
    assert _retry(_run(events)) == []


def test_db_retries_that_recover_then_a_later_lost_connection_is_no_incident():
    events = [
        _sql_failed(_at(0), 9),
        ctl01(_at(11), "INFO", "nova.service", "Starting conductor node (version 18.0.0)"),
        _lost_connection(_at(2400)),
    ]
    assert _retry(_run(events)) == []


def test_db_error_while_oslo_db_is_still_retrying_is_no_incident():
    events = [_sql_failed(_at(0), 9), _lost_connection(_at(5))]
    assert _retry(_run(events)) == []


# --- true exhaustions still fire -------------------------------------------------
def test_db_retries_down_to_the_last_attempt_then_connection_error_is_exhaustion():
    cause = ("(pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '192.168.24.10' "
             "([Errno 113] No route to host)\")")
    events = [
        _sql_failed(_at(0), 2),
        _sql_failed(_at(10), 1),
        ctl01(_at(20), "CRITICAL", "nova", f"Unhandled error: oslo_db.exception.DBConnectionError: {cause}",
              error_type="oslo_db.exception.DBConnectionError", error_message=cause),
    ]
    (inc,) = _retry(_run(events))
    assert inc["rule"] == "retry_exhausted.db_retry_limit"
    assert inc["severity"] == "critical"
    assert inc["details"]["attempts_seen"] == 2
    assert sum("attempts left" in e["message"] for e in inc["evidence"]) == 2


def test_keystoneauth_retries_exhausted_in_one_request_is_exhaustion():
    events = [_ksa_retry(_at(i), 2 - i) for i in range(3)]
    # keystoneauth's own DEBUG request log of the next attempt is no success
    events.append(cmp1(_at(3.5), "DEBUG", "keystoneauth.session",
                       f"REQ: curl -g -i -X PUT {PLACEMENT} -H \"Accept: application/json\"", req=REQ_A))
    events.append(cmp1(_at(4), "ERROR", "nova.compute.manager",
                       "Error updating resources for node cmp1.: keystoneauth1.exceptions.connection."
                       f"ConnectFailure: Unable to establish connection to {PLACEMENT}", req=REQ_A,
                       error_type="keystoneauth1.exceptions.connection.ConnectFailure",
                       error_message=f"Unable to establish connection to {PLACEMENT}"))
    (inc,) = _retry(_run(events))
    assert inc["rule"] == "retry_exhausted.keystoneauth_retries"
    assert PLACEMENT in inc["title"]
    assert inc["request_ids"] == [REQ_A]
    assert inc["details"]["attempts_seen"] == 3


def test_pending_keystoneauth_retries_survive_snapshot_and_restore_and_expire():
    retries = [_ksa_retry(_at(i), 1 - i, host="h1") for i in range(2)]
    err = ev(_at(3), "ERROR", "nova.compute.manager",
             f"Error updating resources: Unable to establish connection to {PLACEMENT}", req=REQ_A)
    first = RetryExhaustion()
    for e in retries:
        first.feed(e)
    state = json.loads(json.dumps(first.snapshot()))
    second = RetryExhaustion()
    second.restore(state)
    assert [d["rule"] for d in second.feed(err)] == ["retry_exhausted.keystoneauth_retries"]
    # without an error the pending retries expire with the window
    third = RetryExhaustion()
    third.restore(state)
    third.advance(err.ts + 600)
    assert third.snapshot()["ksa"] == []
    assert third.feed(err) == []


# --- 3. one record is one piece of evidence --------------------------------------
def test_glance_done_trying_lists_the_retrying_record_once():
    server = "http://192.168.24.5:9292"
    events = [
        cmp1(_at(0), "WARNING", "nova.image.glance",
             f"Error contacting glance server '{server}' for 'download', attempt 1/2, retrying.", req=REQ_A),
        cmp1(_at(1), "ERROR", "nova.image.glance",
             f"Error contacting glance server '{server}' for 'download', attempt 2/2, done trying.", req=REQ_A),
    ]
    (inc,) = _retry(_run(events))
    assert inc["rule"] == "retry_exhausted.glance_done_trying"
    messages = [e["message"] for e in inc["evidence"]]
    assert sum("retrying" in m for m in messages) == 1
    assert sum("done trying" in m for m in messages) == 1
    assert len({(e["@timestamp"], e["message"]) for e in inc["evidence"]}) == len(inc["evidence"])
