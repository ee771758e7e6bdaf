"""Test support for the Kibana saved objects of ``pipeline.operations.kibana``.

No Kibana runs in the tests, so this module stands in for the part of Kibana that matters to
whether a dashboard shows what it claims: the Elasticsearch request Kibana sends for every
visualization and saved search, and how it reads the answer.

- ``panel_queries()`` derives, for every visualization and saved search, the request Kibana
  sends for it (index, Lucene ``query_string`` query, time filter, aggregations nested like
  Kibana nests them, "auto" date histogram interval, sort and sample size of a saved search);
- ``tabify()`` turns an Elasticsearch response into the rows the panel shows (``get_path``
  reads dotted fields of a ``_source`` document);
- ``referenced_fields()`` lists every field a saved object names (time field, columns, sort,
  query, aggregations), so the tests can check each is mapped by the index templates;
- ``load_ndjson()`` reads a saved objects file back.

tests/operations/test_kibana.py checks the requests themselves; tests/integration/
test_kibana_panels.py runs every one of them against a real Elasticsearch holding
pipeline-written data and compares the rows with the same aggregation computed in Python.

Run as a script (osloscope installed in the environment, as `make install` does), it is the
developer's view of the panels after changing one:

    python tests/kibana_emulator.py --queries [--from ISO --to ISO]
        print the Elasticsearch request behind every visualization and saved search (JSON lines)
    python tests/kibana_emulator.py --preview [--config FILE] [--from ISO --to ISO]
        run every panel's request against the Elasticsearch of the settings and print its rows
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.operations.kibana import (DV_EVENTS, DV_INCIDENTS, DV_REQUESTS, INDEX_REF, NDJSON, Indices,
                                        build_objects, search_source, vis_state)

SAMPLE_SIZE = 500                    # discover:sampleSize, rows a saved search fetches
BAR_TARGET = 50                      # histogram:barTarget, buckets an "auto" interval aims at
# which schema (schemas/<name>.schema.json, index template) describes each data view
DATA_VIEW_SCHEMA = {DV_EVENTS: "event", DV_INCIDENTS: "incident", DV_REQUESTS: "request"}


# -- the saved objects file ------------------------------------------------------------------
def load_ndjson(path: str | Path = NDJSON) -> list[dict]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{n}: not a JSON object")
        out.append(obj)
    return out



# -- the fields the objects name --------------------------------------------------------------
_FIELD_IN_QUERY = re.compile(r'(?<![\w.@"\\])([A-Za-z_@][\w.@]*)\s*:(?!\s*/)')


def query_fields(query: str) -> list[str]:
    """Field names a Lucene query names (``field:value``), outside quoted phrases."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    return _FIELD_IN_QUERY.findall(unquoted)


@dataclass
class FieldUse:
    object_id: str
    role: str                # time, column, sort, query, agg:<type>
    aggregatable: bool       # the field must have doc values (aggregation, sort, time)


def referenced_fields(objects: list[dict]) -> dict[str, dict[str, list[FieldUse]]]:
    """{data view id: {field: [uses]}} for every field any object names."""
    by_id = {o["id"]: o for o in objects}
    out: dict[str, dict[str, list[FieldUse]]] = {}

    def add(dv: str, name: str, use: FieldUse) -> None:
        out.setdefault(dv, {}).setdefault(name, []).append(use)

    for o in objects:
        if o["type"] == "index-pattern":
            tf = o["attributes"].get("timeFieldName")
            if tf:
                add(o["id"], tf, FieldUse(o["id"], "time", True))
            continue
        if o["type"] not in ("search", "visualization"):
            continue
        dv = next(r["id"] for r in o["references"] if r["name"] == INDEX_REF)
        if dv not in by_id:
            continue
        for f in query_fields(search_source(o)["query"]["query"]):
            add(dv, f, FieldUse(o["id"], "query", False))
        if o["type"] == "search":
            for c in o["attributes"].get("columns", []):
                add(dv, c, FieldUse(o["id"], "column", False))
            for s in o["attributes"].get("sort", []):
                add(dv, s[0], FieldUse(o["id"], "sort", True))
        else:
            for a in vis_state(o)["aggs"]:
                if "field" in a.get("params", {}):
                    add(dv, a["params"]["field"], FieldUse(o["id"], f"agg:{a['type']}", True))
    return out


