"""Keyword hints: which of the detectors' trigger substrings an event's text
holds, as one int of bits.

Every detector first asks "does the text contain one of my substrings?"
before it runs a regex; on most records the answer is no. The native core
(``pipeline._native``) answers that for all detectors in one pass over the
text while it builds the event, and stores the bits as ``Event.hints``. A
detector then tests one bit mask instead of scanning the text again. An event
built in Python has ``hints`` None and the detector scans as before: the
bits are only a necessary condition (a zero bit means the substring is not
in ``Event.text()``), so both paths give the same incidents.
"""
from __future__ import annotations

# The auth_failures trigger phrases: its prefilter is exactly "one of these
# occurs", so the bits answer it without a regex.
AUTH_PHRASES = (
    "Authorization failed", "Could not find user", "The account is", "The password is expired",
    "Access denied for user", "ACCESS_REFUSED", "Login was refused", "Check login credentials",
    "login refused", "Not authorized for image", "ImageNotAuthorized", "admin token",
    "Unable to validate token", "rejected authorization", "validating token", "unauthorized exception",
)
# The retry_exhaustion rules' prefilter phrases, likewise.
RETRY_PHRASES = (
    "did not finish being created", "Exceeded max", "DB exceeded retry", "done trying",
    "failed network setup after", "out of retries", "Stopping Swift retries", "Run out of retry",
)
# Case-sensitive substrings of Event.text() (message + "\n" + stack trace).
KEYWORDS: tuple[str, ...] = AUTH_PHRASES + RETRY_PHRASES + (
    # disk_full: one of these is in every TRIGGER match
    "space", "Errno 28", "ENOSPC", "while writing", "StorageFull", "storage media",
    # retry_exhaustion: one of these is in every rule, attempt and reschedule pattern
    "retr", "did not finish", "network setup", "SQL connection", "glance server", "re-scheduled",
    "last host",
)
BIT = {word: 1 << i for i, word in enumerate(KEYWORDS)}
assert len(BIT) == len(KEYWORDS) <= 64


def mask(*words: str) -> int:
    out = 0
    for w in words:
        out |= BIT[w]
    return out


AUTH = mask(*AUTH_PHRASES)
DISK = mask("space", "Errno 28", "ENOSPC", "while writing", "StorageFull", "storage media")
RETRY_PREFILTER = mask(*RETRY_PHRASES)
RETRY = mask("retr", "Exceeded max", "did not finish", "done trying", "network setup", "SQL connection",
             "glance server", "re-scheduled", "last host")
RESCHEDULED = BIT["re-scheduled"]


def hints_of(text: str) -> int:
    """The reference: the bits of every keyword ``text`` contains."""
    out = 0
    for word, bit in BIT.items():
        if word in text:
            out |= bit
    return out
