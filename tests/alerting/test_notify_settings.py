"""The ``[notify]`` settings and ``[[notify.receivers]]`` tables (pipeline/settings.py)."""
from __future__ import annotations

import pytest

from pipeline import settings as S
from pipeline.settings import SettingsError, load


def test_notify_settings_from_file_and_env(tmp_path):
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text("""
[notify]
group_wait = 10
group_by = ["type"]

[[notify.receivers]]
name = "ops"
url = "https://hooks.example/ops"
style = "alertmanager"
secret_env = "OPS_HOOK_SECRET"
types = ["disk_full"]
hosts = ["compute-*"]

[[notify.receivers]]
name = "chat"
url = "http://chat.example/hook"
style = "slack"
send_resolved = false
""")
    s = load(str(cfg), env={"OPS_HOOK_SECRET": "from-env", "OSLOSCOPE_NOTIFY_GROUP_BY": "type,host",
                            "OSLOSCOPE_NOTIFY_REPEAT_INTERVAL": "600"})
    assert s.notify.group_wait == 10.0 and s.notify.group_by == ("type", "host")
    assert s.notify.repeat_interval == 600.0 and s.notify.state_dir == ".osloscope/notify"
    ops, chat = s.receivers
    assert ops.secret == "from-env" and ops.types == ("disk_full",) and ops.hosts == ("compute-*",)
    assert ops.timeout == 10.0 and ops.verify_tls and ops.max_backoff == 300.0
    assert chat.send_resolved is False and chat.secret == ""
    shown = S.to_toml(s)
    assert "from-env" not in shown and "[[notify.receivers]]" in shown
    again = tmp_path / "shown.toml"
    again.write_text(shown)
    assert load(str(again), env={"OPS_HOOK_SECRET": "from-env"}) == s
    assert S.defaults().receivers == () and S.defaults().notify.group_by == ("type", "host")


def test_notify_settings_errors_are_located_and_reported_together(tmp_path):
    cfg = tmp_path / "osloscope.toml"
    cfg.write_text("""
[notify]
group_by = ["type", "hostname"]
group_interval = 0

[[notify.receivers]]
name = "ops"
url = "ftp://hooks.example/ops"
style = "pagerduty"
severities = ["fatal"]
secret = "x"
secret_env = "Y"
timeot = 3

[[notify.receivers]]
name = "ops"
url = "http://b.example/"
secret_env = "UNSET_SECRET_VAR"
ca_file = "/nonexistent.pem"

[[notify.receivers]]
style = "json"
""")
    with pytest.raises(SettingsError) as info:
        load(str(cfg), env={"OSLOSCOPE_NOTIFY_RECEIVERS": "[]"})
    errors = "\n".join(info.value.errors)
    p = str(cfg)
    for needle in (
            f"{p}: notify.group_by: unknown label(s) 'hostname'",
            f"{p}: notify.group_interval: must be > 0",
            f"{p}: notify.receivers[0].url: expected an http:// or https:// URL",
            f"{p}: notify.receivers[0].style: must be one of 'json', 'alertmanager', 'slack', "
            "'alertmanager_api', got 'pagerduty'",
            f"{p}: notify.receivers[0].severities: unknown severity 'fatal'",
            f"{p}: notify.receivers[0].timeot: unknown setting; did you mean timeout? (line 13)",
            f"{p}: notify.receivers[0].secret_env: set either secret or secret_env, not both (line 12)",
            f"{p}: notify.receivers[1].secret_env: environment variable UNSET_SECRET_VAR is not set",
            f"{p}: notify.receivers[1].ca_file: no such file",
            f"{p}: notify.receivers[1].name: 'ops' is also notify.receivers[0].name",
            f"{p}: notify.receivers[2]: missing name",
            f"{p}: notify.receivers[2]: missing url",
            "env OSLOSCOPE_NOTIFY_RECEIVERS: notify.receivers cannot be set from the environment"):
        assert needle in errors, needle
