"""The outbox (pipeline/alerting/outbox.py): notifications survive restarts, are sent once, and
never reuse an Idempotency-Key."""
from __future__ import annotations

from notify_support import T0, drive, free_port, incident, notifier, receiver, resolved


def test_restart_during_an_outage_loses_nothing_and_sends_nothing_twice(tmp_path, hooks):
    port = free_port()
    rec = receiver(f"http://127.0.0.1:{port}/hook")
    docs = [incident(1), incident(2, host="compute-3")]
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)
    n.handle_many(docs, T0)
    drive(n, T0 + 30, T0 + 40)                              # flushed; the receiver is down
    assert n.outbox() == {"pending": 2}
    n.close()                                               # the notifier stops (or dies)

    hook = hooks(port=port)
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)
    assert n.handle_many(docs, T0 + 50) == 0                # Kafka redelivers: nothing new
    n.tick(T0 + 50)
    assert len(hook.requests) == 2
    drive(n, T0 + 50, T0 + 60)
    n.tick(T0 + 340)                                        # next group_interval: nothing changed
    n.close()
    n = notifier(tmp_path, rec, group_wait=30, group_interval=300)    # and once more
    n.tick(T0 + 400)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.delivered]
    assert len(keys) == 2 and len(set(keys)) == 2
    # later notifications of the same groups never reuse a key
    n.handle_many([resolved(d, T0 + 500) for d in docs], T0 + 500)
    n.tick(T0 + 640)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.delivered]
    assert len(keys) == 4 and len(set(keys)) == 4
    n.close()
