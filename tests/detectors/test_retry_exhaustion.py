"""retry_exhausted: the audit's crash, false positives and duplicated evidence.

Every stream is built from the real oslo.log templates (see
the project's oslo.log format reference): nova's scheduling give-ups,
oslo.db's ``SQL connection failed. %s attempts left.`` (max_retries - attempt,
so the last warning before the DBConnectionError says ``1 attempts left``),
keystoneauth's ``Failure: ... Retrying in Xs. N retries left`` and nova's
glance client ``Error contacting glance server ... retrying / done trying``.
"""
from __future__ import annotations

import datetime as dt
import json

from support import engine as support_engine, parse_text, oslo_line as _line
from detectors.retry_exhaustion import RetryExhaustion

T0 = dt.datetime(2018, 3, 14, 11, 20, 0)
INST = "7b1c2a40-5d1e-4f7a-9c55-1e2d3f4a5b6c"
REQ_A = "req-0f3c9a52-6a1e-4d7b-9b2c-5e8f1a2b3c4d"
REQ_B = "req-9d8e7f60-1b2c-4a3d-8e9f-0a1b2c3d4e5f"
USER = "c49d86f8a39148bb809d2da44811ca3b f19126d9035d4209b363386e8e267129 - - -"
PLACEMENT = "http://ctl01:8778/resource_providers/4e1f8a9b-6c7d-4e8f-9a0b-1c2d3e4f5a6b/inventories"



def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _ctx(req: str) -> str:
    return f"[{req} {USER}]"


def _run(text: str, host: str = "cmp1", service: str = "nova-compute") -> list[dict]:
    engine = support_engine()
    latest = {}
    for ev in sorted(parse_text(text, host=host, service=service), key=lambda e: e.ts or 0):
        for doc in engine.feed(ev).incidents:
            latest[doc["id"]] = doc
    return list(latest.values())


def _retry(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["type"] == "retry_exhausted"]


# --- 1. scheduling give-ups that used to crash with KeyError 'instance' --------
def test_queens_conductor_wording_names_the_instance():
    text = _line(_at(0), 4242, "ERROR", "nova.conductor.manager", _ctx(REQ_A),
                 "Failed to schedule instances: Exceeded maximum number of retries. Exceeded max "
                 f"scheduling attempts 3 for instance {INST}. Last exception: internal error: "
                 "process exited while connecting to monitor")
    (inc,) = _retry(_run(text, host="ctl01", service="nova-conductor"))
    assert inc["rule"] == "retry_exhausted.max_scheduling_retries"
    assert inc["title"] == f"Instance {INST} failed on every scheduled host"
    assert inc["resources"]["instance"] == [INST]
    assert inc["details"]["attempts"] == 3


def test_live_migration_wording_names_the_instance():
    text = _line(_at(0), 4242, "ERROR", "nova.conductor.manager", _ctx(REQ_A),
                 "Failed to live migrate: Exceeded maximum number of retries. Exceeded max scheduling "
                 f"retries 5 for instance {INST} during live migration")
    (inc,) = _retry(_run(text, host="ctl01", service="nova-conductor"))
    assert inc["title"] == f"Instance {INST} failed on every scheduled host"
    assert inc["resources"]["instance"] == [INST]
    assert inc["details"]["attempts"] == 5


def test_a_give_up_without_any_instance_does_not_crash_the_detector():
    text = _line(_at(0), 4242, "ERROR", "nova.conductor.manager", "[-]",
                 "Failed to schedule instances: Exceeded maximum number of retries.")
    (inc,) = _retry(_run(text, host="ctl01", service="nova-conductor"))
    assert inc["title"] == "Instance ? failed on every scheduled host"


# --- 2. a retry followed by success is not an incident --------------------------
def test_keystoneauth_retry_then_success_then_unrelated_timeout_is_no_incident():
    text = "".join([
        _line(_at(0), 5120, "WARNING", "keystoneauth.session", _ctx(REQ_A),
              "Failure: Unable to establish connection to http://10.0.0.3:9696/v2.0/ports: "
              "Connection reset by peer. Retrying in 0.5s. 2 retries left"),
        _line(_at(1), 5120, "INFO", "nova.compute.manager", _ctx(REQ_A),
              f"[instance: {INST}] Took 5.20 seconds to build instance."),
        _line(_at(120), 5120, "ERROR", "nova.compute.manager", _ctx(REQ_B),
              "[instance: 2c5a8e62-62d0-430d-8747-795350bb6939] Instance failed to spawn: "
              "Request to http://10.0.0.7:9292/v2/images timed out"),
    ])
    assert _retry(_run(text)) == []


def test_keystoneauth_error_of_another_request_does_not_complete_the_retries():
    text = "".join([
        _line(_at(0), 5120, "WARNING", "keystoneauth.session", _ctx(REQ_A),
              f"Failure: Unable to establish connection to {PLACEMENT}: timed out. "
              "Retrying in 0.5s. 2 retries left"),
        _line(_at(3), 5120, "ERROR", "nova.compute.manager", _ctx(REQ_B),
              f"Error updating resources: Unable to establish connection to {PLACEMENT}"),
    ])
    assert _retry(_run(text)) == []


