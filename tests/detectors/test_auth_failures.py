"""auth_failure rates: a fast burst window and a slow, persistent one (issue 15).

The two-hour slow set is tests/fixtures/corpus/auth-slow (synthetic lines from
keystone's real template; README.md there); the rules on events built
directly (support.ev) like the parser leaves keystone and access lines.
"""
from __future__ import annotations

import json

import pytest

from support import CORPUS, analyze_paths, at, by_time, engine as full_engine, ev
from detectors import Engine
from detectors.auth_failures import AuthFailures, AuthFailuresConfig, span
from detectors.incident import incident_id
from pipeline.settings import DetectorSettings

SLOW = CORPUS / "auth-slow"
CLIENT = "198.51.100.23"


def keystone(t, ip=CLIENT):
    """keystone's WARNING for a rejected authentication (keystone/server/flask/application.py)."""
    return ev(at(t), "WARNING", "keystone.server.flask.application",
              f"Authorization failed. The request you have made requires authentication. from {ip}",
              host="ctl1", service="keystone")


def unknown_user(t, user="alice", ip=None):
    return ev(at(t), "WARNING", "keystone.common.wsgi", f"Could not find user: {user}.",
              host="ctl1", service="keystone", source_ip=ip)


def access_401(t, ip="203.0.113.9"):
    return ev(at(t), "INFO", "nova.osapi_compute.wsgi.server",
              f'{ip} "GET /v2.1/servers HTTP/1.1" status: 401 len: 282 time: 0.0103340',
              host="ctl1", service="nova-api", http_method="GET", url_path="/v2.1/servers",
              status_code=401, source_ip=ip)


def run(events, det=None):
    """The latest version of every incident, in the order they opened."""
    engine = Engine([det or AuthFailures()])
    latest = {}
    for e in by_time(events):
        for doc in engine.feed(e).incidents:
            latest[doc["id"]] = doc
    return list(latest.values())


def every(start, count, gap):
    return [start + i * gap for i in range(count)]


# --- the slow fixture -----------------------------------------------------------------------
def test_one_client_failing_every_minute_for_two_hours_is_one_slow_incident(incident_validator):
    """120 failures in two hours, never more than 7 in five minutes: before issue 15 nothing."""
    (inc,) = analyze_paths(SLOW, engine=full_engine())
    assert (inc["type"], inc["rule"], inc["severity"]) == ("auth_failure", "auth_failure.slow", "warning")
    assert inc["title"] == f"Authentication failures from source address {CLIENT} (slow: 30 in 2 h)"
    assert inc["details"] == {"window": "slow", "window_label": "slow: 30 in 2 h", "threshold": 30,
                              "window_seconds": 7200.0}
    assert inc["count"] == 120 and inc["resources"]["source_ip"] == [CLIENT]
    assert (inc["first_seen"], inc["last_seen"]) == ("2023-03-14T10:00:03.117+00:00",
                                                     "2023-03-14T11:58:22.981+00:00")
    assert "slow window: 30 in 2 h" in inc["summary"] and "timer" in inc["probable_cause"]
    assert inc["evidence"][0]["message"].endswith(f"from {CLIENT}")
    assert not [e.message for e in incident_validator.iter_errors(inc)]


def test_the_fixture_has_no_fast_burst():
    only_fast = AuthFailures(AuthFailuresConfig(slow_threshold=10_000))
    assert analyze_paths(SLOW, engine=Engine([only_fast])) == []


# --- windows -----------------------------------------------------------------------------------
def test_a_fast_burst_names_its_window():
    (inc,) = run([access_401(t) for t in every(0, 10, 20)])
    assert (inc["rule"], inc["count"]) == ("auth_failure.burst", 10)
    assert inc["title"].endswith("(fast: 10 in 5 min)")
    assert inc["details"]["window"] == "fast" and inc["details"]["window_label"] == "fast: 10 in 5 min"
    assert len(inc["evidence"]) == 10


def test_a_slow_rate_fires_at_its_threshold_and_names_its_window():
    assert run([keystone(t) for t in every(0, 29, 200)]) == []          # 29 in 93 min
    (inc,) = run([keystone(t) for t in every(0, 30, 200)])              # 30 in 97 min
    assert (inc["rule"], inc["count"], inc["details"]["window"]) == ("auth_failure.slow", 30, "slow")
    assert inc["first_seen"] == at(0).isoformat(timespec="milliseconds")
    assert len(inc["evidence"]) == 10 and inc["evidence"][-1]["@timestamp"] == at(29 * 200).isoformat(
        timespec="milliseconds")
    assert run([keystone(t) for t in every(0, 30, 260)]) == []          # 30 in 2 h 6 min


def test_one_page_per_key_when_both_windows_would_fire():
    """A burst of 40 in four minutes crosses 10 in 5 min and 30 in 2 h: one fast incident."""
    (inc,) = run([keystone(t) for t in every(0, 40, 6)])
    assert (inc["rule"], inc["count"]) == ("auth_failure.burst", 40)


def test_a_burst_then_a_slow_trickle_stays_one_incident():
    events = [keystone(t) for t in every(0, 10, 10)] + [keystone(t) for t in every(400, 60, 120)]
    (inc,) = run(events)
    assert (inc["rule"], inc["count"]) == ("auth_failure.burst", 70)


def test_a_slow_incident_absorbs_a_later_burst_of_the_same_key():
    events = [keystone(t) for t in every(0, 30, 60)] + [keystone(t) for t in every(1900, 15, 5)]
    (inc,) = run(events)
    assert (inc["rule"], inc["count"]) == ("auth_failure.slow", 45)


