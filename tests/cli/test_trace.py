"""``osloscope trace ID`` (pipeline/cli/trace.py): the timeline from files, exit codes."""
from __future__ import annotations

from support import FIXTURES, osloscope

SEEDS = FIXTURES / "seeds"
S20_REQ = "req-c5016b48-399b-44f8-adea-a86421f1e129"
VOLUME = "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"


def test_trace_from_files_prints_the_timeline_with_the_error_marked():
    r = osloscope("trace", S20_REQ, "--logs", SEEDS / "S20")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"trace {S20_REQ}: 6 record(s), 1 request(s), host(s) compute")
    marked = [x for x in lines if x.startswith("!!")]
    assert len(marked) == 2 and "Instance faile" in marked[0] and "nova-compute" in marked[0]
    i = lines.index(marked[0])
    assert "-> VolumeNotCreated: Volume dd04f3d2-63cb-45f2-9a31-9ecc523bd40f did not finish" in lines[i + 1]
    assert any(x.startswith("   2017-06-06 09:30:28.513  compute") and "WARNING" in x for x in lines)
    assert lines[-2].startswith("root cause: cinder-volume -- nova-compute on compute: VolumeNotCreated")


def test_trace_by_volume_id_follows_the_request_and_reports_misses():
    r = osloscope("trace", VOLUME, "--logs", SEEDS / "S20")
    assert r.returncode == 0, r.stderr
    assert "6 record(s)" in r.stdout.splitlines()[0]          # the request id was followed
    assert osloscope("trace", "req-00000000-0000-4000-8000-000000000000", "--logs", SEEDS / "S20").returncode == 1
    bad = osloscope("trace", "not-an-id", "--logs", SEEDS / "S20")
    assert bad.returncode == 2 and "neither a request id" in bad.stderr
