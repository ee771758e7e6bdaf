"""pipeline.fairfetch.rotate without Kafka (the polling itself: tests/integration/test_fair_fetch.py)."""


def test_rotate_moves_served_partitions_last_and_tolerates_other_buffers():
    from collections import OrderedDict
    from types import SimpleNamespace

    from pipeline.fairfetch import rotate

    fetcher = SimpleNamespace(_records=OrderedDict([("raw-0", 1), ("events-0", 2), ("incidents-0", 3)]))
    rotate(fetcher, {"raw-0": [], "gone-1": []})          # a served partition with nothing left is skipped
    assert list(fetcher._records) == ["events-0", "incidents-0", "raw-0"]
    rotate(fetcher, ["events-0", "incidents-0"])
    assert list(fetcher._records) == ["raw-0", "events-0", "incidents-0"]
    rotate(SimpleNamespace(), ["raw-0"])                    # no buffer of that shape: nothing happens
    rotate(SimpleNamespace(_records=[("raw-0", 1)]), ["raw-0"])
