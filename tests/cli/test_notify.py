"""``osloscope notify`` (pipeline/cli/notify.py)."""
from __future__ import annotations


def test_notify_command_needs_a_receiver(no_settings, capsys):
    from pipeline import cli
    assert cli.main(["notify"]) == 2
    assert "no receivers" in capsys.readouterr().err


def test_notify_help_documents_the_alertmanager_receiver(no_settings, capsys):
    import pytest

    from pipeline import cli
    with pytest.raises(SystemExit) as info:
        cli.main(["notify", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert 'style = "alertmanager_api"' in out and "POST /api/v2/alerts" in out
    assert "resend_interval" in out and "resolve_timeout" in out


def test_notify_refuses_an_alertmanager_receiver_without_resolves(no_settings, capsys):
    from pipeline import cli
    (no_settings / "osloscope.toml").write_text(
        '[[notify.receivers]]\nname = "am"\nurl = "http://127.0.0.1:9093"\n'
        'style = "alertmanager_api"\nsend_resolved = false\n')
    assert cli.main(["notify"]) == 2
    assert "notify.receivers[0].send_resolved: style alertmanager_api always sends resolves" in \
        capsys.readouterr().err
