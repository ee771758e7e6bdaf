"""``osloscope notify`` (pipeline/cli/notify.py)."""
from __future__ import annotations

import os


def test_notify_command_needs_a_receiver(tmp_path, monkeypatch, capsys):
    from pipeline import cli
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OSLOSCOPE_"):
            monkeypatch.delenv(name)
    assert cli.main(["notify"]) == 2
    assert "no receivers" in capsys.readouterr().err
