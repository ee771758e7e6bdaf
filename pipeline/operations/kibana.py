"""Kibana saved objects for osloscope: data views, saved searches, visualizations, dashboards.

This module is the single source of truth. ``deploy/kibana/osloscope.ndjson`` is generated
from it (``python -m pipeline.operations.kibana --write``) and a unit test checks that the committed
file equals what the builders produce, so the two cannot drift apart.

What is built (ids are stable, readable strings):

- three data views: events (``osloscope-events-*``, time ``@timestamp``), requests
  (``osloscope-requests``, time ``first_seen``) and incidents (``osloscope-incidents``,
  time ``last_seen``);
- saved searches: open incidents with their remediation, one per incident type (the types
  are read from ``schemas/incident.schema.json``), failing and slowest requests, error
  events;
- aggregation-based visualizations (``visualization`` objects with ``visState`` and
  ``searchSourceJSON``; no Lens, no TSVB), every query written in Lucene syntax so the
  Elasticsearch query behind it is exactly a ``query_string`` query;
- the dashboards "OpenStack incidents" and "Requests".

The objects follow the attribute schemas Kibana 8.x validates on import (dashboard v1/v2,
visualization 8.8.0, saved search 8.8.0) and carry the ``typeMigrationVersion`` a Kibana
8.x export writes, so Kibana 8.9 and later migrate them forward on import.

``validate()`` checks the objects the way Kibana's import would (``--check`` runs it). The
Elasticsearch request Kibana sends for each panel is emulated by the tests
(``tests/kibana_emulator.py``), which run every one against a real Elasticsearch.

``import_saved_objects()`` posts an ndjson file to Kibana's saved objects import API
(``osloscope setup --kibana URL``).
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline import resources

ROOT = Path(__file__).resolve().parents[2]           # the source checkout
NDJSON = ROOT / "deploy" / "kibana" / "osloscope.ndjson"   # where --write puts it there

# What a Kibana 8.x export writes: coreMigrationVersion is "8.8.0" for every 8.8+ object; the
# type versions are the last migration of each type before model versions (8.9+ migrate on).
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "search": "8.0.0", "visualization": "8.5.0",
                          "dashboard": "8.9.0"}

# Attribute names Kibana accepts per type (its create schemas reject unknown keys):
# dashboard  -> dashboard_saved_object/schema/v1 (+ v2: controlGroupInput.showApplySelections)
# visualization -> visualizations/server/saved_objects/visualization.ts, schema '8.8.0'
# search     -> saved_search/server/saved_objects/schema.ts, SCHEMA_SEARCH_BASE
# index-pattern has no create schema; these are the attributes a data view export carries.
ALLOWED_ATTRIBUTES = {
    "dashboard": {"title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
                  "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version"},
    "visualization": {"title", "description", "version", "kibanaSavedObjectMeta", "uiStateJSON", "visState",
                      "savedSearchRefName"},
    "search": {"title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart",
               "breakdownField", "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView",
               "timeRestore", "timeRange", "refreshInterval", "viewMode", "hideAggregatedPreview", "hits",
               "version", "sampleSize", "headerRowHeight"},
    "index-pattern": {"title", "name", "timeFieldName", "fields", "fieldAttrs", "fieldFormatMap",
                      "runtimeFieldMap", "sourceFilters", "typeMeta", "allowHidden"},
}
REQUIRED_ATTRIBUTES = {
    "dashboard": {"title"},
    "visualization": {"title", "visState", "kibanaSavedObjectMeta"},
    "search": {"title", "kibanaSavedObjectMeta"},
    "index-pattern": {"title"},
}
# agg schemas each aggregation-based vis type knows (its editorConfig.schemas)
VIS_SCHEMAS = {
    "table": {"metric", "bucket", "split"},
    "histogram": {"metric", "radius", "segment", "group", "split"},
    "pie": {"metric", "segment", "split"},
    "metric": {"metric", "group"},
}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"

# data view ids
DV_EVENTS = "osloscope-events"
DV_INCIDENTS = "osloscope-incidents"
DV_REQUESTS = "osloscope-requests"
DASHBOARD_INCIDENTS = "osloscope-dashboard-incidents"
DASHBOARD_REQUESTS = "osloscope-dashboard-requests"


@dataclass(frozen=True)
class Indices:
    """The index names the data views point at (``elasticsearch`` settings)."""

    events_pattern: str = "osloscope-events-*"
    incidents: str = "osloscope-incidents"
    requests: str = "osloscope-requests"

    @classmethod
    def from_settings(cls, es) -> "Indices":
        return cls(es.events_index_prefix + "*", es.incidents_index, es.requests_index)


class KibanaError(RuntimeError):
    """Kibana could not be reached or refused the import; the message says why."""


# -- helpers -------------------------------------------------------------------------------
def _dumps(obj: Any) -> str:
    """JSON as Kibana stores embedded JSON strings (JSON.stringify: compact)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _incident_types() -> list[str]:
    schema = resources.schema("incident")
    return list(schema["properties"]["type"]["enum"])


