"""Folding: records of a process that went quiet complete once the stream's
time moves on; Apache access lines with an IPv6 client are access lines."""
from __future__ import annotations


from support import analyze_paths, parse_text

from pipeline.parsing.extract import Source
from pipeline.parsing.fold import EXPIRE_SECONDS, SWEEP_SECONDS
from pipeline.parsing.parser import Parser

SRC = Source("ctl-1", "nova-conductor", "/var/log/nova/nova-conductor.log")
UUID = "8d6c1f8e-1b2b-4c33-9a55-0123456789ab"

DB_EXHAUSTED = [
    "2019-01-01 16:00:00.000 600 WARNING oslo_db.sqlalchemy.engines [-] SQL connection failed. 2 attempts left.",
    "2019-01-01 16:00:10.000 600 WARNING oslo_db.sqlalchemy.engines [-] SQL connection failed. 1 attempts left.",
    "2019-01-01 16:00:20.000 600 CRITICAL nova [-] Unhandled error: oslo_db.exception.DBConnectionError: "
    "(pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '10.0.0.1'\")",
]


def _restarted_service(minutes: int) -> list[str]:
    """The same service restarted under pid 700, logging once a minute."""
    return [f"2019-01-01 {16 + (m + 1) // 60:02d}:{(m + 1) % 60:02d}:00.000 700 INFO nova.conductor.manager "
            f"[-] periodic task ok {m}" for m in range(minutes)]


def test_last_record_of_a_quiet_pid_completes_when_the_stream_moves_on():
    p = Parser(tz="UTC")
    completed: list[str] = []
    for line in DB_EXHAUSTED + _restarted_service(3):
        completed += [ev.message for ev in p.feed(line + "\n", SRC, None)]
    # pid 600 never logs again, yet its CRITICAL record is out before the end of input
    assert any("DBConnectionError" in (m or "") for m in completed)
    rest = [ev.message for ev in p.flush()]
    assert not any("DBConnectionError" in (m or "") for m in rest)


def test_a_quiet_pids_record_completes_within_ten_seconds_of_stream_time():
    """While another pid keeps the file busy, a record whose pid went quiet is out once the
    stream is EXPIRE_SECONDS + SWEEP_SECONDS past it: a live incident does not wait longer."""
    p = Parser(tz="UTC")
    first = (f"2019-01-01 16:00:00.000 600 ERROR nova.compute.manager [req-{UUID} - - - - -] "
             "Instance failed to spawn")
    assert not p.feed(first + "\n", SRC, None)
    out_at = None
    for second in range(1, 40):
        line = f"2019-01-01 16:00:{second:02d}.000 700 INFO nova.compute.manager [-] periodic task {second}"
        if any(ev.pid == 600 for ev in p.feed(line + "\n", SRC, None)):
            out_at = second
            break
    assert out_at is not None and EXPIRE_SECONDS < out_at <= EXPIRE_SECONDS + SWEEP_SECONDS <= 10, out_at


def test_db_exhaustion_of_a_dead_process_is_detected_before_end_of_file(tmp_path):
    log = tmp_path / "ctl-1" / "nova-conductor.log"
    log.parent.mkdir()
    # two hours of the restarted process after the crash: longer than analyze's
    # reordering buffer and the detector's attempt memory
    log.write_text("\n".join(DB_EXHAUSTED + _restarted_service(120)) + "\n")
    rules = [inc["rule"] for inc in analyze_paths(tmp_path)]
    assert "retry_exhausted.db_retry_limit" in rules