# -- the Elasticsearch request behind each panel ---------------------------------------------
# (Kibana's auto interval, approximated: the smallest of these >= time range / BAR_TARGET)
_AUTO_LADDER = [(1, "1s"), (5, "5s"), (10, "10s"), (30, "30s"), (60, "1m"), (300, "5m"), (600, "10m"),
                (1800, "30m"), (3600, "1h"), (3 * 3600, "3h"), (12 * 3600, "12h"), (86400, "1d"),
                (7 * 86400, "1w"), (30 * 86400, "1M"), (365 * 86400, "1y")]


def auto_interval(time_range: tuple[str, str] | None) -> dict:
    """``calendar_interval``/``fixed_interval`` of an "auto" date histogram over ``time_range``."""
    if time_range is None:
        return {"calendar_interval": "1d"}
    start, end = (_parse_time(t) for t in time_range)
    target = max((end - start) / BAR_TARGET, 1)
    for seconds, name in _AUTO_LADDER:
        if seconds >= target:
            break
    # Kibana's normalized ES interval: one calendar unit -> calendar_interval, else fixed_interval
    if name.startswith("1") and name[1:] in ("m", "h", "d", "w", "M", "y"):
        return {"calendar_interval": name}
    return {"fixed_interval": name}


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


@dataclass
class BucketLevel:
    agg_id: str
    type: str                # terms | date_histogram
    field: str
    missing_key: str | None = None
    size: int | None = None            # terms: buckets kept
    order_by: str | None = None        # terms: "_count" or the metric agg id
    interval: dict | None = None       # date_histogram: {"fixed_interval"|"calendar_interval": ...}


@dataclass
class PanelQuery:
    """The Elasticsearch request a visualization or saved search makes, and how to read it."""

    object_id: str
    object_type: str         # visualization | search
    title: str
    data_view: str
    index: str
    time_field: str | None
    query: str               # the Lucene query of the saved object
    body: dict               # the _search body (query with time filter, aggs, sort, size)
    buckets: list[BucketLevel] = field(default_factory=list)
    metrics: list[tuple[str, str, str | None]] = field(default_factory=list)   # (agg id, type, field)
    columns: list[str] = field(default_factory=list)
    sort: list[list[str]] = field(default_factory=list)


MISSING = "__missing__"


def _agg_body(a: dict, time_range, metric_types: dict[str, str], time_zone: str) -> dict:
    p = a["params"]
    if a["type"] == "terms":
        by = p["orderBy"]
        order = {"_count" if metric_types.get(by) == "count" else by: p["order"]}
        body: dict = {"field": p["field"], "size": p["size"], "order": order}
        if p.get("missingBucket"):
            body["missing"] = MISSING
        return {"terms": body}
    if a["type"] == "date_histogram":
        return {"date_histogram": {"field": p["field"], **auto_interval(time_range), "time_zone": time_zone,
                                   "min_doc_count": p.get("min_doc_count", 1)}}
    raise ValueError(f"bucket aggregation {a['type']!r} not handled")


def _metric_body(a: dict) -> dict:
    return {a["type"]: {"field": a["params"]["field"]}}


def _bool_query(query: str, time_field: str | None, time_range: tuple[str, str] | None) -> dict:
    must = [{"query_string": {"query": query, "analyze_wildcard": True}}] if query.strip() else []
    filters = []
    if time_field and time_range:
        filters.append({"range": {time_field: {"gte": time_range[0], "lte": time_range[1],
                                               "format": "strict_date_optional_time"}}})
    if not must and not filters:
        must = [{"match_all": {}}]
    return {"bool": {"must": must, "filter": filters, "should": [], "must_not": []}}


