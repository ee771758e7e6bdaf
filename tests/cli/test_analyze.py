"""``osloscope analyze`` as a user runs it (pipeline/cli/analyze.py): exit codes, formats,
inputs, ``--requests``."""
from __future__ import annotations

import gzip
import json
import shutil

import pytest

from support import CORPUS, FIXTURES, SAMPLES, osloscope

SEEDS = FIXTURES / "seeds"
S20_REQ = "req-c5016b48-399b-44f8-adea-a86421f1e129"
S23_REQ = "req-e359221b-6be3-4ac2-bb55-5310f5bb0bb2"


def test_analyze_jsonl_prints_schema_valid_incidents_and_exits_1(incident_validator, tmp_path):
    r = osloscope("analyze", SAMPLES, "--format", "jsonl", "--dead-letter", tmp_path / "dl.jsonl")
    assert r.returncode == 1, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) >= 3
    for doc in docs:
        assert not [e.message for e in incident_validator.iter_errors(doc)]
    assert "incident(s)" in r.stderr


def test_analyze_table_is_readable():
    r = osloscope("analyze", SEEDS / "S20", "--dead-letter", "-")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].split()[:3] == ["SEVERITY", "TYPE", "HOST"]
    assert "fix:" in r.stdout and "block_device_allocate_retries" in r.stdout


def test_no_incidents_exits_0():
    r = osloscope("analyze", CORPUS / "olm_fixture_01-simple_in_l3-agent.log")
    assert r.returncode == 0, r.stderr
    assert "No incidents found" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["analyze", "/nonexistent/nova.log"], "no such file"),
    (["analyze", "/nonexistent/*.log"], "glob matched nothing"),
    (["analyze", str(SAMPLES), "--since", "yesterday"], "not an ISO 8601 time"),
    (["analyze", str(SAMPLES), "--tz", "Mars/Olympus"], "is not a timezone"),
    (["analyze"], "required"),
])
def test_usage_errors_exit_2_with_a_clear_message(args, needle):
    r = osloscope(*args)
    assert r.returncode == 2
    assert needle in r.stderr


def test_unreadable_file_is_reported(tmp_path):
    """A path that exists but cannot be opened for reading (a UNIX socket:
    open() fails even for root) is named in a clear error, exit 2."""
    import socket
    path = tmp_path / "nova-compute.log"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        r = osloscope("analyze", path, tmp_path / "missing.log")
    finally:
        sock.close()
    assert r.returncode == 2
    assert "nova-compute.log: cannot read" in r.stderr and "missing.log: no such file" in r.stderr


def test_gz_rotated_files_and_host_layout(tmp_path):
    host = tmp_path / "cmp9" / "nova"
    host.mkdir(parents=True)
    src = (SEEDS / "S04/compute/nova-compute.log").read_bytes()
    with gzip.open(host / "nova-compute.log.2.gz", "wb") as fh:
        fh.write(src)
    shutil.copy(SEEDS / "S10/compute/nova-compute.log", host / "nova-compute.log.1")
    r = osloscope("analyze", tmp_path, "--format", "jsonl")
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(d["type"] for d in docs) == ["auth_failure", "disk_full"]
    assert {(d["host"], d["service"]) for d in docs} == {("cmp9", "nova-compute")}
    r = osloscope("analyze", host / "nova-compute.log.1", "--host", "compute-42", "--format", "jsonl")
    assert json.loads(r.stdout)["host"] == "compute-42"


def test_since_until_filter_records():
    r = osloscope("analyze", SAMPLES, "--format", "jsonl", "--since", "2017-06-06T10:00", "--until",
                  "2017-06-06 10:30", "--dead-letter", "-")
    types = sorted(json.loads(line)["rule"] for line in r.stdout.splitlines())
    assert types == ["auth_failure.image", "disk_full.enospc"]


def test_unparsed_lines_go_to_the_dead_letter_file(tmp_path):
    f = tmp_path / "nova-api.log"
    f.write_bytes(b"\xff\xfe binary junk\n2017-06-06 09:30:28.513 1 INFO x [-] ok\n")
    dl = tmp_path / "dead.jsonl"
    r = osloscope("analyze", f, "--dead-letter", dl)
    assert r.returncode == 0
    (rec,) = [json.loads(line) for line in dl.read_text().splitlines()]
    assert rec["raw"] == "\\xff\\xfe binary junk" and rec["reason"] and rec["offset"] == 0
    assert "1 unparsed line(s) written to" in r.stderr


def test_a_full_disk_under_the_dead_letter_file_is_one_clear_line(tmp_path):
    """/dev/full refuses every write with ENOSPC, as a full filesystem does."""
    f = tmp_path / "nova-api.log"
    f.write_bytes(b"\xff\xfe binary junk\n2017-06-06 09:30:28.513 1 INFO x [-] ok\n")
    r = osloscope("analyze", f, "--dead-letter", "/dev/full")
    assert r.returncode == 2, r.stderr
    assert "No space left on device (ENOSPC)" in r.stderr and "Traceback" not in r.stderr


def test_analyze_requests_table_and_jsonl(request_validator):
    r = osloscope("analyze", "--requests", SEEDS / "S20", SEEDS / "S23-flow", "--dead-letter", "-")
    assert r.returncode == 1, r.stderr                         # requests ended in error
    head, *rows = r.stdout.splitlines()
    assert head.split()[:3] == ["TIME", "REQUEST", "ID"]
    assert any(S23_REQ in row and "glanceclient -- AttributeError: id" in row for row in rows)
    assert any(S20_REQ in row and "cinder-volume -- VolumeNotCreated" in row for row in rows)
    assert "2 request(s)" in r.stderr
    r = osloscope("analyze", "--requests", "--format", "jsonl", SEEDS / "S23-flow", "--dead-letter", "-")
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    for doc in docs:
        assert not [e.message for e in request_validator.iter_errors(doc)]
    assert [d["root_cause"]["component"] for d in docs] == ["glanceclient"]


def test_analyze_follows_the_settings_file_and_options_win(tmp_path):
    """``[detectors]`` of the settings file applies to analyze as to the worker; an
    explicit option overrides it; invalid settings are an error, exit 2."""
    def burst(*args):
        r = osloscope("analyze", SAMPLES, "--format", "jsonl", "--dead-letter", "-", *args)
        assert r.returncode in (0, 1), r.stderr
        return [d for d in map(json.loads, r.stdout.splitlines()) if d["rule"] == "auth_failure.burst"]

    assert burst()                                             # 22 rejections from one address
    conf = tmp_path / "osloscope.toml"
    conf.write_text("[detectors]\nauth_threshold = 50\nauth_slow_threshold = 50\n")
    assert not burst("--config", conf)                         # the file raised the threshold
    assert burst("--config", conf, "--auth-threshold", "10")   # the option wins over the file
    conf.write_text("[detectors]\nrequest_window_gap = -1\n")
    r = osloscope("analyze", SAMPLES, "--config", conf, "--dead-letter", "-")
    assert r.returncode == 2 and "request_window_gap" in r.stderr, r.stderr


def test_analyze_requests_follow_the_request_window_gap(tmp_path):
    """A shorter ``request_window_gap`` splits a request whose records are further
    apart than it into more summaries."""
    def summaries(*args):
        r = osloscope("analyze", "--requests", "--format", "jsonl", SEEDS / "S23-flow",
                      "--dead-letter", "-", *args)
        assert r.returncode in (0, 1), r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    conf = tmp_path / "osloscope.toml"
    conf.write_text("[detectors]\nrequest_window_gap = 0.001\n")
    assert len(summaries("--config", conf)) > len(summaries())
