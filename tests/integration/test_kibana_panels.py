"""The Kibana panels on pipeline-written data, against the real Elasticsearch.

deploy/samples go through the real path (ship -> Kafka -> `osloscope worker` -> Elasticsearch,
with this test's own topics and indices); then the request behind every visualization and
saved search of deploy/kibana/osloscope.ndjson (``panel_queries`` of tests/kibana_emulator.py) runs
on those indices. Each answer is compared with the same aggregation computed in Python from the
documents the worker wrote (filter, time range, nested terms/date_histogram buckets with
Elasticsearch's ordering, sum/max/avg metrics), and the panels the operator reads first are
checked for the incidents the samples contain (auth failures from 203.0.113.45, the full disk
on compute-2, the volume nova gave up on).

(Named test_kibana_panels.py: tests/operations/test_kibana.py already takes the module name
test_kibana and the test directories are not packages.)
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from datetime import datetime, timezone

import pytest

import kibana_emulator
from kibana_emulator import MISSING, PanelQuery, get_path, panel_queries, tabify
from pipeline.operations import kibana
from test_pipeline import SAMPLES, Worker, embedded, es_client, load_settings, setup_all, ship_once, wait_for

TIME_RANGE = ("2017-06-06T00:00:00Z", "2017-06-07T00:00:00Z")   # the day the sample incidents happen
AUTH_SOURCE = "203.0.113.45"
VOLUME = "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"
INSTANCE = "30e8a024-d1c0-4a64-aae7-a830e8c6be94"


def _level(doc) -> str | None:
    return get_path(doc, "log.level")


# The Lucene queries of the saved objects, as Python predicates (a new query must be added here).
PREDICATES = {
    "": lambda d: True,
    "status:open": lambda d: d.get("status") == "open",
    "outcome:error": lambda d: d.get("outcome") == "error",
    "log.level:(ERROR OR CRITICAL)": lambda d: _level(d) in ("ERROR", "CRITICAL"),
    "api.status:>=500": lambda d: isinstance(get_path(d, "api.status"), int) and get_path(d, "api.status") >= 500,
}


def predicate(query: str):
    if query in PREDICATES:
        return PREDICATES[query]
    m = re.fullmatch(r"type:(\w+)", query)
    assert m, f"no Python predicate for the panel query {query!r}: add one to PREDICATES"
    return lambda d, t=m.group(1): d.get("type") == t


def epoch_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp() * 1000)


def values(doc, field: str) -> list:
    v = get_path(doc, field)
    if v is None:
        return []
    return list(dict.fromkeys(v if isinstance(v, list) else [v]))


INTERVAL_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def bucket_key(ts_ms: int, interval: dict) -> int:
    spec = interval.get("fixed_interval") or interval.get("calendar_interval")
    n, unit = int(spec[:-1]), spec[-1]
    assert unit in INTERVAL_MS, f"interval {spec} not emulated here"
    step = n * INTERVAL_MS[unit]
    return ts_ms - ts_ms % step


def metric_value(kind: str, field: str | None, docs: list[dict]):
    if kind == "count":
        return len(docs)
    vals = [epoch_ms(v) if isinstance(v, str) else v for d in docs for v in values(d, field)]
    if kind == "sum":
        return float(sum(vals))
    if not vals:
        return None
    if kind == "max":
        return float(max(vals))
    if kind == "avg":
        return sum(vals) / len(vals)
    raise AssertionError(f"metric {kind} not emulated")


def python_rows(pq: PanelQuery, docs: list[dict]) -> list[dict]:
    """What Elasticsearch should answer for ``pq``, computed from the documents."""
    metrics = {mid: (kind, f) for mid, kind, f in pq.metrics}

    def row(keys: tuple, group: list[dict]) -> dict:
        out = {"keys": keys, "count": len(group)}
        for mid, (kind, f) in metrics.items():
            out[mid] = metric_value(kind, f, group)
        return out

    def walk(group: list[dict], level: int, keys: tuple) -> list[dict]:
        if level == len(pq.buckets):
            return [row(keys, group)]
        b = pq.buckets[level]
        groups: dict = {}
        for d in group:
            if b.type == "date_histogram":
                ks = [bucket_key(epoch_ms(t), b.interval) for t in values(d, b.field)]
            else:
                ks = values(d, b.field) or ([MISSING] if b.missing_key else [])
            for k in ks:
                groups.setdefault(k, []).append(d)
        if b.type == "date_histogram":
            ordered = sorted(groups)
        else:
            def rank(k):
                score = len(groups[k]) if b.order_by == "_count" else metric_value(*metrics[b.order_by], groups[k])
                return (-(score if score is not None else -math.inf), str(k))
            ordered = sorted(groups, key=rank)[:b.size]
        out = []
        for k in ordered:
            out.extend(walk(groups[k], level + 1, keys + (k,)))
        return out

    if not pq.buckets:
        return [row((), docs)]
    return walk(docs, 0, ())


def in_range(doc, time_field: str | None) -> bool:
    if not time_field:
        return True
    t = get_path(doc, time_field)
    return t is not None and epoch_ms(TIME_RANGE[0]) <= epoch_ms(t) <= epoch_ms(TIME_RANGE[1])


def all_docs(client, index: str) -> list[dict]:
    if not client.indices.exists(index=index, allow_no_indices=False, ignore_unavailable=True) \
            and "*" not in index:
        return []
    res = client.search(index=index, size=10_000, query={"match_all": {}}, allow_no_indices=True,
                        ignore_unavailable=True)
    return [{**h["_source"], "_id": h["_id"]} for h in res["hits"]["hits"]]


def requests_count(client, index: str) -> int:
    client.indices.refresh(index=index, ignore_unavailable=True)
    if not client.indices.exists(index=index):
        return 0
    return client.count(index=index)["count"]


def check_panels(client, queries: list[PanelQuery], docs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Run every panel's request; compare its rows with the Python computation; {id: rows}."""
    results: dict[str, list[dict]] = {}
    for pq in queries:
        response = client.search(index=pq.index, body=pq.body).body
        assert not response.get("_shards", {}).get("failures"), (pq.object_id, response["_shards"])
        rows = tabify(pq, response)
        results[pq.object_id] = rows
        matching = [d for d in docs[pq.data_view] if predicate(pq.query)(d) and in_range(d, pq.time_field)]
        assert response["hits"]["total"]["value"] == len(matching), pq.object_id
        if pq.object_type == "search":
            assert {r["_id"] for r in rows} == {d["_id"] for d in matching}, pq.object_id
            field_, direction = pq.sort[0]
            keys = [get_path(h["_source"], field_) for h in response["hits"]["hits"]]
            keys = [epoch_ms(k) if isinstance(k, str) else k for k in keys]
            assert keys == sorted(keys, reverse=direction == "desc"), pq.object_id
            by_id = {d["_id"]: d for d in matching}
            for r in rows:
                assert all(r[c] == get_path(by_id[r["_id"]], c) for c in pq.columns), pq.object_id
            continue
        want = python_rows(pq, matching)
        assert len(rows) == len(want), (pq.object_id, rows, want)
        for got, exp in zip(rows, want):
            assert got["keys"] == exp["keys"] and got["count"] == exp["count"], (pq.object_id, got, exp)
            for mid, _kind, _f in pq.metrics:
                assert got[mid] == pytest.approx(exp[mid]), (pq.object_id, mid, got, exp)
    return results