def panel_queries(objects: list[dict] | None = None, *, time_range: tuple[str, str] | None = None,
                  index_map: dict[str, str] | None = None, time_zone: str = "UTC") -> list[PanelQuery]:
    """The request behind every visualization and saved search in ``objects``.

    ``time_range`` (ISO 8601 from, to) is the dashboard time picker: a range filter on the data
    view's time field, and what an "auto" date histogram interval is computed from.
    ``index_map`` maps a data view id to the index pattern to query instead of its title.
    ``time_zone`` is Kibana's ``dateFormat:tz`` (date histogram buckets start in it).

    Like Kibana: bucket aggregations nest in the order of the visState (X-axis before split
    series), metrics other than count sit in the deepest bucket (and in a terms bucket ordered
    by them), count is the bucket's doc_count, terms order by count unless ``orderBy`` names a
    metric, a missing bucket is ES ``missing``.
    """
    objects = build_objects() if objects is None else objects
    by_id = {o["id"]: o for o in objects}
    out = []
    for o in objects:
        if o["type"] not in ("visualization", "search"):
            continue
        dv_id = next(r["id"] for r in o["references"] if r["name"] == INDEX_REF)
        dv = by_id[dv_id]["attributes"]
        index = (index_map or {}).get(dv_id, dv["title"])
        tf = dv.get("timeFieldName")
        query = search_source(o)["query"]["query"]
        pq = PanelQuery(o["id"], o["type"], o["attributes"]["title"], dv_id, index, tf, query,
                        {"query": _bool_query(query, tf, time_range), "track_total_hits": True})
        if o["type"] == "search":
            pq.columns = list(o["attributes"].get("columns", []))
            pq.sort = [list(s) for s in o["attributes"].get("sort", [])]
            pq.body.update({"size": SAMPLE_SIZE, "_source": True,
                            "sort": [{f: {"order": d, "unmapped_type": "boolean"}} for f, d in pq.sort]})
            out.append(pq)
            continue
        state = vis_state(o)
        aggs = [a for a in state["aggs"] if a.get("enabled", True)]
        bucket_aggs = [a for a in aggs if a["schema"] != "metric"]
        metric_aggs = [a for a in aggs if a["schema"] == "metric"]
        metrics = {a["id"]: _metric_body(a) for a in metric_aggs if a["type"] != "count"}
        pq.metrics = [(a["id"], a["type"], a["params"].get("field")) for a in metric_aggs]
        inner: dict = dict(metrics)
        for a in reversed(bucket_aggs):
            body = _agg_body(a, time_range, {m["id"]: m["type"] for m in metric_aggs}, time_zone)
            sub = dict(inner)
            order_by = a["params"].get("orderBy") if a["type"] == "terms" else None
            if order_by in metrics:
                sub.setdefault(order_by, metrics[order_by])
            if sub:
                body["aggs"] = sub
            inner = {a["id"]: body}
            missing = MISSING if a["params"].get("missingBucket") else None
            level = BucketLevel(a["id"], a["type"], a["params"]["field"], missing)
            if a["type"] == "terms":
                level.size = body["terms"]["size"]
                level.order_by = next(iter(body["terms"]["order"]))
            else:
                level.interval = {k: v for k, v in body["date_histogram"].items()
                                  if k in ("fixed_interval", "calendar_interval")}
            pq.buckets.insert(0, level)
        pq.body.update({"size": 0, "aggs": inner})
        out.append(pq)
    return out


