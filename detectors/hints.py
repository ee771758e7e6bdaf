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

# Case-sensitive substrings of Event.text() (message + "\n" + stack trace).
KEYWORDS: tuple[str, ...] = (
    # auth_failures
    "uthoriz", "token", "ogin", "denied", "REFUSED", "find user", "ccount is", "assword is",
    # disk_full
    "space", "Errno 28", "ENOSPC", "while writing", "StorageFull", "storage media",
    # retry_exhaustion
    "retr", "Exceeded max", "did not finish", "done trying", "network setup", "SQL connection",
    "glance server", "re-scheduled", "last host",
)
BIT = {word: 1 << i for i, word in enumerate(KEYWORDS)}


def mask(*words: str) -> int:
    out = 0
    for w in words:
        out |= BIT[w]
    return out


AUTH = mask("uthoriz", "token", "ogin", "denied", "REFUSED", "find user", "ccount is", "assword is")
DISK = mask("space", "Errno 28", "ENOSPC", "while writing", "StorageFull", "storage media")
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
