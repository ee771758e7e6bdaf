"""detectors.hints: the keyword bits are a necessary condition only, so a
detector gives the same incidents with them as without them."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import Engine, default_detectors
from detectors.auth_failures import _PREFILTER as AUTH_PREFILTER
from detectors.hints import AUTH, BIT, KEYWORDS, RETRY_PREFILTER, hints_of
from detectors.model import Event
from detectors.retry_exhaustion import _PREFILTER as RETRY_PREFILTER_RE
from tests.support import CORPUS, FIXTURES, SAMPLES, parse_file, require_shared


def _incidents(events, hinted: bool):
    engine = Engine(default_detectors(auth_threshold=3))
    out = []
    for ev in events:
        ev.hints = hints_of(ev.text()) if hinted else None
        out.extend(engine.feed(ev))
    if events:
        out.extend(engine.advance(max(e.ts or 0.0 for e in events) + 7200))
    return out


def test_hinted_detectors_give_the_same_incidents_on_the_corpus():
    require_shared()
    files = sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.glob("seeds/*/*/*.log")) + sorted(SAMPLES.glob("**/*.log"))
    events = sorted((ev for f in files for ev in parse_file(f)), key=lambda e: e.ts or 0.0)
    plain = _incidents(events, hinted=False)
    hinted = _incidents(events, hinted=True)
    assert len(plain) > 20                      # the corpus has incidents of every type
    assert {d["type"] for d in plain} >= {"auth_failure", "disk_full", "retry_exhausted"}
    assert hinted == plain


def test_hint_bits_name_their_keywords():
    text = "Authorization failed for token; No space left on device; SQL connection failed"
    bits = hints_of(text)
    assert bits & BIT["Authorization failed"] and bits & BIT["space"] and bits & BIT["SQL connection"]
    assert not bits & BIT["ENOSPC"]
    assert hints_of("") == 0
    assert len(set(KEYWORDS)) == len(KEYWORDS)


_words = st.sampled_from(KEYWORDS + ("Authorization", "failed", "token", " ", "\n", "retries", "Exceeded"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_words, st.text(max_size=6)), max_size=12).map("".join))
def test_the_phrase_bits_answer_the_prefilters_exactly(text):
    bits = hints_of(text)
    assert bool(bits & AUTH) == (AUTH_PREFILTER.search(text) is not None)
    assert bool(bits & RETRY_PREFILTER) == (RETRY_PREFILTER_RE.search(text) is not None)


def test_a_zero_bit_skips_what_the_scan_would_skip():
    ev = Event(level="ERROR", logger="nova.compute.manager", host="h", service="nova-compute", ts=1.0,
               timestamp="1970-01-01T00:00:01+00:00",
               message="Access denied for user 'nova'@'10.0.0.1' (using password: YES)")
    docs = [d for det in default_detectors() for d in det.feed(ev)]
    assert [d["rule"] for d in docs] == ["auth_failure.database"]
    ev.hints = 0                                # a wrong zero would hide it: the bits must be exact
    assert [d for det in default_detectors() for d in det.feed(ev)] == []
    assert re.search("Access denied", ev.message)


def test_known_issue_signatures_read_the_vocabulary_bits():
    """Every detector, the known-issue signatures among them, gives the same
    incidents when events carry bits of the engine's vocabulary."""
    from detectors.hints import vocabulary
    from pipeline import detection

    require_shared()
    files = sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.glob("seeds/*/*/*.log")) + sorted(SAMPLES.glob("**/*.log"))
    events = sorted((ev for f in files for ev in parse_file(f)), key=lambda e: e.ts or 0.0)
    vocab = vocabulary(detection.build())
    assert len(vocab.words) > len(KEYWORDS)        # the signatures' keywords are in it

    def run(hinted):
        engine = Engine(detection.build())
        out = []
        for ev in events:
            ev.hints = hints_of(ev.text(), vocab.words) if hinted else None
            ev.hint_vocab = vocab if hinted else None
            out.extend(engine.feed(ev))
        return out

    plain = run(False)
    assert sum(d["type"] == "known_issue" for d in plain) >= 10
    assert run(True) == plain
    # and a vocabulary without the signatures' keywords makes them scan for themselves
    from detectors.hints import BASE
    for ev in events:
        ev.hints, ev.hint_vocab = hints_of(ev.text()), BASE
    engine = Engine(detection.build())
    assert [d for ev in events for d in engine.feed(ev)] == plain
