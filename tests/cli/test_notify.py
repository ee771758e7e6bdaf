"""``osloscope notify`` (pipeline/cli/notify.py)."""
from __future__ import annotations


def test_notify_command_needs_a_receiver(no_settings, capsys):
    from pipeline import cli
    assert cli.main(["notify"]) == 2
    assert "no receivers" in capsys.readouterr().err