def _object(type_: str, id_: str, attributes: dict, references: list[dict] | None = None) -> dict:
    return {"attributes": attributes, "coreMigrationVersion": CORE_MIGRATION_VERSION, "id": id_,
            "managed": False, "references": references or [], "type": type_,
            "typeMigrationVersion": TYPE_MIGRATION_VERSION[type_]}


def _search_source(query: str, index_ref: bool = True) -> str:
    source: dict = {"query": {"query": query, "language": "lucene"}, "filter": []}
    if index_ref:
        source["indexRefName"] = INDEX_REF
    return _dumps(source)


def _index_reference(data_view: str) -> list[dict]:
    return [{"id": data_view, "name": INDEX_REF, "type": "index-pattern"}]


def data_view(id_: str, title: str, name: str, time_field: str) -> dict:
    return _object("index-pattern", id_, {
        "title": title, "name": name, "timeFieldName": time_field, "fields": "[]", "fieldAttrs": "{}",
        "fieldFormatMap": "{}", "runtimeFieldMap": "{}", "sourceFilters": "[]", "typeMeta": "{}",
        "allowHidden": False})


def saved_search(id_: str, title: str, data_view_id: str, query: str, columns: list[str],
                 sort: list[list[str]], description: str = "") -> dict:
    return _object("search", id_, {
        "title": title, "description": description, "columns": columns, "sort": sort, "grid": {},
        "hideChart": False, "isTextBasedQuery": False, "timeRestore": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)}}, _index_reference(data_view_id))


# aggregations, as the Kibana aggregation editor writes them
def count(id_: str = "1", label: str | None = None) -> dict:
    params: dict = {"emptyAsNull": False}
    if label:
        params["customLabel"] = label
    return {"id": id_, "enabled": True, "type": "count", "params": params, "schema": "metric"}


def metric(id_: str, kind: str, field_: str, label: str) -> dict:
    return {"id": id_, "enabled": True, "type": kind,
            "params": {"field": field_, "customLabel": label, "emptyAsNull": False}, "schema": "metric"}


def terms(id_: str, field_: str, schema: str, *, size: int = 10, order_by: str = "1", label: str | None = None,
          missing: str | None = None) -> dict:
    params = {"field": field_, "orderBy": order_by, "order": "desc", "size": size, "otherBucket": False,
              "otherBucketLabel": "Other", "missingBucket": missing is not None,
              "missingBucketLabel": missing or "Missing"}
    if label:
        params["customLabel"] = label
    return {"id": id_, "enabled": True, "type": "terms", "params": params, "schema": schema}


def date_histogram(id_: str, field_: str, schema: str = "segment") -> dict:
    return {"id": id_, "enabled": True, "type": "date_histogram", "schema": schema, "params": {
        "field": field_, "useNormalizedEsInterval": True, "extendToTimeRange": False, "scaleMetricValues": False,
        "interval": "auto", "drop_partials": False, "min_doc_count": 1, "extended_bounds": {}}}


def _table_params(per_page: int = 10) -> dict:
    return {"perPage": per_page, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
            "totalFunc": "sum", "percentageCol": "", "showToolbar": True, "autoFitRowToContent": False}


