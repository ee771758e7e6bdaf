"""Damaged and unusual inputs: truncated/corrupt .gz, unreadable directories,
JSONFormatter hostnames, shipper envelope whitespace, host layout of globs."""
from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import zlib

import pytest

from support import FIXTURES, ROOT, parse_text

SEEDS = FIXTURES / "seeds"


def osloscope(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}      # this checkout's pipeline from any cwd
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, env=env)


def run_main(capsys, *argv):
    """The CLI in-process (so a test can monkeypatch the file system calls)."""
    from pipeline import cli
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def docs_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# --- 1. truncated or corrupt .gz ------------------------------------------------------------

def _filler(n: int, seed: int = 0) -> bytes:
    """``n`` INFO lines that compress poorly, so a cut lands among them."""
    rnd = random.Random(seed)
    return b"".join(b"2017-06-06 10:%02d:%02d.000 4242 INFO nova.compute.manager [-] tick %d %s\n"
                    % (i // 60 % 60, i % 60, i, rnd.randbytes(40).hex().encode()) for i in range(n))


def _complete_lines_before_cut(data: bytes) -> int:
    """Whole lines a gzip decompressor gets out of (truncated) ``data``."""
    out = zlib.decompressobj(wbits=31).decompress(data)
    return out.count(b"\n")


@pytest.fixture
def truncated_gz(tmp_path):
    """A gzipped nova-compute.log with a full disk in its first lines, cut in half."""
    body = (SEEDS / "S04/compute/nova-compute.log").read_bytes() + _filler(3000)
    whole = gzip.compress(body)
    path = tmp_path / "nova-compute.log.1.gz"
    path.write_bytes(whole[:len(whole) // 2])
    kept = _complete_lines_before_cut(whole[:len(whole) // 2])
    assert 7 < kept < body.count(b"\n")
    return path, kept


def test_truncated_gz_keeps_the_lines_before_the_damage_and_warns(truncated_gz, tmp_path):
    path, kept = truncated_gz
    r = osloscope("analyze", path, "--format", "jsonl", "--dead-letter", "-")
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr          # the full disk before the damage is an incident
    assert [d["type"] for d in docs_of(r.stdout)] == ["disk_full"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("osloscope: warning:")]
    assert warnings == [f"osloscope: warning: {path}: truncated gzip stream; "
                        f"analysed the {kept:,} line(s) before it"]
    assert f"1 file(s), {kept} lines" in r.stderr


def test_truncated_gz_does_not_stop_the_other_files(truncated_gz, tmp_path):
    path, _ = truncated_gz
    other = tmp_path / "cmp2" / "nova" / "nova-compute.log"
    other.parent.mkdir(parents=True)
    other.write_bytes((SEEDS / "S10/compute/nova-compute.log").read_bytes())
    r = osloscope("analyze", path, tmp_path / "cmp2", "--format", "jsonl", "--dead-letter", "-")
    assert "Traceback" not in r.stderr and "truncated gzip stream" in r.stderr
    assert r.returncode == 1
    assert sorted(d["type"] for d in docs_of(r.stdout)) == ["auth_failure", "disk_full"]


def test_truncated_gz_without_incidents_exits_0(tmp_path):
    whole = gzip.compress(_filler(3000))
    path = tmp_path / "nova-api.log.2.gz"
    path.write_bytes(whole[:len(whole) // 3])
    r = osloscope("analyze", path, "--dead-letter", "-")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and f"{path}: truncated gzip stream" in r.stderr


def test_parse_of_a_truncated_gz_prints_the_records_before_it(tmp_path):
    whole = gzip.compress(_filler(3000))
    path = tmp_path / "nova-api.log.gz"
    path.write_bytes(whole[:len(whole) // 2])
    kept = _complete_lines_before_cut(whole[:len(whole) // 2])
    r = osloscope("parse", path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert len(r.stdout.splitlines()) == kept
    assert f"osloscope: warning: {path}: truncated gzip stream" in r.stderr


@pytest.mark.parametrize("damage,problem", [
    (lambda whole: whole[:10] + b"\xff" * 64 + whole[74:], "corrupt gzip stream"),    # zlib.error
    (lambda whole: b"not gzip at all\n" * 4, "not a gzip file"),                       # BadGzipFile
    (lambda whole: whole + b"trailing junk", "not gzip"),                              # after the end
])
def test_corrupt_gz_is_a_warning_not_a_traceback(tmp_path, damage, problem):
    bad = tmp_path / "cinder-volume.log.3.gz"
    bad.write_bytes(damage(gzip.compress(_filler(200))))
    good = tmp_path / "nova-compute.log"
    good.write_bytes((SEEDS / "S10/compute/nova-compute.log").read_bytes())
    r = osloscope("analyze", bad, good, "--format", "jsonl", "--dead-letter", "-")
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr
    assert [d["type"] for d in docs_of(r.stdout)] == ["auth_failure"]
    (warning,) = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warning.startswith(f"osloscope: warning: {bad}: ") and problem in warning


def test_read_lines_and_read_chunks_stop_at_the_damage_with_read_error(tmp_path):
    from pipeline.sources.files import LogFile, ReadError, read_chunks, read_lines

    body = _filler(2000)
    whole = gzip.compress(body)
    path = tmp_path / "x.log.gz"
    path.write_bytes(whole[:len(whole) // 2])
    kept = _complete_lines_before_cut(whole[:len(whole) // 2])
    expected = b"".join(body.splitlines(keepends=True)[:kept])
    lf = LogFile(str(path), None, path.stat().st_size)
    for reader in (read_lines, read_chunks):
        got = []
        with pytest.raises(ReadError, match="truncated gzip stream"):
            for offset, data in reader(lf):
                got.append(data)
        assert b"".join(got) == expected, reader.__name__


# --- 2. unreadable subdirectories ------------------------------------------------------------

@pytest.fixture
def layout(tmp_path):
    """<root>/<host>/<service>/...: h1/nova, h1/cinder, h2/glance."""
    root = tmp_path / "sos"
    for rel, seed in (("h1/nova/nova-compute.log", "S04"), ("h1/cinder/cinder-volume.log", "S10"),
                      ("h2/glance/glance-api.log", "S10")):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes((SEEDS / seed / "compute/nova-compute.log").read_bytes())
    return root


def _deny(monkeypatch, *dirs):
    """os.scandir of ``dirs`` fails as for a directory without read permission
    (tests run as root, where mode bits do not stop reads)."""
    denied = {os.fspath(d) for d in dirs}
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_subdirectory_is_a_warning_and_the_rest_is_analysed(layout, monkeypatch, capsys):
    _deny(monkeypatch, layout / "h1" / "nova")
    rc, out, err = run_main(capsys, "analyze", layout, "--format", "jsonl", "--dead-letter", "-")
    assert (f"osloscope: warning: cannot read directory {layout / 'h1' / 'nova'}: Permission denied; "
            "its logs are not analysed") in err.splitlines()
    assert rc == 1
    assert {(d["host"], d["type"]) for d in docs_of(out)} == {("h1", "auth_failure"), ("h2", "auth_failure")}
    assert "2 file(s)" in err


def test_discover_reports_each_unreadable_directory(layout, monkeypatch):
    from pipeline.sources.files import discover

    _deny(monkeypatch, layout / "h1" / "nova", layout / "h2")
    warnings: list[str] = []
    files = discover([str(layout)], on_warning=warnings.append)
    assert [f.source.host for f in files] == ["h1"]
    assert warnings == [f"cannot read directory {layout / 'h1' / 'nova'}: Permission denied; its logs are not analysed",
                        f"cannot read directory {layout / 'h2'}: Permission denied; its logs are not analysed"]


def test_nothing_readable_left_is_an_error_that_says_so(layout, monkeypatch, capsys):
    _deny(monkeypatch, layout / "h1", layout / "h2")
    rc, out, err = run_main(capsys, "analyze", layout, "--dead-letter", "-")
    assert rc == 2
    assert err.startswith(f"osloscope: error: {layout}: no log file could be read: 2 directories could "
                          f"not be read ({layout / 'h1'}: Permission denied and 1 more)")
    assert "holds no log files" not in err
    _deny(monkeypatch, layout)
    rc, out, err = run_main(capsys, "analyze", layout, "--dead-letter", "-")
    assert rc == 2
    assert err.strip() == f"osloscope: error: {layout}: cannot read directory: Permission denied"


# --- 3. JSONFormatter records: the record's hostname over the placeholder --------------------

def _json_record(hostname: str, message: str = "Instance failed to spawn") -> str:
    return json.dumps({"message": message, "asctime": "2023-01-01 10:00:00,123", "name": "nova.compute.manager",
                       "levelname": "ERROR", "created": 1672567200.123, "process": 42, "hostname": hostname,
                       "context": {"request_id": "req-11111111-2222-3333-4444-555555555555"}})


def _hosts(stdout: str) -> list[str]:
    return [d["host"]["name"] for d in docs_of(stdout)]


def test_json_record_hostname_wins_over_the_placeholder(tmp_path):
    f = tmp_path / "nova-compute.log"
    f.write_text(_json_record("cmp1") + "\n" + _json_record("cmp2") + "\n")
    r = osloscope("parse", f)
    assert r.returncode == 0, r.stderr
    assert _hosts(r.stdout) == ["cmp1", "cmp2"]


def test_explicit_host_and_layout_host_win_over_the_record_hostname(tmp_path):
    f = tmp_path / "ctl7" / "nova" / "nova-compute.log"
    f.parent.mkdir(parents=True)
    f.write_text(_json_record("cmp1") + "\n")
    assert _hosts(osloscope("parse", f, "--host", "given").stdout) == ["given"]
    assert _hosts(osloscope("parse", tmp_path).stdout) == ["ctl7"]


def test_plain_text_lines_keep_the_placeholder_host(tmp_path):
    f = tmp_path / "nova-compute.log"
    f.write_text("2023-01-01 10:00:00.123 42 INFO nova.compute.manager [-] plain\n"
                 + _json_record("cmp1") + "\n")
    assert sorted(_hosts(osloscope("parse", f).stdout)) == ["cmp1", "unknown"]


# --- 4. shipper envelopes: rsyslog's leading space, Fluent Bit's trailing newline ------------

def _envelope_lines(*messages: str, key: str = "message", **fields) -> str:
    return "".join(json.dumps({"host": "ctl9", "programname": "nova-conductor", **fields, key: m}) + "\n"
                   for m in messages)


def test_rsyslog_message_with_a_leading_space_is_parsed():
    (ev,) = parse_text(_envelope_lines(" 2023-01-01 10:00:04.000 58 INFO nova.conductor.manager [-] rsyslog msg"))
    assert ev.kind != "unparsed", ev.reason
    assert (ev.message, ev.level, ev.pid, ev.host) == ("rsyslog msg", "INFO", 58, "ctl9")


def test_rsyslog_continuation_lines_keep_their_indentation():
    text = _envelope_lines(" 2023-01-01 10:00:04.000 58 ERROR nova.conductor.manager [-] boom",
                           "Traceback (most recent call last):",
                           '  File "x.py", line 1, in f',
                           "ValueError: bad",
                           " 2023-01-01 10:00:05.000 58 INFO nova.conductor.manager [-] next")
    evs = parse_text(text)
    assert [e.kind != "unparsed" for e in evs] == [True, True]
    assert '\n  File "x.py", line 1, in f\n' in evs[0].message
    assert evs[1].message == "next"


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_fluent_bit_log_field_trailing_newline_is_dropped(end):
    line = "2023-01-01 10:00:02.000 56 WARNING cinder.volume.manager [-] fluent-bit msg"
    text = json.dumps({"date": 1672567202.0, "log": line + end, "file": "/var/log/cinder/volume.log",
                       "hostname": "vol3"}) + "\n"
    evs = parse_text(text)
    assert len(evs) == 1, [(e.kind, e.message) for e in evs]
    assert evs[0].message == "fluent-bit msg" and evs[0].original == line and evs[0].host == "vol3"


# --- 5. globs: the literal directory before the first wildcard is the layout root -----------

@pytest.fixture
def glob_tree(tmp_path):
    g = tmp_path / "g"
    for host, seed in (("hostA", "S04"), ("hostB", "S10")):
        d = g / host / "nova"
        d.mkdir(parents=True)
        (d / "nova-compute.log.1").write_bytes((SEEDS / seed / "compute/nova-compute.log").read_bytes())
    return g


@pytest.mark.parametrize("pattern", ["*/nova/*", "host*/nova/nova-compute.log.1", "*", "*/nova"])
def test_glob_takes_hosts_from_the_layout_below_its_literal_directory(glob_tree, pattern):
    r = osloscope("analyze", f"{glob_tree}/{pattern}", "--format", "jsonl", "--dead-letter", "-")
    assert r.returncode == 1, r.stderr
    assert {(d["host"], d["type"]) for d in docs_of(r.stdout)} == {("hostA", "disk_full"),
                                                                   ("hostB", "auth_failure")}


def test_glob_with_explicit_host_and_relative_glob(glob_tree):
    r = osloscope("analyze", f"{glob_tree}/*/nova/*", "--host", "h9", "--format", "jsonl", "--dead-letter", "-")
    assert {d["host"] for d in docs_of(r.stdout)} == {"h9"}
    r = osloscope("analyze", "g/*/nova/*", "--format", "jsonl", "--dead-letter", "-", cwd=glob_tree.parent)
    assert {d["host"] for d in docs_of(r.stdout)} == {"hostA", "hostB"}


def test_analyze_help_documents_the_glob_layout():
    r = osloscope("analyze", "--help")
    assert "before its first wildcard" in r.stdout