def test_failures_that_went_into_an_incident_are_not_counted_again():
    """A burst of 25 resolves after 15 quiet minutes; 10 more failures spread over the next
    hour are 35 in two hours, but only 10 new ones: no slow incident."""
    events = [keystone(t) for t in every(0, 25, 5)] + [keystone(t) for t in every(1500, 10, 360)]
    det = AuthFailures()
    engine = Engine([det])
    docs = [d for e in events for d in engine.feed(e).incidents]
    assert {d["rule"] for d in docs} == {"auth_failure.burst"}
    assert docs[-1]["status"] == "resolved" and docs[-1]["count"] == 25


@pytest.mark.parametrize("addresses,expected", [
    (["192.0.2.1", "192.0.2.2", "192.0.2.3"], {("auth_failure.slow", "user")}),
    (["192.0.2.1"], {("auth_failure.slow", "source_ip")}),
])
def test_slow_per_user_rate_needs_more_than_one_address(addresses, expected):
    events = [unknown_user(t, ip=addresses[i % len(addresses)]) for i, t in enumerate(every(0, 40, 150))]
    incidents = run(events)
    kinds = {(i["rule"], "user" if " from user " in i["title"] else "source_ip") for i in incidents}
    assert kinds == expected


def test_ids_are_deterministic_from_rule_key_and_window_start():
    events = [keystone(t) for t in every(0, 30, 200)]
    (a,), (b,) = run(events), run(events)
    assert a["id"] == b["id"] == incident_id("auth_failure.slow", ("slow", "source_ip", CLIENT),
                                             at(0).timestamp())


def test_windows_are_settings():
    config = DetectorSettings(auth_slow_threshold=5, auth_slow_window=5400.0).config().auth_failures
    assert (config.threshold, config.window, config.slow_threshold, config.slow_window) == (10, 300.0, 5, 5400.0)
    (inc,) = run([keystone(t) for t in every(0, 5, 1000)], AuthFailures(config))
    assert inc["title"].endswith("(slow: 5 in 90 min)") and inc["count"] == 5
    assert [span(s) for s in (300, 7200, 5400, 90, 45.5)] == ["5 min", "2 h", "90 min", "90 s", "45.5 s"]


def test_new_keys_load_from_the_detectors_section(tmp_path):
    from pipeline.settings import SettingsError, load

    path = tmp_path / "osloscope.toml"
    path.write_text("[detectors]\nauth_slow_threshold = 40\nauth_slow_window = 10800\n"
                    "service_silent_learn_intervals = 6\n")
    s = load(str(path), env={"OSLOSCOPE_DETECTORS_AUTH_SLOW_THRESHOLD": "50"})
    config = s.detectors.config()
    assert (config.auth_failures.slow_threshold, config.auth_failures.slow_window) == (50, 10800.0)
    assert config.service_silent.min_intervals == 6
    assert AuthFailures(config.auth_failures).label("slow") == "slow: 50 in 3 h"
    path.write_text("[detectors]\nauth_slow_threshold = 0\nauth_slow_window = 0\n"
                    "service_silent_learn_intervals = 0\n")
    with pytest.raises(SettingsError) as info:
        load(str(path), env={})
    assert len(info.value.errors) == 3


def test_single_expired_tokens_an_hour_are_ordinary():
    """Pollers whose token expires each hour: one 401 per poller and hour, all day."""
    events = [access_401(t, ip=f"10.0.0.{n}") for n in range(5) for t in every(n * 60, 24, 3600)]
    assert run(events) == []


# --- state ---------------------------------------------------------------------------------------
def test_state_is_bounded():
    det = AuthFailures(AuthFailuresConfig(max_keys=100))
    run([access_401(i / 1000, ip=f"10.9.{i // 250}.{i % 250}") for i in range(1000)], det)
    assert len(det.recent) <= 100
    run([keystone(t) for t in every(0, 500, 1)], det)
    r = det.recent.get(("source_ip", CLIENT))
    assert r is None or (len(r.fast) <= 10 and len(r.slow) <= 30)


def test_snapshot_restore_round_trip():
    """Cut before the slow window fires, while it is open, and in a burst."""
    events = by_time([keystone(t) for t in every(0, 60, 100)],
                     [keystone(t, ip="192.0.2.50") for t in every(3000, 12, 10)],
                     [unknown_user(t, ip=f"192.0.2.{i % 3}") for i, t in enumerate(every(10, 40, 170))])
    whole_det = AuthFailures()
    whole = [d for e in events for d in whole_det.feed(e)]
    assert {d["rule"] for d in whole} == {"auth_failure.slow", "auth_failure.burst"}
    for cut in (len(events) // 4, len(events) // 2, 3 * len(events) // 4):
        first = AuthFailures()
        docs = [d for e in events[:cut] for d in first.feed(e)]
        second = AuthFailures()
        second.restore(json.loads(json.dumps(first.snapshot())))
        docs += [d for e in events[cut:] for d in second.feed(e)]
        assert docs == whole, cut


def test_a_snapshot_before_the_slow_window_restores_its_fast_windows():
    """Worker state written before issue 15 ("recent": burst key -> fast entries)."""
    first = AuthFailures()
    nine = [access_401(t) for t in every(0, 9, 10)]
    for e in nine:
        first.feed(e)
    r = first.recent.get(("source_ip", "203.0.113.9"))
    old = {"incidents": [], "recent": [[["burst", "source_ip", "203.0.113.9"], [list(x) for x in r.fast]]]}
    second = AuthFailures()
    second.restore(json.loads(json.dumps(old)))
    (inc,) = second.feed(access_401(95))
    assert (inc["rule"], inc["count"]) == ("auth_failure.burst", 10)
