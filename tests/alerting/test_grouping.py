"""Grouping, repeats, resolves and receiver filters (pipeline/alerting/grouping.py), as the
notifier applies them with group_wait, group_interval and repeat_interval."""
from __future__ import annotations

import json

from notify_support import T0, drive, incident, iso, notifier, receiver, resolved


def test_incidents_of_one_type_and_host_within_group_wait_make_one_post(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook))
    for i, t in enumerate((0, 5, 10)):
        assert n.handle(incident(i, seen=T0 + t), T0 + t)
    n.handle(incident(9, host="compute-3", seen=T0 + 10), T0 + 10)      # another group
    assert n.tick(T0 + 29.9).queued == 0 and hook.requests == []
    report = n.tick(T0 + 30)
    assert (report.flushed, report.queued, report.delivered) == (1, 1, 1)
    body = hook.json()
    assert body["group_labels"] == {"type": "disk_full", "host": "compute-2"}
    assert sorted(d["id"] for d in body["incidents"]) == sorted(incident(i)["id"] for i in (0, 1, 2))
    n.tick(T0 + 40)
    assert len(hook.requests) == 2 and hook.json()["group_labels"]["host"] == "compute-3"
    n.close()


def test_unchanged_group_is_repeated_only_after_repeat_interval(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300, repeat_interval=3600)
    doc = incident(1)
    n.handle(doc, T0)
    n.tick(T0 + 30)
    assert len(hook.requests) == 1
    t = T0 + 30
    while t < T0 + 30 + 3600 - 300:                  # updates that change nothing that matters
        t += 300
        n.handle({**doc, "count": int(t - T0), "last_seen": iso(t)}, t)
        n.tick(t)
    assert len(hook.requests) == 1
    n.tick(T0 + 30 + 3600)
    assert len(hook.requests) == 2
    keys = {r["headers"]["Idempotency-Key"] for r in hook.requests}
    assert len(keys) == 2                              # a repeat is a new notification
    assert hook.json()["incidents"][0]["count"] > 1    # ... with the newest document
    n.close()


def test_new_incident_in_a_notified_group_waits_for_group_interval(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    n.handle(incident(1), T0)
    n.tick(T0 + 30)
    n.handle(incident(2), T0 + 40)
    assert n.tick(T0 + 329).queued == 0
    n.tick(T0 + 330)
    assert len(hook.requests) == 2 and len(hook.json()["incidents"]) == 2
    n.close()


def test_resolve_is_notified_once_and_then_the_group_is_gone(tmp_path, hooks):
    hook, quiet = hooks(), hooks()
    n = notifier(tmp_path, receiver(hook), receiver(quiet, name="quiet", send_resolved=False),
                 group_wait=30, group_interval=300)
    doc = incident(1)
    n.handle(doc, T0)
    n.tick(T0 + 30)
    n.handle(resolved(doc, T0 + 100), T0 + 100)
    n.tick(T0 + 330)
    assert len(hook.requests) == 2 and len(quiet.requests) == 1
    body = hook.json()
    assert body["status"] == "resolved" and body["incidents"][0]["status"] == "resolved"
    assert n.groups == {}
    for t in (T0 + 630, T0 + 20000):
        n.tick(t)
    assert len(hook.requests) == 2 and len(quiet.requests) == 1
    n.close()


def test_incident_resolved_before_its_first_notification_is_sent_once_as_resolved(tmp_path, hooks):
    """Issue 17: an incident that opened and closed within group_wait was never notified. A log
    going quiet does not mean the fault is fixed: it is sent once, resolved, with its times, to
    every receiver, send_resolved = false included (that only drops the resolve of an incident
    already announced)."""
    hook, quiet = hooks(), hooks()
    n = notifier(tmp_path, receiver(hook), receiver(quiet, name="quiet", send_resolved=False))
    doc = incident(1)
    n.handle(doc, T0)
    n.handle(resolved(doc, T0 + 5), T0 + 5)
    n.tick(T0 + 30)
    for h in (hook, quiet):
        assert len(h.requests) == 1
        body = h.json()
        assert body["status"] == "resolved"
        [sent] = body["incidents"]
        assert (sent["id"], sent["status"]) == (doc["id"], "resolved")
        assert (sent["first_seen"], sent["last_seen"]) == (doc["first_seen"], iso(T0 + 5))
    assert n.groups == {}
    drive(n, T0 + 31, T0 + 20000, step=300)                   # and never again
    assert len(hook.requests) == len(quiet.requests) == 1
    n.close()


def test_catch_up_of_resolved_incidents_notifies_each_once(tmp_path, hooks):
    """The notifier started after the worker: the topic holds open and resolved versions of many
    incidents (some only resolved); each is notified once, mixed groups included."""
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=30, group_interval=300)
    docs = [incident(i, host=f"compute-{i % 3}") for i in range(14)]
    backlog = [d for d in docs[:10]] + [resolved(d, T0 + 60 + i) for i, d in enumerate(docs[:12])]
    backlog += [incident(12, host="compute-0", seen=T0 + 90)]          # still open, after its peer
    n.handle_many(backlog, T0 + 1000)
    n.handle_many([resolved(d, T0 + 70) for d in docs[13:]], T0 + 1000)        # first seen resolved
    drive(n, T0 + 1000, T0 + 1000 + 4000, step=30)
    sent = [(d["id"], d["status"]) for r in hook.requests for d in json.loads(r["body"])["incidents"]]
    assert sorted(sent) == sorted([(d["id"], "resolved") for d in docs[:12]] +
                                  [(docs[12]["id"], "open"), (docs[13]["id"], "resolved")])
    keys = [r["headers"]["Idempotency-Key"] for r in hook.requests]
    assert len(keys) == len(set(keys)) == 3                       # one notification per group
    n.close()


