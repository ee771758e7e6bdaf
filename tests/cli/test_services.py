"""``osloscope services up|down|status`` (pipeline/cli/services.py), without starting anything."""
from __future__ import annotations

import json

from support import run_main


def test_status_of_services_never_started_exits_3(tmp_path, capsys):
    code, out, _ = run_main(capsys, "services", "status", "--home", tmp_path, "--json")
    assert code == 3
    report = json.loads(out)
    assert set(report) == {"kafka", "elasticsearch"}
    assert not any(info["running"] for info in report.values())
    code, out, _ = run_main(capsys, "services", "status", "--home", tmp_path, "--only", "kafka")
    assert code == 3 and out.split()[:2] == ["kafka", "stopped"] and "elasticsearch" not in out


def test_services_needs_an_action(capsys):
    code, _, err = run_main(capsys, "services")
    assert code == 2 and "required" in err
