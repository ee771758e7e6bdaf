"""The Notifier (pipeline/alerting/notifier.py): one per state_dir, built from plain settings
objects, fed the documents the worker produces."""
from __future__ import annotations

from dataclasses import replace

import pytest

from notify_support import T0, incident, notifier, receiver, resolved
from pipeline.alerting.notifier import NotifierBusy


def test_incident_factory_matches_the_schema(incident_validator):
    for doc in (incident(1), resolved(incident(2, type_="auth_failure"), T0 + 5)):
        assert not list(incident_validator.iter_errors(doc))


def test_one_notifier_per_state_dir(tmp_path, hooks):
    n = notifier(tmp_path, receiver(hooks()))
    with pytest.raises(NotifierBusy):
        notifier(tmp_path, receiver(hooks()))
    n.close()


def test_notifier_core_is_independent_of_settings_loading(tmp_path, hooks):
    """Frozen settings objects can be varied with dataclasses.replace, like the loader builds them."""
    hook = hooks()
    base = receiver(hook)
    n = notifier(tmp_path, replace(base, style="slack"), group_wait=0)
    n.handle(incident(1), T0)
    assert n.tick(T0).delivered == 1 and "blocks" in hook.json()
    n.close()