def tabify(pq: PanelQuery, response: dict) -> list[dict]:
    """Rows a panel shows for an Elasticsearch ``response`` to ``pq.body``.

    Visualization: one row per deepest bucket, ``{"keys": (k1, k2, ...), "count": n,
    <metric id>: value}`` (a missing bucket's key is ``MISSING``, date keys are epoch ms).
    Saved search: one row per hit, ``{"_id": id, <column>: value}``.
    """
    if pq.object_type == "search":
        rows = []
        for h in response["hits"]["hits"]:
            row = {"_id": h["_id"]}
            for c in pq.columns:
                row[c] = get_path(h["_source"], c)
            rows.append(row)
        return rows
    rows: list[dict] = []

    def metrics_of(node: dict, doc_count: int) -> dict:
        row: dict = {"count": doc_count}
        for mid, kind, _field in pq.metrics:
            row[mid] = doc_count if kind == "count" else node.get(mid, {}).get("value")
        return row

    def walk(node: dict, level: int, keys: tuple) -> None:
        if level == len(pq.buckets):
            rows.append({"keys": keys, **metrics_of(node, node.get("doc_count", 0))})
            return
        b = pq.buckets[level]
        for bucket in node.get(b.agg_id, {}).get("buckets", []):     # no index: no aggregations
            walk(bucket, level + 1, keys + (bucket["key"],))

    aggs = response.get("aggregations", {})
    if not pq.buckets:
        rows.append({"keys": (), **metrics_of(aggs, response["hits"]["total"]["value"])})
    else:
        walk(aggs, 0, ())
    return rows


def get_path(doc: Any, path: str) -> Any:
    """Value of a dotted field in a _source document (a list where the source has one; a
    field inside a list of objects gives the list of its values)."""
    parts = path.split(".")

    def walk(value: Any, i: int) -> Any:
        if i == len(parts):
            return value
        if isinstance(value, list):
            out = []
            for item in value:
                got = walk(item, i)
                if isinstance(got, list):
                    out.extend(got)
                elif got is not None:
                    out.append(got)
            return out or None
        if isinstance(value, dict):
            if parts[i] in value:
                return walk(value[parts[i]], i + 1)
            rest = ".".join(parts[i:])               # a dotted key in the source
            return value.get(rest)
        return None

    return walk(doc, 0)


# -- command line -----------------------------------------------------------------------------
def _preview(settings_file: str | None, time_range: tuple[str, str] | None) -> int:
    from pipeline.sinks.elasticsearch import make_client
    from pipeline.settings import load

    settings = load(settings_file)
    es = settings.elasticsearch
    client = make_client(es)
    try:
        for pq in panel_queries(build_objects(Indices.from_settings(es)), time_range=time_range):
            resp = client.search(index=pq.index, allow_no_indices=True, ignore_unavailable=True, body=pq.body)
            rows = tabify(pq, resp.body if hasattr(resp, "body") else resp)
            print(f"== {pq.title} [{pq.object_type} {pq.object_id}] {pq.index} {pq.query or '*'}")
            for row in rows[:20]:
                print("   ", json.dumps(row, default=str, ensure_ascii=False)[:300])
            if len(rows) > 20:
                print(f"    ... {len(rows) - 20} more")
    finally:
        client.close()
    return 0



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/kibana_emulator.py",
                                description="The Elasticsearch requests behind osloscope's Kibana panels.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--queries", action="store_true",
                   help="print the Elasticsearch request behind every visualization and saved search")
    g.add_argument("--preview", action="store_true",
                   help="run every panel's request against Elasticsearch (settings) and print its rows")
    p.add_argument("--config", metavar="FILE", help="settings file for --preview")
    p.add_argument("--from", dest="time_from", metavar="ISO", help="time range start")
    p.add_argument("--to", dest="time_to", metavar="ISO", help="time range end")
    args = p.parse_args(argv)
    time_range = (args.time_from, args.time_to) if args.time_from and args.time_to else None
    if args.queries:
        for pq in panel_queries(time_range=time_range):
            print(json.dumps({"id": pq.object_id, "title": pq.title, "index": pq.index, "body": pq.body},
                             ensure_ascii=False))
        return 0
    return _preview(args.config, time_range)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
