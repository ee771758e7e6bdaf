"""pipeline.streaming.fairfetch without Kafka: rotate, and the worker's wiring (the
polling itself, on a real broker: tests/integration/test_fair_fetch.py)."""
import pytest

from pipeline.settings import load


def test_rotate_moves_served_partitions_last_and_tolerates_other_buffers(caplog, monkeypatch):
    from collections import OrderedDict
    from types import SimpleNamespace

    from pipeline.streaming.fairfetch import rotate

    fetcher = SimpleNamespace(_records=OrderedDict([("raw-0", 1), ("events-0", 2), ("incidents-0", 3)]))
    rotate(fetcher, {"raw-0": [], "gone-1": []})          # a served partition with nothing left is skipped
    assert list(fetcher._records) == ["events-0", "incidents-0", "raw-0"]
    rotate(fetcher, ["events-0", "incidents-0"])
    assert list(fetcher._records) == ["raw-0", "events-0", "incidents-0"]
    from pipeline.streaming import fairfetch

    monkeypatch.setattr(fairfetch, "_warned", False)
    rotate(SimpleNamespace(), ["raw-0"])                    # no buffer of that shape: nothing happens,
    rotate(SimpleNamespace(_records=[("raw-0", 1)]), ["raw-0"])
    warnings = [r for r in caplog.records if "fair polling is off" in r.getMessage()]
    assert len(warnings) == 1                               # and the operator is told once


@pytest.mark.parametrize("fair", [True, False])
def test_worker_consumer_polls_fairly_unless_told_not_to(tmp_path, fair):
    """The worker's faust app uses the fair consumer and a bounded poll
    (worker.fair_polling, on by default), or faust's own when it is off."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from pipeline.streaming.worker import build_app

    env = {"OSLOSCOPE_WORKER_STATE_DIR": str(tmp_path / "state"), "OSLOSCOPE_WORKER_METRICS_PORT": "0"}
    if not fair:
        env["OSLOSCOPE_WORKER_FAIR_POLLING"] = "false"
    settings = load(env=env)
    assert settings.worker.fair_polling is fair
    app = build_app(settings, sink=object())
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, AIOKafkaConsumerThread)
    overridden = type(thread)._fetch_records is not AIOKafkaConsumerThread._fetch_records
    assert overridden is fair
    assert app.conf.broker_max_poll_records == (settings.worker.batch_size if fair else None)
