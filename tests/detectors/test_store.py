"""The bounded keyed store: capacity, least-recently-used order, snapshot."""
from __future__ import annotations

import json
from collections import deque

from detectors.store import KeyedStore, TrackedStore


def test_past_capacity_the_least_recently_used_entries_go_and_are_counted():
    s: KeyedStore = KeyedStore(2)
    assert s.put("a", 1) == [] and s.put("b", 2) == []
    s.touch("a")                                   # "b" is now the least recently used
    assert s.put("c", 3) == [("b", 2)]
    assert list(s) == ["a", "c"] and s.evicted == 1


def test_append_keeps_the_last_items_of_each_key():
    s: KeyedStore = KeyedStore(10)
    for i in range(5):
        s.append(("ip", "10.0.0.1"), i, maxlen=3)
    assert list(s.get(("ip", "10.0.0.1"))) == [2, 3, 4]


def test_snapshot_is_json_and_restores_tuple_keys_in_order():
    s: KeyedStore = KeyedStore(10)
    s.append(("burst", "user", "alice"), (1.0, "x"), maxlen=3)
    s.put(("burst", "ip", "10.0.0.9"), deque([(2.0, "y")], maxlen=3))
    data = json.loads(json.dumps(s.snapshot(lambda q: [list(x) for x in q])))
    back: KeyedStore = KeyedStore(10)
    back.restore(data, lambda q: deque(map(tuple, q), maxlen=3))
    assert list(back) == list(s)
    assert [list(q) for q in back.values()] == [list(q) for q in s.values()]


def test_expire_drops_what_is_stale():
    s: KeyedStore = KeyedStore(10)
    for k, ts in (("a", 1.0), ("b", 5.0), ("c", 2.0)):
        s.put(k, ts)
    s.expire(lambda _k, ts: ts < 3.0)
    assert list(s) == ["b"]


def test_tracked_store_names_the_keys_changed_least_recently_used_first():
    s: TrackedStore = TrackedStore(3)
    for k in "abc":
        s.put(k, {"v": k})
    assert s.changes() == ["a", "b", "c"]
    assert s.changes() == []                       # said once
    s.touch("a")                                   # order now b, c, a
    assert s.changes() == ["a"]
    s.put("d", {"v": "d"})                         # evicts b, the least recently used
    assert s.changes() == ["b", "d"] and "b" not in s   # a key gone comes first
    s.pop("c")
    del s["a"]
    assert sorted(s.changes()) == ["a", "c"]
    assert s.changes() == [] and list(s) == ["d"]


def test_tracked_store_entries_read_back_in_any_order_give_the_same_store():
    s: TrackedStore = TrackedStore(10, encode=lambda q: list(q), decode=lambda v: deque(v, maxlen=3))
    for i, key in enumerate([("ip", "10.0.0.1"), ("ip", "10.0.0.2"), ("user", "alice")]):
        s.append(key, i, maxlen=3)
    s.append(("ip", "10.0.0.1"), 9, maxlen=3)      # most recently used now
    saved = json.loads(json.dumps([s.entry(k) for k in s]))
    back: TrackedStore = TrackedStore(10, encode=lambda q: list(q), decode=lambda v: deque(v, maxlen=3))
    back.load(list(reversed(saved)))
    assert list(back) == list(s) == [("ip", "10.0.0.2"), ("user", "alice"), ("ip", "10.0.0.1")]
    assert [list(q) for q in back.values()] == [[1], [2], [0, 9]]
    assert back.changes() == []                    # what was read back is saved already
    back.touch(("ip", "10.0.0.2"))                 # used after the restore: last, and changed
    assert list(back)[-1] == ("ip", "10.0.0.2") and back.changes() == [("ip", "10.0.0.2")]


def test_a_checked_store_also_finds_values_changed_in_place_without_a_touch():
    """The detectors change an incident they got with ``get`` (a follow-up record, a host
    that recovered): with ``check`` such a change is saved too, and only such a change."""
    checked: TrackedStore = TrackedStore(10, check=True)
    plain: TrackedStore = TrackedStore(10)
    for s in (checked, plain):
        s.put("a", {"count": 1})
        s.put("b", {"count": 1})
        assert s.changes() == ["a", "b"]
        s.get("a")["count"] += 1                   # in place, no put, no touch
    assert checked.changes() == ["a"] and checked.changes() == []
    assert plain.changes() == []                   # the rule without check: touch what you change
    back: TrackedStore = TrackedStore(10, check=True)
    back.load([checked.entry(k) for k in checked])
    assert back.changes() == []                    # what was read back counts as saved
    back.get("b")["count"] = 7
    assert back.changes() == ["b"]



def test_a_checked_store_takes_any_value_a_log_can_give():
    s: TrackedStore = TrackedStore(10, check=True)
    s.put(("h", 1), {"attempts": 99999999999999999999, 3: "a key that is not text"})
    assert s.changes() == [("h", 1)]
    s.get(("h", 1))["attempts"] += 1
    assert s.changes() == [("h", 1)]
