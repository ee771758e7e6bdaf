"""The ledger of ``osloscope account`` (pipeline/operations/accounting.py) without the
services: lines sent counted once however often they were shipped, dead letters counted
once however often they were written, files attributed, status and exit codes; and the
embedded mode (``osloscope account PATH``) against an independent count of the files."""
from __future__ import annotations

import json
import shutil

from support import SAMPLES, run_main

from pipeline.operations.accounting import Ledger, _Starts, raw_source, reason_kind
from pipeline.streaming.stages import RawMessage

PROBE = b"".join([
    b"2017-06-06 10:00:00.000 1 INFO nova.compute.manager [-] ok\n",
    b"2017-13-45 25:61:99.000 1 ERROR nova.compute.manager [-] impossible date\n",
    b"  continuation of the impossible record\n",
    b"\x00" * 700 + b"\n",
    b"2017-06-06 10:00:02.000 1 INFO nova.compute.manager [-] cut" + b"\x00" * 64,
    b"2017-06-06 10:00:03.000 2 INFO nova.compute.manager [-] restarted\n",
    b"\x01\x02\x03\x04\xff\xfe\xfd\xfc\n",
    "  caf\xe9 cr\xe8me".encode("latin-1") + b"\n",
    b"9999-12-31 23:59:59.000 2 INFO nova.compute.manager [-] far future\n",
    b"last line without a newline"])


def test_resent_lines_count_once_and_pieces_continue_without_a_newline():
    s = _Starts()
    assert s.add(0, 9, False) and s.add(10, 4, False) and s.add(15, 1_000_000, True)
    assert s.add(1_000_015, 3, False)                       # the piece's rest, right after it
    assert not s.add(10, 4, False) and not s.add(1_000_015, 3, False)     # shipped again
    assert s.add(2_000_000, 10, False)                       # out of order: a run of its own
    assert not s.add(2_000_000, 10, False)
    assert s.add(1_000_019, 2, False) and (s.firsts, s.nexts) == ([0, 2_000_000], [1_000_022, 2_000_011])


def test_the_ledger_counts_what_was_sent_once_and_compares():
    led = Ledger("pipeline")
    for _ in range(2):                                       # the shipper sent it all twice
        led.sent("h", "/f", 10, offset=0, generation="1:2")
        led.sent("h", "/f", 20, offset=11, generation="1:2")
    led.sent("h", "/f", 5, offset=0, generation="1:3")      # rotated: a new file under the path
    led.indexed("h", "/f", 1, 2, 30)
    letter = {"reason": "invalid timestamp '2017-13-45 25:61:99': month must be in 1..12", "host": "h",
              "file": "/f", "lines": 1, "bytes": 5, "id": "x"}
    led.dead_letter(letter)
    led.dead_letter(dict(letter))                            # written twice
    [acc] = led.rows()
    assert (acc.sent_lines, acc.sent_bytes, acc.resent_lines) == (3, 35, 2)
    assert (acc.dead_letters, acc.redelivered_letters, acc.missing_lines, acc.missing_bytes) == (1, 1, 0, 0)
    assert acc.reasons == {"invalid timestamp …": 1} and led.status() == "accounted"
    led.sent("h", "/f", 7, offset=32, generation="1:2")     # a line not in Elasticsearch
    assert led.missing_files()[0].missing_lines == 1 and led.status() == "missing"
    led.lag = {"raw/0": 3}
    assert led.status() == "in_flight"
    led.lag = {"raw/0": 0}
    assert led.status() == "missing"


def test_records_of_a_central_log_file_are_filed_under_the_host_that_sent_it():
    led = Ledger("pipeline")
    led.sent("loghost", "/var/log/remote/all.log", 100, lines=4)
    led.indexed("controller0", "/var/log/remote/all.log", 2, 3, 80)
    led.dead_letter({"reason": "binary data", "host": "compute1", "file": "/var/log/remote/all.log",
                     "lines": 1, "bytes": 20})
    led.attribute_by_path()
    [acc] = led.rows()
    assert (acc.host, acc.event_lines, acc.dead_lines, acc.missing_lines) == ("loghost", 3, 1, 0)


def test_reason_kinds_leave_out_the_particulars():
    assert reason_kind("700 NUL bytes: what a crash leaves") == "N NUL bytes"
    assert reason_kind("invalid timestamp '2017-13-45': x") == "invalid timestamp …"
    assert reason_kind("rejected by Elasticsearch (400): mapper") == "rejected by Elasticsearch (N)"


def test_raw_records_of_other_shippers_are_filed_by_their_envelope():
    env = b'{"message": "x", "host": {"name": "h2"}, "log": {"file": {"path": "/l"}, "offset": 7}}'
    assert raw_source(RawMessage("raw", 0, 0, b"k", env, {}))[:3] == ("h2", "/l", 7)
    hdr = {"host": b"h", "path": b"/p", "offset": b"12", "inode": b"1:2"}
    assert raw_source(RawMessage("raw", 0, 0, b"h", b"line", hdr)) == ("h", "/p", 12, "1:2")


def _probe_dir(tmp_path):
    root = tmp_path / "logs"
    shutil.copytree(SAMPLES, root)
    probe = root / "compute-9" / "nova" / "nova-compute.log"
    probe.parent.mkdir(parents=True)
    probe.write_bytes(PROBE)
    return root, probe


def test_account_of_local_files_matches_an_independent_count(tmp_path, capsys):
    root, probe = _probe_dir(tmp_path)
    rc, out, err = run_main(capsys, "account", root, "--format", "json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["status"] == "accounted" and doc["mode"] == "files"
    files = {f["file"]: f for f in doc["files"]}
    for path in root.rglob("*.log"):
        data = path.read_bytes()
        f = files[str(path)]
        n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
        assert (f["sent"]["lines"], f["sent"]["bytes"]) == (n_lines, len(data) - data.count(b"\n"))
        assert f["indexed"]["lines"] + f["dead_lettered"]["lines"] == n_lines
        assert f["missing"] == {"lines": 0, "bytes": 0}
    p = files[str(probe)]
    assert p["dead_lettered"]["lines"] == 4 and p["dead_lettered"]["letters"] == 4
    assert set(p["dead_lettered"]["reasons"]) == {"invalid timestamp …", "N NUL bytes", "binary data"}
    rc, table, _err = run_main(capsys, "account", root, "--problems")
    assert rc == 0 and "every line accounted for" in table
    assert "compute-9" in table and "controller-1" not in table.split("TOTAL")[0]


def test_analyze_and_its_dead_letter_file_account_for_every_line(tmp_path, capsys):
    root, probe = _probe_dir(tmp_path)
    dl = tmp_path / "dead.jsonl"
    rc, _out, err = run_main(capsys, "analyze", root, "--dead-letter", dl, "--jobs", "2")
    assert rc in (0, 1), err
    letters = [json.loads(x) for x in dl.read_text().splitlines()]
    n_lines = sum(p.read_bytes().count(b"\n") + (not p.read_bytes().endswith(b"\n")) for p in root.rglob("*.log"))
    dead = sum(d["lines"] for d in letters)
    assert dead == 4 and {d["file"] for d in letters} == {str(probe)}
    assert f"{n_lines} lines ({n_lines - dead} in " in err and f", {dead} in {len(letters)} dead letters)" in err
    assert "UNACCOUNTED" not in err