def _histogram_params(value_label: str = "Count", metric_id: str = "1") -> dict:
    return {
        "type": "histogram", "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "scale": {"type": "linear"}, "labels": {"show": True, "filter": True, "truncate": 100},
                          "title": {}, "style": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": True,
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": True, "truncate": 100},
                       "title": {"text": value_label}, "style": {}}],
        "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked",
                          "data": {"label": value_label, "id": metric_id}, "interpolate": "linear",
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "showCircles": True, "circlesRadius": 1}],
        "radiusRatio": 0, "addTooltip": True, "detailedTooltip": True,
        "palette": {"type": "palette", "name": "default"},
        "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False, "truncateLegend": True,
        "maxLegendLines": 1, "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"}}


def _metric_params() -> dict:
    return {"addTooltip": True, "addLegend": False, "type": "metric", "metric": {
        "percentageMode": False, "useRanges": False, "colorSchema": "Green to Red", "metricColorMode": "None",
        "colorsRange": [{"from": 0, "to": 10000}], "labels": {"show": True}, "invertColors": False,
        "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "", "fontSize": 60}}}


def visualization(id_: str, title: str, vis_type: str, data_view_id: str, aggs: list[dict], params: dict,
                  query: str = "", description: str = "") -> dict:
    vis_state = {"title": title, "type": vis_type, "aggs": aggs, "params": params}
    return _object("visualization", id_, {
        "title": title, "description": description, "version": 1, "uiStateJSON": "{}",
        "visState": _dumps(vis_state),
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)}}, _index_reference(data_view_id))


def table(id_: str, title: str, data_view_id: str, aggs: list[dict], query: str = "", description: str = "",
          per_page: int = 10) -> dict:
    return visualization(id_, title, "table", data_view_id, aggs, _table_params(per_page), query, description)


def bar_chart(id_: str, title: str, data_view_id: str, aggs: list[dict], query: str = "",
              description: str = "") -> dict:
    return visualization(id_, title, "histogram", data_view_id, aggs, _histogram_params(), query, description)


@dataclass
class Panel:
    """One dashboard panel: the object it shows and its place on the 48-column grid."""

    object_id: str
    object_type: str
    x: int
    y: int
    w: int
    h: int


