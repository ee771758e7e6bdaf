"""Secrets are masked before events leave the parser; everything else stays."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from pipeline.parsing.redact import needs_redaction, redact_text
from support import CORPUS, parse_text

CASES = [
    ("connection = mysql+pymysql://nova:S3cr3t!@192.0.2.10/nova?charset=utf8",
     "connection = mysql+pymysql://nova:***@192.0.2.10/nova?charset=utf8"),
    ("transport_url = rabbit://openstack:rabbitpw@ctl1:5672,openstack:rabbitpw@ctl2:5672/",
     "transport_url = rabbit://openstack:***@ctl1:5672,openstack:***@ctl2:5672/"),
    ("REQ: curl -i http://ctl:5000/v3/auth/tokens -d '{\"auth\": {\"identity\": {\"password\": "
     "{\"user\": {\"name\": \"admin\", \"password\": \"hunter22\"}}}}}'",
     "REQ: curl -i http://ctl:5000/v3/auth/tokens -d '{\"auth\": {\"identity\": {\"password\": "
     "{\"user\": {\"name\": \"admin\", \"password\": \"***\"}}}}}'"),
    ("RESP: [201] {'x-subject-token': 'gAAAAABk1x2y3z4abcdefghijklmnop', 'vary': 'X-Auth-Token'}",
     "RESP: [201] {'x-subject-token': '***', 'vary': 'X-Auth-Token'}"),
    ("-H \"X-Auth-Token: 7202fb95db2449268229c3bc8acb014d\"", "-H \"X-Auth-Token: ***\""),
    ("Running cmd: openstack --os-username admin --os-password Adm1nPw server list",
     "Running cmd: openstack --os-username admin --os-password *** server list"),
    ("admin_password=verysecret rabbit_password = guest2", "admin_password=*** rabbit_password = ***"),
]

HEALTHY = [
    "Authorization failed for user admin from 203.0.113.45",
    "Unable to validate token: Failed to fetch token data from identity server",
    "Access denied for user 'nova'@'%' to database 'nova_api'",
    "Password change requested for user 4c0f; token revoked",
    "GET http://ctl:8774/v2.1/servers/detail HTTP/1.1 status: 200 len: 1893 time: 0.09",
]


@pytest.mark.parametrize("text,masked", CASES)
def test_secrets_are_masked(text, masked):
    assert redact_text(text) == masked
    assert redact_text(masked) == masked            # idempotent


@pytest.mark.parametrize("text", HEALTHY)
def test_text_without_secret_values_is_untouched(text):
    assert redact_text(text) == text


def test_parser_masks_message_original_and_traceback_but_keeps_the_fields():
    line = ("2017-06-06 08:12:41.201 2931 ERROR oslo_db.sqlalchemy.engines [req-7c1d0d3e-5b8e-4c47-9d0e-"
            "2f1b6f7d9a10 - - - - -] Database server has gone away: mysql+pymysql://nova:N0vaPw@db/nova\n"
            "2017-06-06 08:12:41.201 2931 ERROR oslo_db.sqlalchemy.engines Traceback (most recent call last):\n"
            "2017-06-06 08:12:41.201 2931 ERROR oslo_db.sqlalchemy.engines OperationalError: "
            "connect to mysql+pymysql://nova:N0vaPw@db/nova failed\n")
    (ev,) = parse_text(line)
    for value in (ev.message, ev.original, ev.stack_trace):
        assert "N0vaPw" not in value and "nova:***@db" in value
    assert ev.request_id == "req-7c1d0d3e-5b8e-4c47-9d0e-2f1b6f7d9a10"
    assert ev.error_type == "OperationalError"


def test_real_keystone_tokens_in_the_corpus_are_masked():
    text = (CORPUS / "olm_juno_neutron-server_L1-30.log").read_text()
    assert "7202fb95db2449268229c3bc8acb014d" in text
    events = parse_text(text)
    assert not any("7202fb95db2449268229c3bc8acb014d" in (e.original or "") for e in events)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_redaction_never_raises_and_only_touches_hinted_text(text):
    out = redact_text(text)
    assert isinstance(out, str)
    if not needs_redaction(text):
        assert out == text
