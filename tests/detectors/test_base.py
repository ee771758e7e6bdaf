"""The incident book every detector keeps its open incidents in."""
from __future__ import annotations

from detectors.base import IncidentBook
from detectors.incident import Incident


def _factory(key):
    return lambda: Incident(rule="t.rule", type="t", key=key, window_start=0.0, severity="error",
                            title="t", probable_cause="cause text", remediation="fix text")


def test_an_incident_evicted_under_memory_pressure_is_never_reported_resolved():
    book = IncidentBook(quiet_period=600.0, max_open=2)
    out: list[dict] = []
    for i, key in enumerate([("a",), ("b",), ("c",)]):
        book.touch(key, float(i), _factory(key), out)
    assert out == []                          # nothing claims "resolved" for ("a",)
    assert list(book.open) == [("b",), ("c",)] and book.open.evicted == 1


def test_a_quiet_incident_resolves_on_advance():
    book = IncidentBook(quiet_period=600.0)
    out: list[dict] = []
    book.touch(("a",), 0.0, _factory(("a",)), out)
    (doc,) = book.advance(601.0)
    assert doc["status"] == "resolved" and not book.open