def test_every_panel_query_on_pipeline_written_data(settings_env, tmp_path):
    started = time.monotonic()
    settings = load_settings(settings_env)
    es = settings.elasticsearch
    setup_all(settings)
    expected, n_records = embedded([SAMPLES])
    ship_once([SAMPLES], settings)
    client = es_client(settings)
    worker = Worker(settings_env, tmp_path / "worker.log").start()
    seen: list[int] = []

    def indexed() -> bool:
        client.indices.refresh(index=f"{es.events_index_prefix}*,{es.incidents_index}",
                               ignore_unavailable=True, allow_no_indices=True)
        n_ev = client.count(index=f"{es.events_index_prefix}*", allow_no_indices=True)["count"]
        n_inc = client.count(index=es.incidents_index)["count"] if client.indices.exists(
            index=es.incidents_index) else 0
        seen.append(requests_count(client, es.requests_index))
        # request windows close as event time moves on: wait until their number settles too
        return n_ev >= n_records and n_inc >= len(expected) and seen[-1] > 0 and seen[-3:] == [seen[-1]] * 3
    try:
        wait_for(indexed, 60, "events, incidents and request summaries in Elasticsearch", worker)
    finally:
        assert worker.stop() == 0, worker.tail()
    client.indices.refresh(index=f"{es.events_index_prefix}*,{es.incidents_index},{es.requests_index}",
                           ignore_unavailable=True, allow_no_indices=True)

    objects = kibana.build_objects(kibana.Indices.from_settings(es))
    docs = {kibana.DV_EVENTS: all_docs(client, f"{es.events_index_prefix}*"),
            kibana.DV_INCIDENTS: all_docs(client, es.incidents_index),
            kibana.DV_REQUESTS: all_docs(client, es.requests_index)}
    assert len(docs[kibana.DV_EVENTS]) == n_records and len(docs[kibana.DV_INCIDENTS]) >= len(expected)
    assert docs[kibana.DV_REQUESTS]

    queries = panel_queries(objects, time_range=TIME_RANGE)
    assert len(queries) == sum(o["type"] in ("visualization", "search") for o in objects)
    results = check_panels(client, queries, docs)

    # -- what the operator reads on the incidents dashboard ------------------------------------
    incidents = [d for d in docs[kibana.DV_INCIDENTS] if in_range(d, "last_seen")]
    by_type = Counter()
    for r in results["osloscope-vis-incidents-over-time-by-type"]:
        by_type[r["keys"][1]] += r["count"]
    assert by_type == Counter(d["type"] for d in incidents)
    assert {"auth_failure", "disk_full", "retry_exhausted"} <= set(by_type)
    by_severity = Counter()
    for r in results["osloscope-vis-incidents-over-time-by-severity"]:
        by_severity[r["keys"][1]] += r["count"]
    assert by_severity == Counter(d["severity"] for d in incidents)

    disk = {r["keys"][0]: r for r in results["osloscope-vis-disk-full-hosts"]}
    assert "compute-2" in disk
    disk_docs = [d for d in incidents if d["type"] == "disk_full" and "compute-2" in d["hosts"]]
    assert disk["compute-2"]["2"] == sum(d["count"] for d in disk_docs)            # ENOSPC errors
    assert disk["compute-2"]["3"] == max(epoch_ms(d["last_seen"]) for d in disk_docs)

    auth = {r["keys"][0]: r for r in results["osloscope-vis-auth-failures-by-source"]}
    burst = [d for d in incidents if d["type"] == "auth_failure" and AUTH_SOURCE in d["resources"]["source_ip"]]
    assert AUTH_SOURCE in auth and auth[AUTH_SOURCE]["2"] == sum(d["count"] for d in burst) >= 10
    users = {r["keys"][0] for r in results["osloscope-vis-auth-failures-by-user"]}
    assert "nova" in users                                          # MySQL Access denied for 'nova'

    retry = {r["keys"]: r for r in results["osloscope-vis-retry-exhaustion-by-resource"]}
    assert ("retry_exhausted.volume_not_created", VOLUME, INSTANCE) in retry

    open_rows = results["osloscope-search-open-incidents"]
    assert {r["_id"] for r in open_rows} == {d["_id"] for d in incidents if d["status"] == "open"}
    assert all(r["remediation"] for r in open_rows)
    hosts = {r["keys"][0]: r["count"] for r in results["osloscope-vis-top-hosts"]}
    assert hosts == dict(Counter(h for d in incidents for h in set(d["hosts"])))
    assert {"controller-1", "compute-1", "compute-2"} <= set(hosts)
    open_by_severity = {r["keys"][0]: r["count"] for r in results["osloscope-vis-open-incidents"]}
    assert open_by_severity == dict(Counter(d["severity"] for d in incidents if d["status"] == "open"))

    # -- the requests dashboard -------------------------------------------------------------------
    requests = [d for d in docs[kibana.DV_REQUESTS] if in_range(d, "first_seen")]
    outcomes = Counter()
    for r in results["osloscope-vis-requests-over-time"]:
        outcomes[r["keys"][1]] += r["count"]
    assert outcomes == Counter(d["outcome"] for d in requests) and outcomes["error"] >= 1
    failing = results["osloscope-search-failing-requests"]
    assert failing and all(r["outcome"] == "error" for r in failing)
    causes = {r["keys"][0] for r in results["osloscope-vis-failing-requests-by-root-cause"]}
    assert causes == {d["root_cause"]["component"] for d in requests if d["outcome"] == "error"}
    slowest = results["osloscope-search-slowest-requests"]
    assert slowest[0]["duration_seconds"] == max(d["duration_seconds"] for d in requests)
    errors_by_service = {r["keys"][0] for r in results["osloscope-vis-errors-by-service"]}
    assert "nova-compute" in errors_by_service
    assert time.monotonic() - started < 90


