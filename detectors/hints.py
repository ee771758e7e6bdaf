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

from typing import Iterable

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
MAX_WORDS = 128                 # the native core keeps the bits in 128 bits
assert len(BIT) == len(KEYWORDS) <= MAX_WORDS


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


def hints_of(text: str, words: tuple[str, ...] = KEYWORDS) -> int:
    """The reference: the bits of every keyword ``text`` contains."""
    out = 0
    for i, word in enumerate(words):
        if word in text:
            out |= 1 << i
    return out


class Vocabulary:
    """The keywords a parser tests: KEYWORDS first (so the bits above are
    the same in every vocabulary), then the ``hint_words`` other detectors
    ask for (the known-issue signatures' keywords), MAX_WORDS at most.
    An event's ``hint_vocab`` names the vocabulary of its ``hints``."""

    __slots__ = ("words", "bit")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        words = list(KEYWORDS)
        seen = set(words)
        for w in extra:
            if w and w not in seen and len(words) < MAX_WORDS:
                seen.add(w)
                words.append(w)
        self.words: tuple[str, ...] = tuple(words)
        self.bit = {w: 1 << i for i, w in enumerate(self.words)}

    def mask(self, words: Iterable[str]) -> int | None:
        """The bits of ``words``; None when one of them is not in the vocabulary."""
        out = 0
        for w in words:
            bit = self.bit.get(w)
            if bit is None:
                return None
            out |= bit
        return out


BASE = Vocabulary()


def vocabulary(detectors: Iterable) -> Vocabulary:
    """The vocabulary for a set of detectors (their ``hint_words``)."""
    extra = [w for d in detectors for w in getattr(d, "hint_words", ())]
    return Vocabulary(extra) if extra else BASE
