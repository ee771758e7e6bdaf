"""Secrets out of log text before it leaves the parser.

OpenStack services log credentials more often than anyone likes: database
URLs with the password in them (``mysql+pymysql://nova:SECRET@db/nova``),
request bodies with ``"password": "..."``, ``X-Auth-Token`` headers, CLI
arguments like ``--os-password``. oslo.utils' ``mask_password`` catches some
of them at the source; this catches them again for what reaches Kafka,
Elasticsearch, incident evidence and dead letters. Values become ``***``
(oslo's own mask), keys and structure stay, so the line remains greppable.

One regex search over the record's original text decides whether anything
needs masking; most records pay only for that search.
"""
from __future__ import annotations

import re

MASK = "***"
_KEYS = (r"(?:admin_|os[-_]|auth_|db_|service_|rabbit_|transport_)?"
         r"(?:password|passwd|pass|pwd|secret|secret_key|api_key|apikey|credential|credentials)")
# any hint of a secret: a password-ish key, a token header, credentials inside a URL
HINT = re.compile(r"(?i)pass|secret|token|api_?key|credential|://[^\s/@:]+:[^\s/@]*@")

URL = re.compile(r"\b[a-zA-Z][\w+.-]*://[^\s'\"]+")
URL_CREDENTIALS = re.compile(r"(?P<pre>(?:://|,)[^\s/@:,'\"]+:)(?P<secret>[^\s/@'\",]+)(?=@)")
KEY_VALUE = re.compile(
    r"(?P<pre>(?i:['\"]?" + _KEYS + r"['\"]?)\s*(?:=|:|=>)\s*['\"]?)"
    r"(?P<secret>(?!\*\*\*)[^\s'\",;{}\[\]&)]+)")
TOKEN_VALUE = re.compile(
    r"(?P<pre>(?i:['\"]?(?:x-auth-token|x-subject-token|x-service-token|auth_token|token|admin_token)"
    r"['\"]?)\s*(?:=|:)\s*['\"]?)(?P<secret>(?:gAAAA|MII)?[A-Za-z0-9_\-+/=]{16,})")
CLI_PASSWORD = re.compile(r"(?P<pre>--(?:os-)?password[= ])(?P<secret>(?!\*\*\*)\S+)", re.I)

PATTERNS = (KEY_VALUE, TOKEN_VALUE, CLI_PASSWORD)


def _mask(m: re.Match) -> str:
    return m.group("pre") + MASK


def redact_text(text: str | None) -> str | None:
    """``text`` with every secret value replaced by ``***``."""
    if not text or not HINT.search(text):
        return text
    if "://" in text:      # user:password@host, also in multi-host URLs (a:b@h1,c:d@h2)
        text = URL.sub(lambda m: URL_CREDENTIALS.sub(_mask, m.group(0)), text)
    for pattern in PATTERNS:
        text = pattern.sub(_mask, text)
    return text


FIELDS = ("message", "original", "stack_trace", "error_message", "reason")


def redact_event(ev) -> None:
    """Mask secrets in an event's text fields, in place (cheap when none)."""
    original = ev.original
    if original is not None and not HINT.search(original):
        return
    for name in FIELDS:
        value = getattr(ev, name)
        if value:
            new = redact_text(value)
            if new is not value:
                setattr(ev, name, new)