def dashboard(id_: str, title: str, description: str, panels: list[Panel], *, time_from: str = "now-24h") -> dict:
    panels_json, references = [], []
    for p in panels:
        index = p.object_id.removeprefix("osloscope-")
        panels_json.append({"type": p.object_type,
                            "gridData": {"x": p.x, "y": p.y, "w": p.w, "h": p.h, "i": index},
                            "panelIndex": index, "embeddableConfig": {"enhancements": {}},
                            "panelRefName": f"panel_{index}"})
        references.append({"id": p.object_id, "name": f"{index}:panel_{index}", "type": p.object_type})
    return _object("dashboard", id_, {
        "title": title, "description": description, "version": 1, "timeRestore": True, "timeFrom": time_from,
        "timeTo": "now", "refreshInterval": {"pause": False, "value": 60000},
        "optionsJSON": _dumps({"useMargins": True, "syncColors": False, "syncCursor": True, "syncTooltips": False,
                               "hidePanelTitles": False}),
        "panelsJSON": _dumps(panels_json),
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", index_ref=False)}}, references)


# -- the objects -----------------------------------------------------------------------------
INCIDENT_COLUMNS = ["severity", "status", "title", "hosts", "services", "count", "probable_cause", "remediation"]
REQUEST_COLUMNS = ["key", "outcome", "duration_seconds", "services", "hosts", "api.method", "api.path",
                   "api.status", "errors", "root_cause.component", "root_cause.exception_type", "root_cause.reason"]
FAILING = "outcome:error"
ERROR_LEVELS = "log.level:(ERROR OR CRITICAL)"


def build_objects(indices: Indices = Indices()) -> list[dict]:
    """Every saved object, in import order (data views, searches, visualizations, dashboards)."""
    types = _incident_types()
    objs = [
        data_view(DV_EVENTS, indices.events_pattern, "osloscope events", "@timestamp"),
        data_view(DV_REQUESTS, indices.requests, "osloscope requests", "first_seen"),
        data_view(DV_INCIDENTS, indices.incidents, "osloscope incidents", "last_seen"),
        # saved searches
        saved_search("osloscope-search-open-incidents", "Open incidents (with remediation)", DV_INCIDENTS,
                     "status:open", ["severity", "type", "title", "hosts", "count", "remediation"],
                     [["last_seen", "desc"]], "Incidents still open, newest first, with the fix to apply."),
    ]
    for t in types:
        objs.append(saved_search(f"osloscope-search-incidents-{t}", f"Incidents: {t}", DV_INCIDENTS,
                                 f"type:{t}", INCIDENT_COLUMNS, [["last_seen", "desc"]],
                                 f"Every {t} incident with its probable cause and remediation."))
    objs += [
        saved_search("osloscope-search-failing-requests", "Failing requests", DV_REQUESTS, FAILING,
                     REQUEST_COLUMNS, [["first_seen", "desc"]],
                     "Requests whose window holds an error record or an HTTP 5xx, with the root cause."),
        saved_search("osloscope-search-slowest-requests", "Slowest requests", DV_REQUESTS, "",
                     REQUEST_COLUMNS, [["duration_seconds", "desc"]],
                     "Request windows ordered by duration (first to last record)."),
        saved_search("osloscope-search-error-events", "Error records", DV_EVENTS, ERROR_LEVELS,
                     ["host.name", "service.name", "log.level", "openstack.request_id", "error.type", "message"],
                     [["@timestamp", "desc"]], "ERROR and CRITICAL log records (tracebacks folded in)."),
        # incidents dashboard
        visualization("osloscope-vis-open-incidents", "Open incidents by severity", "metric", DV_INCIDENTS,
                      [count("1", "Open incidents"), terms("2", "severity", "group", size=5)], _metric_params(),
                      query="status:open"),
        bar_chart("osloscope-vis-incidents-over-time-by-type", "Incidents over time by type", DV_INCIDENTS,
                  [count("1"), date_histogram("2", "last_seen"),
                   terms("3", "type", "group", size=len(types), label="Type")]),
        bar_chart("osloscope-vis-incidents-over-time-by-severity", "Incidents over time by severity", DV_INCIDENTS,
                  [count("1"), date_histogram("2", "last_seen"), terms("3", "severity", "group", size=5,
                                                                        label="Severity")]),
        table("osloscope-vis-top-hosts", "Top hosts by incidents", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "Occurrences"),
               terms("3", "hosts", "bucket", size=10, label="Host")]),
        table("osloscope-vis-top-services", "Top services by incidents", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "Occurrences"),
               terms("3", "services", "bucket", size=10, label="Service")]),
        table("osloscope-vis-disk-full-hosts", "Disk-full hosts", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "ENOSPC errors"),
               metric("3", "max", "last_seen", "Last seen"), terms("4", "hosts", "bucket", size=20, label="Host")],
              query="type:disk_full"),
        table("osloscope-vis-auth-failures-by-source", "Auth failures by source address", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "Failures"),
               terms("3", "resources.source_ip", "bucket", size=20, label="Source address")],
              query="type:auth_failure"),
        table("osloscope-vis-auth-failures-by-user", "Auth failures by user", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "Failures"),
               terms("3", "resources.user", "bucket", size=20, label="User")],
              query="type:auth_failure"),
        table("osloscope-vis-retry-exhaustion-by-resource", "Retry exhaustion by resource", DV_INCIDENTS,
              [count("1", "Incidents"), metric("2", "sum", "count", "Occurrences"),
               terms("3", "rule", "bucket", size=10, label="Rule"),
               terms("4", "resources.volume", "bucket", size=10, label="Volume", missing="(no volume)"),
               terms("5", "resources.instance", "bucket", size=10, label="Instance", missing="(no instance)")],
              query="type:retry_exhausted"),
        # requests dashboard
        bar_chart("osloscope-vis-requests-over-time", "Requests over time by outcome", DV_REQUESTS,
                  [count("1"), date_histogram("2", "first_seen"), terms("3", "outcome", "group", size=3,
                                                                         label="Outcome")]),
        table("osloscope-vis-slowest-api-calls", "Slowest API calls", DV_REQUESTS,
              [metric("1", "max", "duration_seconds", "Max duration (s)"),
               metric("2", "avg", "duration_seconds", "Avg duration (s)"), count("3", "Requests"),
               terms("4", "api.service", "bucket", size=5, order_by="1", label="Service"),
               terms("5", "api.method", "bucket", size=5, order_by="1", label="Method"),
               terms("6", "api.path", "bucket", size=10, order_by="1", label="Path")]),
        table("osloscope-vis-failing-api-calls", "Failing API calls (HTTP 5xx)", DV_REQUESTS,
              [count("1", "Requests"), terms("2", "api.status", "bucket", size=10, label="Status"),
               terms("3", "api.method", "bucket", size=5, label="Method"),
               terms("4", "api.path", "bucket", size=10, label="Path")],
              query="api.status:>=500"),
        table("osloscope-vis-failing-requests-by-root-cause", "Failing requests by root cause", DV_REQUESTS,
              [count("1", "Requests"), terms("2", "root_cause.component", "bucket", size=10, label="Component"),
               terms("3", "root_cause.exception_type", "bucket", size=10, label="Exception",
                     missing="(no exception)")],
              query=FAILING),
        table("osloscope-vis-request-errors-by-service", "Failing requests by service", DV_REQUESTS,
              [count("1", "Failing requests"), metric("2", "sum", "errors", "Error records"),
               terms("3", "services", "bucket", size=10, label="Service")],
              query=FAILING),
        bar_chart("osloscope-vis-errors-by-service", "Error records by service", DV_EVENTS,
                  [count("1"), terms("2", "service.name", "segment", size=10, label="Service"),
                   terms("3", "log.level", "group", size=3, label="Level")],
                  query=ERROR_LEVELS),
    ]
    objs.append(dashboard(DASHBOARD_INCIDENTS, "OpenStack incidents",
                          "Incidents detected by osloscope: what is open, what it is, where, and how to fix it.", [
                              Panel("osloscope-vis-open-incidents", "visualization", 0, 0, 12, 10),
                              Panel("osloscope-vis-incidents-over-time-by-type", "visualization", 12, 0, 18, 10),
                              Panel("osloscope-vis-incidents-over-time-by-severity", "visualization", 30, 0, 18, 10),
                              Panel("osloscope-search-open-incidents", "search", 0, 10, 48, 15),
                              Panel("osloscope-vis-top-hosts", "visualization", 0, 25, 24, 12),
                              Panel("osloscope-vis-top-services", "visualization", 24, 25, 24, 12),
                              Panel("osloscope-vis-disk-full-hosts", "visualization", 0, 37, 16, 12),
                              Panel("osloscope-vis-auth-failures-by-source", "visualization", 16, 37, 16, 12),
                              Panel("osloscope-vis-auth-failures-by-user", "visualization", 32, 37, 16, 12),
                              Panel("osloscope-vis-retry-exhaustion-by-resource", "visualization", 0, 49, 48, 12),
                          ]))
    objs.append(dashboard(DASHBOARD_REQUESTS, "Requests",
                          "Request windows (one per request id): failing and slowest requests, errors by service.", [
                              Panel("osloscope-vis-requests-over-time", "visualization", 0, 0, 24, 12),
                              Panel("osloscope-vis-errors-by-service", "visualization", 24, 0, 24, 12),
                              Panel("osloscope-vis-request-errors-by-service", "visualization", 0, 12, 16, 12),
                              Panel("osloscope-vis-failing-requests-by-root-cause", "visualization", 16, 12, 16, 12),
                              Panel("osloscope-vis-failing-api-calls", "visualization", 32, 12, 16, 12),
                              Panel("osloscope-vis-slowest-api-calls", "visualization", 0, 24, 48, 12),
                              Panel("osloscope-search-failing-requests", "search", 0, 36, 48, 15),
                              Panel("osloscope-search-slowest-requests", "search", 0, 51, 48, 15),
                              Panel("osloscope-search-error-events", "search", 0, 66, 48, 15),
                          ]))
    return objs