def test_db_retries_that_recover_then_a_later_lost_connection_is_no_incident():
    text = "".join([
        _line(_at(0), 6001, "WARNING", "oslo_db.sqlalchemy.engines", "[-]",
              "SQL connection failed. 9 attempts left."),
        _line(_at(11), 6001, "INFO", "nova.service", "[-]", "Starting conductor node (version 18.0.0)"),
        _line(_at(2400), 6001, "ERROR", "oslo_messaging.rpc.server", f"[{REQ_B} - - - - -]",
              "Exception during message handling: oslo_db.exception.DBConnectionError: "
              "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query')"),
    ])
    assert _retry(_run(text, host="ctl01", service="nova-conductor")) == []


def test_db_error_while_oslo_db_is_still_retrying_is_no_incident():
    text = "".join([
        _line(_at(0), 6001, "WARNING", "oslo_db.sqlalchemy.engines", "[-]",
              "SQL connection failed. 9 attempts left."),
        _line(_at(5), 6001, "ERROR", "oslo_messaging.rpc.server", f"[{REQ_B} - - - - -]",
              "Exception during message handling: oslo_db.exception.DBConnectionError: "
              "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query')"),
    ])
    assert _retry(_run(text, host="ctl01", service="nova-conductor")) == []


# --- true exhaustions still fire -------------------------------------------------
def test_db_retries_down_to_the_last_attempt_then_connection_error_is_exhaustion():
    text = "".join([
        _line(_at(0), 6001, "WARNING", "oslo_db.sqlalchemy.engines", "[-]",
              "SQL connection failed. 2 attempts left."),
        _line(_at(10), 6001, "WARNING", "oslo_db.sqlalchemy.engines", "[-]",
              "SQL connection failed. 1 attempts left."),
        _line(_at(20), 6001, "CRITICAL", "nova", "[-]",
              "Unhandled error: oslo_db.exception.DBConnectionError: (pymysql.err.OperationalError) "
              "(2003, \"Can't connect to MySQL server on '192.168.24.10' ([Errno 113] No route to host)\")"),
    ])
    (inc,) = _retry(_run(text, host="ctl01", service="nova-conductor"))
    assert inc["rule"] == "retry_exhausted.db_retry_limit"
    assert inc["severity"] == "critical"
    assert inc["details"]["attempts_seen"] == 2
    assert sum("attempts left" in e["message"] for e in inc["evidence"]) == 2


def test_keystoneauth_retries_exhausted_in_one_request_is_exhaustion():
    text = "".join(
        _line(_at(i), 5120, "WARNING", "keystoneauth.session", _ctx(REQ_A),
              f"Failure: Unable to establish connection to {PLACEMENT}: Connection refused. "
              f"Retrying in 0.5s. {2 - i} retries left") for i in range(3))
    # keystoneauth's own DEBUG request log of the next attempt is no success
    text += _line(_at(3.5), 5120, "DEBUG", "keystoneauth.session", _ctx(REQ_A),
                  f"REQ: curl -g -i -X PUT {PLACEMENT} -H \"Accept: application/json\"")
    text += _line(_at(4), 5120, "ERROR", "nova.compute.manager", _ctx(REQ_A),
                  f"Error updating resources for node cmp1.: keystoneauth1.exceptions.connection."
                  f"ConnectFailure: Unable to establish connection to {PLACEMENT}")
    (inc,) = _retry(_run(text))
    assert inc["rule"] == "retry_exhausted.keystoneauth_retries"
    assert PLACEMENT in inc["title"]
    assert inc["request_ids"] == [REQ_A]
    assert inc["details"]["attempts_seen"] == 3


def test_pending_keystoneauth_retries_survive_snapshot_and_restore_and_expire():
    retry = "".join(
        _line(_at(i), 5120, "WARNING", "keystoneauth.session", _ctx(REQ_A),
              f"Failure: Unable to establish connection to {PLACEMENT}: Connection refused. "
              f"Retrying in 0.5s. {1 - i} retries left") for i in range(2))
    error = _line(_at(3), 5120, "ERROR", "nova.compute.manager", _ctx(REQ_A),
                  f"Error updating resources: Unable to establish connection to {PLACEMENT}")
    first = RetryExhaustion()
    for ev in parse_text(retry):
        first.feed(ev)
    state = json.loads(json.dumps(first.snapshot()))
    second = RetryExhaustion()
    second.restore(state)
    (err,) = parse_text(error)
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
    text = "".join([
        _line(_at(0), 7300, "WARNING", "nova.image.glance", _ctx(REQ_A),
              f"Error contacting glance server '{server}' for 'download', attempt 1/2, retrying."),
        _line(_at(1), 7300, "ERROR", "nova.image.glance", _ctx(REQ_A),
              f"Error contacting glance server '{server}' for 'download', attempt 2/2, done trying."),
    ])
    (inc,) = _retry(_run(text))
    assert inc["rule"] == "retry_exhausted.glance_done_trying"
    messages = [e["message"] for e in inc["evidence"]]
    assert sum("retrying" in m for m in messages) == 1
    assert sum("done trying" in m for m in messages) == 1
    assert len({(e["@timestamp"], e["message"]) for e in inc["evidence"]}) == len(inc["evidence"])
