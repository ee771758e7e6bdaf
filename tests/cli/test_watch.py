"""``osloscope watch`` (pipeline/cli/watch.py): usage errors, printing incidents, stopping on
SIGTERM. Run as ``python -m pipeline.local.watch``, which hands over to the command line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from support import FIXTURES, ROOT

SEEDS = FIXTURES / "seeds"


@pytest.mark.parametrize("args,needle", [
    (["/nonexistent/nova.log"], "no such file"),
    (["/nonexistent/*.log"], "glob matched nothing"),
    ([str(SEEDS), "--tz", "Mars/Olympus"], "is not a timezone"),
])
def test_cli_usage_errors_exit_2(args, needle):
    r = subprocess.run([sys.executable, "-m", "pipeline.local.watch", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=30)
    assert r.returncode == 2 and needle in r.stderr


def test_cli_prints_incidents_and_stops_cleanly_on_sigterm(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "pipeline.local.watch", str(SEEDS / "S04"), "--from-start",
                          "--format", "jsonl", "--dead-letter", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        line = p.stdout.readline()
        assert json.loads(line)["type"] == "disk_full"
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert b"stopped:" in err