# -- ndjson ---------------------------------------------------------------------------------
def render_ndjson(objects: Iterable[dict]) -> str:
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
                   for o in objects)


def write_ndjson(path: str | Path = NDJSON, indices: Indices = Indices()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_ndjson(build_objects(indices)), encoding="utf-8")
    return path


# -- structure ------------------------------------------------------------------------------
def _json_attr(obj: dict, *keys: str) -> Any:
    value: Any = obj["attributes"]
    for k in keys:
        value = value[k]
    return json.loads(value)


def search_source(obj: dict) -> dict:
    return _json_attr(obj, "kibanaSavedObjectMeta", "searchSourceJSON")


def vis_state(obj: dict) -> dict:
    return _json_attr(obj, "visState")


def panels(obj: dict) -> list[dict]:
    return _json_attr(obj, "panelsJSON")


def validate(objects: list[dict]) -> list[str]:
    """Structural problems of a list of saved objects (empty: importable as far as we can tell)."""
    problems: list[str] = []
    ids: dict[tuple[str, str], dict] = {}
    for o in objects:
        for key in ("id", "type", "attributes", "references"):
            if key not in o:
                problems.append(f"{o.get('id')}: missing {key!r}")
        key = (o.get("type"), o.get("id"))
        if key in ids:
            problems.append(f"{o.get('id')}: duplicate {o.get('type')} id")
        ids[key] = o
    all_ids = [o.get("id") for o in objects]
    if len(all_ids) != len(set(all_ids)):
        problems.append("ids are not unique across types")
    for o in objects:
        oid, otype, attrs = o.get("id"), o.get("type"), o.get("attributes", {})
        if otype not in ALLOWED_ATTRIBUTES:
            problems.append(f"{oid}: unexpected type {otype!r}")
            continue
        extra = set(attrs) - ALLOWED_ATTRIBUTES[otype]
        if extra:
            problems.append(f"{oid}: attributes Kibana rejects for {otype}: {sorted(extra)}")
        missing = REQUIRED_ATTRIBUTES[otype] - set(attrs)
        if missing:
            problems.append(f"{oid}: missing attributes {sorted(missing)}")
        ref_names = [r.get("name") for r in o.get("references", [])]
        if len(ref_names) != len(set(ref_names)):
            problems.append(f"{oid}: duplicate reference names")
        for r in o.get("references", []):
            if (r.get("type"), r.get("id")) not in ids:
                problems.append(f"{oid}: reference {r.get('name')} -> {r.get('type')} {r.get('id')} "
                                f"is not in the file")
        if otype in ("search", "visualization", "dashboard"):
            try:
                source = search_source(o)
            except (KeyError, ValueError) as exc:
                problems.append(f"{oid}: searchSourceJSON: {exc}")
                source = {}
            ref = source.get("indexRefName")
            if otype == "dashboard":
                if ref:
                    problems.append(f"{oid}: dashboard search source names an index")
            elif ref not in ref_names or not any(r["name"] == ref and r["type"] == "index-pattern"
                                                 for r in o["references"]):
                problems.append(f"{oid}: indexRefName {ref!r} has no index-pattern reference")
            q = source.get("query", {})
            if q.get("language") not in ("lucene", "kuery") or not isinstance(q.get("query"), str):
                problems.append(f"{oid}: bad query {q!r}")
        if otype == "visualization":
            try:
                state = vis_state(o)
            except (KeyError, ValueError) as exc:
                problems.append(f"{oid}: visState: {exc}")
                continue
            schemas = VIS_SCHEMAS.get(state.get("type"))
            if schemas is None:
                problems.append(f"{oid}: vis type {state.get('type')!r} not handled")
                continue
            if state.get("title") != attrs.get("title"):
                problems.append(f"{oid}: visState title differs from the object title")
            agg_ids = [a["id"] for a in state["aggs"]]
            if len(agg_ids) != len(set(agg_ids)):
                problems.append(f"{oid}: duplicate agg ids")
            metric_ids = {a["id"] for a in state["aggs"] if a["schema"] == "metric"}
            if not metric_ids:
                problems.append(f"{oid}: no metric")
            for a in state["aggs"]:
                if a["schema"] not in schemas:
                    problems.append(f"{oid}: agg {a['id']} schema {a['schema']!r} not valid for {state['type']}")
                if a["type"] == "terms" and a["params"]["orderBy"] not in metric_ids:
                    problems.append(f"{oid}: agg {a['id']} orders by unknown metric {a['params']['orderBy']}")
            for s in state["params"].get("seriesParams", []):
                if s["data"]["id"] not in metric_ids:
                    problems.append(f"{oid}: series {s['data']['id']} is no metric")
        if otype == "dashboard":
            try:
                plist = panels(o)
            except (KeyError, ValueError) as exc:
                problems.append(f"{oid}: panelsJSON: {exc}")
                continue
            refs = {r["name"]: r for r in o["references"]}
            used = set()
            for p in plist:
                idx, ref_name = p.get("panelIndex"), p.get("panelRefName")
                if p.get("gridData", {}).get("i") != idx:
                    problems.append(f"{oid}: panel {idx}: gridData.i differs from panelIndex")
                g = p.get("gridData", {})
                if g.get("x", 0) + g.get("w", 0) > 48:
                    problems.append(f"{oid}: panel {idx} is wider than the grid")
                # Kibana resolves "<panelIndex>:<panelRefName>" (8.x) or a bare panelRefName (7.x)
                ref = refs.get(f"{idx}:{ref_name}") or refs.get(ref_name)
                if ref is None:
                    problems.append(f"{oid}: panel {idx}: no reference named {idx}:{ref_name}")
                    continue
                used.add(ref["name"])
                if ref["type"] != p.get("type"):
                    problems.append(f"{oid}: panel {idx} type {p.get('type')} but reference type {ref['type']}")
            if set(refs) - used:
                problems.append(f"{oid}: references no panel uses: {sorted(set(refs) - used)}")
            idxs = [p.get("panelIndex") for p in plist]
            if len(idxs) != len(set(idxs)):
                problems.append(f"{oid}: duplicate panelIndex")
    return problems