def test_interleaved_traceback_lines_within_the_slack_still_fold():
    lines = [
        f"2019-01-01 16:00:00.100 600 ERROR nova.compute.manager [req-{UUID} - - - - -] Build failed",
        "2019-01-01 16:00:00.100 600 ERROR nova.compute.manager Traceback (most recent call last):",
        f"2019-01-01 16:00:0{EXPIRE_SECONDS}.000 700 INFO nova.compute.manager [-] other worker",
        "2019-01-01 16:00:00.100 600 ERROR nova.compute.manager   File \"x.py\", line 1, in f",
        "2019-01-01 16:00:00.100 600 ERROR nova.compute.manager OSError: [Errno 28] No space left on device",
        f"2019-01-01 16:00:0{EXPIRE_SECONDS + 2}.000 700 INFO nova.compute.manager [-] later",
    ]
    events = parse_text("\n".join(lines) + "\n")
    build = [ev for ev in events if ev.pid == 600]
    assert len(build) == 1
    assert build[0].error_type == "OSError" and "No space left" in build[0].stack_trace


V6_LINES = [
    f"2016-10-29 10:51:09.400 3407 INFO nova.api.openstack.wsgi [req-{UUID} - - - - -] "
    "http://ctl:8774/v2.1/servers returned with HTTP 500",
    '::1 - - [29/Oct/2015:10:51:10 +0100] "GET /v3/users HTTP/1.1" 401 500 "-" "curl/7" 2345',
    'fd00::1 - - [29/Oct/2015:10:51:11 +0100] "GET /v3/users HTTP/1.1" 401 500 "-" "curl/7" 2345',
    'FE80::2 - alice [29/Oct/2015:10:51:12 +0100] "POST /v3/auth/tokens HTTP/1.1" 403 91 "-" "curl/7" 12',
    '2001:db8::5 - - [29/Oct/2015:10:51:13 +0100] "GET /v3/users HTTP/1.1" 401 500 "-" "curl/7" 2345',
    "an unrelated continuation line - - [ not an access line",
]


def test_apache_lines_with_ipv6_clients_are_access_events():
    data = ("\n".join(V6_LINES) + "\n").encode()
    per_line = Parser(tz="UTC")
    events = [ev for ln in data.splitlines(keepends=True) for ev in per_line.feed(ln, SRC, None)]
    events += per_line.flush()
    access = [ev for ev in events if ev.kind == "access"]
    assert [ev.source_ip for ev in access] == ["::1", "fd00::1", "FE80::2", "2001:db8::5"]
    assert [ev.status_code for ev in access] == [401, 401, 403, 401]
    log = [ev for ev in events if ev.kind == "log"]
    # the access lines no longer fold into the record before them
    assert len(log) == 1 and log[0].status_code == 500 and log[0].url_path == "/v2.1/servers"
    assert log[0].message.endswith("not an access line")


def test_ipv6_401_burst_is_an_auth_failure(tmp_path):
    line = '{ip} - - [29/Oct/2015:10:51:{s:02d} +0100] "GET /v3/users HTTP/1.1" 401 500 "-" "curl/7" 2345'
    log = tmp_path / "ctl" / "keystone" / "keystone_access.log"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(line.format(ip="fd00::9", s=s) for s in range(12)) + "\n")
    incs = analyze_paths(tmp_path)
    assert [(i["type"], i["resources"]["source_ip"]) for i in incs] == [("auth_failure", ["fd00::9"])]


def test_the_edges_of_the_calendar_never_raise():
    """Sweeping for quiet records does date arithmetic: at 9999-12-31 23:59:59
    and 0001-01-01 00:00:00 it would overflow; the records fold as usual."""
    from support import parse_text

    text = ("9999-12-31 23:59:59.100 11 INFO nova.compute.manager [-] last second\n"
            "9999-12-31 23:59:59.200 12 INFO nova.compute.manager [-] other pid\n"
            "0001-01-01 00:00:01.000 13 ERROR nova.compute.manager [-] first second\n"
            "0001-01-01 00:00:02.000 14 INFO nova.compute.manager [-] and another\n")
    events = parse_text(text)
    assert [e.message for e in events if e.kind != "unparsed"] == [
        "last second", "other pid", "first second", "and another"]
