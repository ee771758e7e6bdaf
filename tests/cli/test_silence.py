"""``osloscope silence add|list|expire`` (pipeline/cli/silence.py)."""
from __future__ import annotations

import json


def test_silence_cli_add_list_expire(no_settings, tmp_path, monkeypatch, capsys):
    from pipeline import cli
    monkeypatch.setenv("OSLOSCOPE_NOTIFY_STATE_DIR", str(tmp_path / "st"))

    def run(*a):
        rc = cli.main(["silence", *a])
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, out, err = run("add", "--matcher", "type=disk_full", "--matcher", "host=compute-2",
                       "--duration", "2h", "--comment", "replacing the disk", "--author", "alice")
    assert rc == 0, err
    sid = out.strip()
    rows = [json.loads(line) for line in run("list", "--format", "json")[1].splitlines()]
    assert [(r["id"], r["state"], r["comment"], r["createdBy"]) for r in rows] == \
        [(sid, "active", "replacing the disk", "alice")]
    assert [f"{m['name']}{m['op']}{m['value']}" for m in rows[0]["matchers"]] == \
        ["type=disk_full", "host=compute-2"]
    table = run("list")[1]
    assert "type=disk_full host=compute-2" in table and "replacing the disk" in table
    assert run("expire", sid)[0] == 0
    assert run("list", "--format", "json")[1] == ""
    assert sid in run("list", "--all")[1]
    rc, _, err = run("add", "--matcher", "hots=compute-2", "--comment", "x")
    assert rc == 2 and "unknown label 'hots'" in err
    assert run("expire", "nope")[0] == 2
    on_disk = json.loads((tmp_path / "st" / "silences.json").read_text())
    assert on_disk["version"] == 1 and len(on_disk["silences"]) == 1