def _request(n: int, *, service: str, method: str, path: str, status: int, seconds: float,
             component: str | None = None) -> dict:
    """A request summary shaped like schemas/request.schema.json (the sample logs have no API
    calls that end in a request summary with ``api`` set, so these panels get their own data)."""
    first = datetime(2017, 6, 6, 9, n, tzinfo=timezone.utc)
    error = status >= 500
    return {
        "id": f"{n:024x}", "key": f"req-{n:08d}-0000-0000-0000-000000000000", "request_ids": [],
        "global_request_id": None, "first_seen": first.isoformat(),
        "last_seen": datetime.fromtimestamp(first.timestamp() + seconds, timezone.utc).isoformat(),
        "duration_seconds": seconds, "services": [service], "hosts": ["controller-1"],
        "api": {"method": method, "path": path, "status": status, "service": service, "host": "controller-1"},
        "events": 3, "errors": 1 if error else 0, "exceptions": [], "outcome": "error" if error else "ok",
        "linked": {"request_ids": [], "instance": [], "volume": [], "image": []}, "closed_by": "gap",
        "root_cause": None if not error else {
            "component": component or service, "service": service, "host": "controller-1",
            "@timestamp": first.isoformat(), "request_id": None, "level": "ERROR", "message": "boom",
            "exception_type": None, "exception_message": None, "raised_in": None, "via": None, "reason": "r"},
    }


