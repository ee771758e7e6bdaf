"""State that follows the active notifier (issue 14): every change of a notifier's state is also
written to a journal (in ``osloscope notify``, the compacted state topic; here a dict with the
same semantics), and another notifier that takes over rebuilds the state from it. The real
topic, two processes and a SIGKILL: tests/integration/test_notify_ha.py."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from notify_support import T0, drive, free_port, incident, notifier, receiver, resolved
from pipeline.alerting.outbox import Store


class Journal:
    """The state topic's semantics: the latest value per key, None deletes; ``fail`` makes the
    next write raise (a broker that is gone, or a notifier fenced by another)."""

    def __init__(self) -> None:
        self.state: dict[bytes, bytes] = {}
        self.writes = 0
        self.fail = False

    def write(self, records) -> None:
        records = list(records)
        if self.fail:
            raise RuntimeError("journal unavailable")
        self.writes += 1
        for key, value in records:
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value


def kinds(journal: Journal) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in journal.state:
        kind = json.loads(key)[0]
        out[kind] = out.get(kind, 0) + 1
    return out


def test_a_new_active_delivers_what_the_old_one_left_pending_with_the_same_keys(tmp_path, hooks):
    port = free_port()
    rec = receiver(f"http://127.0.0.1:{port}/hook")
    journal = Journal()
    a = notifier(tmp_path / "a", rec, group_wait=30, group_interval=300)
    a.attach(journal)
    docs = [incident(1), incident(2, host="compute-3")]
    a.handle_many(docs, T0)
    drive(a, T0 + 30, T0 + 35)                       # flushed; the receiver is down
    queued = [k for _i, k, _b, _n in a.store.pending("ops")]
    assert len(queued) == 2 and kinds(journal) == {"group": 2, "incident": 2, "outbox": 2}
    a.close()                                        # the active dies; its disk is gone with it

    hook = hooks(port=port)
    b = notifier(tmp_path / "b", rec, group_wait=30, group_interval=300)
    b.restore(journal.state)
    b.attach(journal)
    assert b.handle_many(docs, T0 + 40) == 0         # replayed documents change nothing
    b.tick(T0 + 40)
    assert [r["headers"]["Idempotency-Key"] for r in hook.delivered] == queued
    assert kinds(journal) == {"group": 2, "incident": 2}          # delivered: gone from it
    drive(b, T0 + 40, T0 + 400, step=30)             # nothing new: the groups were notified
    assert len(hook.requests) == 2
    b.handle_many([resolved(d, T0 + 500) for d in docs], T0 + 500)
    drive(b, T0 + 500, T0 + 700, step=30)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.delivered]
    assert len(keys) == 4 and len(set(keys)) == 4                 # revisions go on: no key reused
    assert all(json.loads(r["body"])["status"] == "resolved" for r in hook.delivered[2:])
    assert kinds(journal) == {"incident": 2}
    b.close()


def test_groups_waiting_for_group_wait_follow_the_active(tmp_path, hooks):
    """An incident that opened and resolved while its group waited, on the old active, is sent
    by the new one: nothing in the topic will tell it again (its offsets are committed)."""
    hook = hooks()
    journal = Journal()
    a = notifier(tmp_path / "a", receiver(hook), group_wait=30)
    a.attach(journal)
    doc = incident(1)
    a.handle_many([doc, resolved(doc, T0 + 5)], T0 + 10)
    a.close()
    b = notifier(tmp_path / "b", receiver(hook), group_wait=30)
    b.restore(journal.state)
    drive(b, T0 + 11, T0 + 45)
    [body] = [json.loads(r["body"]) for r in hook.requests]
    assert [(d["id"], d["status"]) for d in body["incidents"]] == [(doc["id"], "resolved")]
    b.close()


def test_a_failed_journal_write_rolls_the_change_back(tmp_path, hooks):
    journal = Journal()
    n = notifier(tmp_path, receiver(hooks()))
    n.attach(journal)
    journal.fail = True
    with pytest.raises(RuntimeError):
        n.handle(incident(1), T0)
    assert n.store.versions() == {} and [json.loads(k)[0] for k, _v in n.store.records()] == ["meta"]
    n.close()


def test_an_empty_journal_is_seeded_from_the_local_file(tmp_path, hooks):
    port = free_port()
    rec = receiver(f"http://127.0.0.1:{port}/hook")
    a = notifier(tmp_path / "a", rec, group_wait=0)               # an older version: file only
    a.handle_many([incident(1), incident(2, host="compute-3")], T0)
    a.tick(T0)
    journal = Journal()
    journal.write(a.state_records())
    before = {(g.receiver, g.key, g.revision) for g in a.groups.values()}
    pending = [k for _i, k, _b, _n in a.store.pending("ops")]
    a.close()
    b = notifier(tmp_path / "b", rec, group_wait=0)
    b.restore(journal.state)
    assert {(g.receiver, g.key, g.revision) for g in b.groups.values()} == before
    assert [k for _i, k, _b, _n in b.store.pending("ops")] == pending and len(pending) == 2
    b.close()


def test_alertmanager_alerts_are_resent_at_once_after_a_take_over(tmp_path, hooks):
    hook = hooks()
    am = receiver(hook, name="am", style="alertmanager_api", resend_interval=60)
    journal = Journal()
    a = notifier(tmp_path / "a", am)
    a.attach(journal)
    a.handle_many([incident(1), incident(2, host="compute-3")], T0)
    a.tick(T0)
    a.close()
    hook.requests.clear()
    b = notifier(tmp_path / "b", am)
    b.restore(journal.state)
    assert b.tick(T0 + 5).resent == 2 and b.tick(T0 + 6).resent == 0
    b.close()


def test_store_replace_keeps_the_order_of_pending_notifications(tmp_path):
    journal = Journal()
    s = Store(tmp_path / "a.sqlite3")
    s.journal = journal
    rows = [("ops", f"{{host=\"h{i}\"}}", 1, f"key-{i}", b'{"n": %d}' % i, T0 + i) for i in (3, 1, 2)]
    for row in rows:
        s.save([], {}, T0, [row])
    s.close()
    t = Store(tmp_path / "b.sqlite3")
    t.replace(journal.state)
    assert [k for _i, k, _b, _n in t.pending("ops")] == ["key-3", "key-1", "key-2"]
    t.save([], {}, T0, [("ops", "{}", 1, "key-4", b"{}", T0)])       # later rows come after
    assert [k for _i, k, _b, _n in t.pending("ops")][-1] == "key-4"
    t.close()


def test_active_standby_assignor_gives_everything_to_one_member_and_sticks():
    from pipeline.streaming.notify_state import ActiveStandby

    cluster = SimpleNamespace(partitions_for_topic=lambda t: {0, 1, 2} if t == "incidents" else None)

    def member(mid: str, active: bool):
        meta = ActiveStandby()
        meta.active = active
        return SimpleNamespace(member_id=mid, group_instance_id=None,
                               metadata=meta.metadata({"incidents"}))

    def owners(members):
        out = ActiveStandby().assign(cluster, members)
        return {mid: a.partitions() for mid, a in out.items() if a.partitions()}

    fresh = owners([member("m-b", False), member("m-a", False)])
    assert list(fresh) == ["m-a"] and [tp.partition for tp in fresh["m-a"]] == [0, 1, 2]
    assert list(owners([member("m-a", False), member("m-z", True)])) == ["m-z"]     # sticky
    a = ActiveStandby()
    a.on_assignment(ActiveStandby().assign(cluster, [member("m-a", False)])["m-a"], 1)
    assert a.active and a.metadata({"incidents"}).user_data == b"active"