# -- import -----------------------------------------------------------------------------------
def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "----osloscope" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


def import_url(url: str, space: str | None = None, overwrite: bool = True) -> str:
    base = url.rstrip("/")
    if not re.match(r"^https?://", base):
        raise KibanaError(f"Kibana URL must start with http:// or https://, got {url!r}")
    if space and space != "default":
        base += "/s/" + urllib.parse.quote(space, safe="")
    return base + "/api/saved_objects/_import" + ("?overwrite=true" if overwrite else "")


def import_saved_objects(url: str, ndjson_path: str | Path = NDJSON, *, space: str | None = None,
                         api_key: str | None = None, username: str | None = None, password: str | None = None,
                         verify: bool | str = True, overwrite: bool = True, timeout: float = 60.0,
                         wait: float = 0.0, log: Callable[[str], None] | None = None) -> dict:
    """POST ``ndjson_path`` to Kibana's ``/api/saved_objects/_import`` and return its answer.

    ``url`` is Kibana's base URL (``http://localhost:5601``, with a base path if Kibana has
    one); ``space`` a space id (default space: None). Authentication: ``api_key`` (the
    base64 ``id:key`` form Kibana shows) or ``username``/``password``. ``verify``: True,
    False (no TLS verification) or a CA bundle path. ``wait``: seconds to keep retrying while
    Kibana is unreachable or answers 503 (still starting). Raises ``KibanaError`` with the
    reason when Kibana is not reachable, refuses the request or reports objects it could not
    import.
    """
    if api_key and (username or password):
        raise KibanaError("give an API key or a user name and password, not both")
    path = Path(ndjson_path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise KibanaError(f"cannot read {path}: {exc.strerror or exc}") from None
    target = import_url(url, space, overwrite)
    body, content_type = _multipart(path.name if path.suffix == ".ndjson" else "export.ndjson", content)
    headers = {"kbn-xsrf": "osloscope", "Content-Type": content_type, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    context = _ssl_context(verify) if target.startswith("https://") else None
    deadline = time.monotonic() + wait
    while True:
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
                raw = resp.read()
            break
        except urllib.error.HTTPError as exc:
            raw_error = exc.read()
            detail = _error_detail(raw_error)
            if exc.code == 503 and time.monotonic() < deadline:
                _waiting(log, target, f"HTTP 503 {detail}")
                time.sleep(2.0)
                continue
            message = _http_message(exc.code, target, detail)
            if exc.code not in (401, 403, 503) and not _from_kibana(raw_error):
                message += " (the answer does not look like Kibana's: is this Kibana's URL?)"
            raise KibanaError(message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError) or isinstance(exc, ssl.SSLError):
                raise KibanaError(f"TLS error talking to Kibana at {url}: {reason} "
                                  f"(pass a CA bundle, or verify=False to skip verification)") from None
            if time.monotonic() < deadline:
                _waiting(log, target, str(reason))
                time.sleep(2.0)
                continue
            raise KibanaError(f"Kibana not reachable at {url}: {reason}") from None
    try:
        result = json.loads(raw)
    except ValueError:
        raise KibanaError(f"Kibana at {url} answered with something that is not JSON: "
                          f"{raw[:200].decode('utf-8', 'replace')!r} (is this Kibana?)") from None
    if not isinstance(result, dict) or "success" not in result:
        raise KibanaError(f"unexpected answer from {target}: {str(result)[:300]}")
    if not result["success"]:
        lines = []
        for err in result.get("errors", []):
            e = err.get("error", {})
            what = e.get("type", "error")
            if what == "missing_references":
                what += ": " + ", ".join(f"{r.get('type')} {r.get('id')}" for r in e.get("references", []))
            elif e.get("message"):
                what += ": " + e["message"]
            title = err.get("title") or err.get("meta", {}).get("title", "")
            lines.append(f"  {err.get('type')} {err.get('id')} ({title}): {what}")
        raise KibanaError(f"Kibana imported {result.get('successCount', 0)} object(s) from {path.name}, "
                          f"{len(result.get('errors', []))} failed:\n" + "\n".join(lines))
    return result


def _waiting(log, target: str, why: str) -> None:
    if log:
        log(f"waiting for Kibana ({target}): {why}")


def _from_kibana(raw: bytes) -> bool:
    """Kibana's HTTP errors are JSON with statusCode, error and message."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return False
    return isinstance(doc, dict) and "statusCode" in doc


def _error_detail(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict):
            return str(doc.get("message") or doc.get("error") or doc)
    except ValueError:
        pass
    return raw[:300].decode("utf-8", "replace").strip()


def _http_message(status: int, target: str, detail: str) -> str:
    hint = {
        400: "Kibana rejected the file",
        401: "authentication failed (give an API key or a user name and password)",
        403: "the user or API key may not import saved objects (needs Saved Objects Management)",
        404: "no saved objects import API there (wrong URL, base path or space?)",
        413: "the file is larger than Kibana's savedObjects.maxImportPayloadBytes",
        415: "Kibana did not take the multipart upload",
        503: "Kibana is not ready yet (still starting?)",
    }.get(status, "Kibana refused the import")
    return f"{target}: HTTP {status}: {hint}" + (f": {detail}" if detail else "")


def ndjson_for(indices: Indices) -> Path:
    """The file to import for these index names: the committed one if they are the defaults,
    else a generated temporary file."""
    text = render_ndjson(build_objects(indices))
    shipped = resources.path("kibana", "osloscope.ndjson")
    if shipped.read_text(encoding="utf-8") == text:
        return shipped
    tmp = Path(tempfile.mkdtemp(prefix="osloscope-kibana-")) / "osloscope.ndjson"
    tmp.write_text(text, encoding="utf-8")
    return tmp


def summarize(result: dict) -> str:
    by_type: dict[str, int] = {}
    for r in result.get("successResults", []):
        by_type[r.get("type", "?")] = by_type.get(r.get("type", "?"), 0) + 1
    parts = ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
    return f"{result.get('successCount', 0)} saved object(s)" + (f" ({parts})" if parts else "")


# -- command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.operations.kibana",
                                description="Kibana saved objects of osloscope (deploy/kibana/osloscope.ndjson).")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", nargs="?", const=str(NDJSON), metavar="FILE",
                   help=f"regenerate the ndjson (default {NDJSON.relative_to(ROOT)})")
    g.add_argument("--check", action="store_true", help="exit 1 if the committed ndjson is not what the code builds")
    args = p.parse_args(argv)
    if args.write:
        path = write_ndjson(args.write)
        print(f"wrote {len(build_objects())} saved objects to {path}")
        return 0
    want = render_ndjson(build_objects())
    have = NDJSON.read_text(encoding="utf-8") if NDJSON.exists() else ""
    if want != have:
        print(f"{NDJSON} is out of date: run python -m pipeline.operations.kibana --write", file=sys.stderr)
        return 1
    problems = validate(build_objects())
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