def test_api_panels_order_by_duration_on_request_summaries(settings_env, monkeypatch, capsys):
    """The requests panels on API calls: nested terms ordered by the max-duration metric."""
    settings = load_settings(settings_env)
    es = settings.elasticsearch
    setup_all(settings)                      # the requests index template (mapping from the schema)
    docs = [
        _request(1, service="nova-api", method="GET", path="/v2.1/servers/detail", status=200, seconds=0.4),
        _request(2, service="nova-api", method="GET", path="/v2.1/servers/detail", status=200, seconds=2.5),
        _request(3, service="nova-api", method="POST", path="/v2.1/servers", status=500, seconds=61.0),
        _request(4, service="cinder-api", method="POST", path="/v3/volumes", status=202, seconds=1.2),
        _request(5, service="glance-api", method="GET", path="/v2/images/x", status=503, seconds=0.1,
                 component="glance-store"),
        _request(6, service="nova-api", method="DELETE", path="/v2.1/servers/y", status=204, seconds=5.0),
    ]
    client = es_client(settings)
    for d in docs:
        client.index(index=es.requests_index, id=d["id"], document=d)
    client.indices.refresh(index=es.requests_index)
    assert client.indices.get_mapping(index=es.requests_index)[es.requests_index]["mappings"]["properties"][
        "api"]["properties"]["status"]["type"] == "long"           # the template applied

    objects = kibana.build_objects(kibana.Indices.from_settings(es))
    queries = [q for q in panel_queries(objects, time_range=TIME_RANGE) if q.data_view == kibana.DV_REQUESTS]
    results = check_panels(client, queries, {kibana.DV_REQUESTS: [{**d, "_id": d["id"]} for d in docs]})
    slow = results["osloscope-vis-slowest-api-calls"]
    assert [r["keys"] for r in slow] == [
        ("nova-api", "POST", "/v2.1/servers"), ("nova-api", "DELETE", "/v2.1/servers/y"),
        ("nova-api", "GET", "/v2.1/servers/detail"), ("cinder-api", "POST", "/v3/volumes"),
        ("glance-api", "GET", "/v2/images/x")]
    assert slow[2]["1"] == 2.5 and slow[2]["2"] == pytest.approx(1.45) and slow[2]["3"] == 2
    failing = {r["keys"]: r["count"] for r in results["osloscope-vis-failing-api-calls"]}
    assert failing == {(500, "POST", "/v2.1/servers"): 1, (503, "GET", "/v2/images/x"): 1}
    assert {r["keys"][0] for r in results["osloscope-vis-failing-requests-by-root-cause"]} == {
        "nova-api", "glance-store"}
    assert [r["key"] for r in results["osloscope-search-slowest-requests"]][:2] == [docs[2]["key"], docs[5]["key"]]

    # the same panels from the command line (python tests/kibana_emulator.py --preview)
    for k, v in settings_env.items():
        monkeypatch.setenv(k, v)
    assert kibana_emulator.main(["--preview", "--from", TIME_RANGE[0], "--to", TIME_RANGE[1]]) == 0
    out = capsys.readouterr().out
    assert f"== Slowest API calls [visualization osloscope-vis-slowest-api-calls] {es.requests_index}" in out
    assert '"keys": ["nova-api", "POST", "/v2.1/servers"]' in out
