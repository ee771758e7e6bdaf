"""analyze in several parsing processes gives what one process gives."""
from __future__ import annotations

import pytest

from support import CORPUS, FIXTURES, SAMPLES

from pipeline.local.analyze import analyze
from pipeline.local.requests import summaries
from pipeline.sources.files import discover

PATHS = [str(SAMPLES), str(FIXTURES / "seeds"), str(CORPUS)]


def _run(jobs: int):
    return analyze(discover(PATHS), jobs=jobs)


def test_incidents_and_stats_do_not_depend_on_the_number_of_processes():
    one = _run(1)
    assert len(one.incidents) >= 10
    for jobs in (2, 3, 7):
        many = _run(jobs)
        assert many.incidents == one.incidents, jobs
        assert (many.stats.lines, many.stats.events, many.stats.files) == \
               (one.stats.lines, one.stats.events, one.stats.files)


def test_request_summaries_do_not_depend_on_the_number_of_processes():
    assert summaries(discover(PATHS), jobs=3) == summaries(discover(PATHS), jobs=1)


def test_a_failing_parse_process_is_an_error_here(monkeypatch):
    from pipeline.local import parallel

    def boom(share, tz, queue):
        queue.put(("error", "Traceback ...\nValueError: boom"))

    monkeypatch.setattr(parallel, "_work", boom)
    with pytest.raises(parallel.WorkerError, match="boom"):
        _run(2)