def test_a_later_version_of_an_incident_already_sent_resolved_is_not_sent_again(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook), group_wait=0)
    doc = incident(1)
    n.handle(resolved(doc, T0 + 5), T0 + 10)
    n.tick(T0 + 10)
    assert len(hook.requests) == 1
    assert n.handle(resolved({**doc, "count": 3}, T0 + 6), T0 + 20)      # a late record counted
    drive(n, T0 + 20, T0 + 400, step=10)
    assert len(hook.requests) == 1
    n.close()


def test_stale_and_repeated_documents_change_nothing(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook))
    doc = incident(1, seen=T0 + 10)
    assert n.handle(doc, T0)
    assert not n.handle(doc, T0 + 1)                                      # redelivered
    n.handle(resolved(doc, T0 + 20), T0 + 2)
    assert not n.handle(incident(1, seen=T0 + 15, count=2), T0 + 3)      # older than the resolve
    n.tick(T0 + 40)
    # it resolved within group_wait: one notification, with the newest version only
    [body] = [json.loads(r["body"]) for r in hook.requests]
    assert [(d["status"], d["last_seen"]) for d in body["incidents"]] == [("resolved", iso(T0 + 20))]
    n.close()


def test_receiver_filters(tmp_path, hooks):
    auth, compute, storage = hooks(), hooks(), hooks()
    n = notifier(tmp_path, receiver(auth, name="auth", types=("auth_failure",)),
                 receiver(compute, name="compute", hosts=("compute-*",), severities=("critical",)),
                 receiver(storage, name="storage", services=("cinder-*",)),
                 group_wait=0)
    n.handle(incident(1, type_="auth_failure", host="controller-1", service="keystone"), T0)
    n.handle(incident(2, host="compute-7"), T0)
    n.handle(incident(3, host="compute-8", severity="warning"), T0)
    n.handle(incident(4, host="storage-1", service="cinder-volume"), T0)
    n.tick(T0)
    ids = lambda hook: [d["id"] for r in hook.requests for d in json.loads(r["body"])["incidents"]]
    assert ids(auth) == [incident(1, type_="auth_failure")["id"]]
    assert ids(compute) == [incident(2)["id"]]
    assert ids(storage) == [incident(4)["id"]]
    n.close()


def test_incident_no_longer_matching_a_filter_leaves_its_group(tmp_path, hooks):
    hook = hooks()
    n = notifier(tmp_path, receiver(hook, severities=("critical",)), group_wait=30)
    n.handle(incident(1, severity="critical"), T0)
    n.handle(incident(1, severity="warning", count=2, seen=T0 + 1), T0 + 1)
    n.tick(T0 + 30)
    assert hook.requests == [] and n.groups == {}
    n.close()
