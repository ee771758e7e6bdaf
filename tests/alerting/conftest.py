"""Fixtures of the alerting tests (helpers: notify_support.py)."""
from __future__ import annotations

import pytest

from notify_support import Hook


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(*a, **kw) -> Hook:
        made.append(Hook(*a, **kw))
        return made[-1]
    yield make
    for h in made:
        h.close()
