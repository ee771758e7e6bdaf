"""Kibana saved objects (deploy/kibana/osloscope.ndjson, pipeline/operations/kibana.py).

No Kibana runs here (it cannot be installed on this machine), so the file is checked the
way Kibana's import would check it: one JSON object per line, unique ids, every reference
resolvable inside the file, dashboard panels matching their references, attributes within
Kibana 8.x's create schemas, and every field a panel names mapped (with doc values where it
aggregates or sorts) by the index templates generated from schemas/. The import client runs
against a real HTTP server in a thread that checks the multipart body and the headers.
The request Kibana sends for each panel is emulated by tests/kibana_emulator.py (checked here);
tests/integration/test_kibana_panels.py runs every one on a real Elasticsearch.
"""
from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import kibana_emulator as emulator
from pipeline.operations import kibana
from pipeline.sinks import index_templates
from support import ROOT

NDJSON = ROOT / "deploy" / "kibana" / "osloscope.ndjson"

# DECLARED: the request summary fields the requests data view relies on and the Elasticsearch
# type each must have in the index template generated from schemas/request.schema.json.
DECLARED_REQUEST_FIELDS = {
    "first_seen": "date", "last_seen": "date", "key": "keyword", "outcome": "keyword",
    "duration_seconds": "double", "services": "keyword", "hosts": "keyword", "errors": "long",
    "api.method": "keyword", "api.path": "keyword", "api.status": "long", "api.service": "keyword",
    "root_cause.component": "keyword", "root_cause.exception_type": "keyword", "root_cause.reason": "keyword",
}
# typeMigrationVersion a Kibana 8.x export writes per type (the last migration before model
# versions; Kibana 8.9+ migrates the objects on from there)
KIBANA_8_EXPORT_TYPE_VERSION = {"index-pattern": "8.0.0", "search": "8.0.0", "visualization": "8.5.0",
                                "dashboard": "8.9.0"}
AGGREGATABLE = {"keyword", "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                "date", "date_nanos", "boolean", "ip"}


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return NDJSON.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def objects(lines) -> list[dict]:
    return [json.loads(line) for line in lines]


def by_title(objects, type_):
    return {o["attributes"]["title"]: o for o in objects if o["type"] == type_}


# -- the file ------------------------------------------------------------------------------
def test_committed_file_equals_generated():
    assert NDJSON.read_text(encoding="utf-8") == kibana.render_ndjson(kibana.build_objects()), \
        "deploy/kibana/osloscope.ndjson is stale: run `python -m pipeline.operations.kibana --write`"
    assert kibana.main(["--check"]) == 0


def test_one_json_object_per_line_with_unique_ids(lines, objects):
    assert lines and all(line.strip() for line in lines)
    assert all(isinstance(o, dict) for o in objects)
    for o in objects:
        assert {"id", "type", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"} <= set(o)
        assert o["type"] in ("index-pattern", "search", "visualization", "dashboard")
    ids = [o["id"] for o in objects]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves_to_an_object_in_the_file(objects):
    present = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        names = [r["name"] for r in o["references"]]
        assert len(names) == len(set(names)), o["id"]
        for r in o["references"]:
            assert (r["type"], r["id"]) in present, (o["id"], r)


def test_search_sources_name_their_data_view_reference(objects):
    for o in objects:
        if o["type"] not in ("search", "visualization", "dashboard"):
            continue
        source = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "lucene" and "filter" in source
        if o["type"] == "dashboard":
            assert "indexRefName" not in source and "index" not in source
            continue
        refs = {r["name"]: r for r in o["references"]}
        assert refs[source["indexRefName"]]["type"] == "index-pattern", o["id"]
        assert "index" not in source                  # never an inline id


def test_dashboard_panels_match_their_references(objects):
    ids = {(o["type"], o["id"]) for o in objects}
    dashboards = [o for o in objects if o["type"] == "dashboard"]
    assert len(dashboards) == 2
    for d in dashboards:
        panels = json.loads(d["attributes"]["panelsJSON"])
        refs = {r["name"]: r for r in d["references"]}
        assert len(panels) == len(refs)
        for p in panels:
            ref = refs[f"{p['panelIndex']}:{p['panelRefName']}"]      # Kibana 8.x naming
            assert ref["type"] == p["type"] and (ref["type"], ref["id"]) in ids
            g = p["gridData"]
            assert g["i"] == p["panelIndex"] and g["x"] + g["w"] <= 48 and g["w"] > 0 and g["h"] > 0
        # no two panels overlap on the grid
        cells = set()
        for p in panels:
            g = p["gridData"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, (d["id"], p["panelIndex"])
            cells |= mine


def test_attributes_fit_kibana_8_create_schemas(objects):
    assert kibana.validate(objects) == []
    for o in objects:
        assert set(o["attributes"]) <= kibana.ALLOWED_ATTRIBUTES[o["type"]], o["id"]
        assert o["coreMigrationVersion"] == "8.8.0", o["id"]
        assert o["typeMigrationVersion"] == KIBANA_8_EXPORT_TYPE_VERSION[o["type"]], o["id"]
    for o in objects:
        if o["type"] == "visualization":
            state = json.loads(o["attributes"]["visState"])
            assert state["title"] == o["attributes"]["title"]
            metric_ids = {a["id"] for a in state["aggs"] if a["schema"] == "metric"}
            for a in state["aggs"]:
                assert a["schema"] in kibana.VIS_SCHEMAS[state["type"]], (o["id"], a)
                if a["type"] == "terms":
                    assert a["params"]["orderBy"] in metric_ids
            for s in state["params"].get("seriesParams", []):
                assert s["data"]["id"] in metric_ids


def test_validate_reports_broken_objects(objects):
    broken = json.loads(json.dumps(objects))
    d = next(o for o in broken if o["type"] == "dashboard")
    d["references"][0]["id"] = "nope"
    v = next(o for o in broken if o["type"] == "visualization")
    v["attributes"]["colour"] = "red"
    s = next(o for o in broken if o["type"] == "search")
    s["references"] = []
    problems = "\n".join(kibana.validate(broken))
    assert "-> visualization nope is not in the file" in problems or "nope is not in the file" in problems
    assert "colour" in problems
    assert f"{s['id']}: indexRefName" in problems


def test_data_views_and_what_the_dashboards_show(objects):
    views = {o["id"]: o["attributes"] for o in objects if o["type"] == "index-pattern"}
    assert {(v["title"], v["timeFieldName"]) for v in views.values()} == {
        ("osloscope-events-*", "@timestamp"), ("osloscope-requests", "first_seen"),
        ("osloscope-incidents", "last_seen")}
    searches = by_title(objects, "search")
    types = json.loads((ROOT / "schemas" / "incident.schema.json").read_text())["properties"]["type"]["enum"]
    for t in types:                                   # one saved search per incident type
        q = json.loads(searches[f"Incidents: {t}"]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert q["query"]["query"] == f"type:{t}"
    assert "remediation" in searches["Open incidents (with remediation)"]["attributes"]["columns"]
    titles = {o["id"]: o["attributes"]["title"] for o in objects}
    shown = {}
    for d in (o for o in objects if o["type"] == "dashboard"):
        shown[d["attributes"]["title"]] = {titles[r["id"]] for r in d["references"]}
    assert shown["OpenStack incidents"] >= {
        "Incidents over time by type", "Incidents over time by severity", "Open incidents (with remediation)",
        "Top hosts by incidents", "Top services by incidents", "Disk-full hosts", "Auth failures by source address",
        "Auth failures by user", "Retry exhaustion by resource"}
    assert shown["Requests"] >= {"Failing requests", "Slowest requests", "Slowest API calls",
                                 "Error records by service", "Failing requests by service"}


# -- fields -----------------------------------------------------------------------------------
def _flatten(props: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, m in props.items():
        path = prefix + name
        if "properties" in m:
            out[path] = "object"
            out.update(_flatten(m["properties"], path + "."))
        else:
            out[path] = m.get("type", "object") if m.get("enabled", True) else "not indexed"
            for sub, sm in m.get("fields", {}).items():
                out[f"{path}.{sub}"] = sm["type"]
    return out


def _mapped_fields(schema: str) -> tuple[dict[str, str], str]:
    return _flatten(index_templates.mappings(schema)["properties"]), f"index template from {schema}.schema.json"


def test_every_field_is_mapped_by_the_index_templates(objects):
    refs = emulator.referenced_fields(objects)
    assert set(refs) == {kibana.DV_EVENTS, kibana.DV_INCIDENTS, kibana.DV_REQUESTS}
    problems = []
    for dv, fields in refs.items():
        mapped, source = _mapped_fields(emulator.DATA_VIEW_SCHEMA[dv])
        for name, uses in fields.items():
            kind = mapped.get(name)
            who = ", ".join(sorted({f"{u.object_id} ({u.role})" for u in uses}))
            if kind is None:
                problems.append(f"{dv}: {name} not in the {source}; used by {who}")
            elif any(u.aggregatable for u in uses) and kind not in AGGREGATABLE:
                problems.append(f"{dv}: {name} is {kind} in the {source}, cannot aggregate/sort; used by {who}")
    assert not problems, "\n".join(problems)


def test_request_fields_declared_here_match_the_schema():
    mapped = _flatten(index_templates.mappings("request")["properties"])
    assert {f: mapped.get(f) for f in DECLARED_REQUEST_FIELDS} == DECLARED_REQUEST_FIELDS


def test_query_fields_are_parsed_from_lucene():
    assert emulator.query_fields("type:disk_full") == ["type"]
    assert emulator.query_fields('log.level:(ERROR OR CRITICAL) AND message:"a: b"') == ["log.level", "message"]
    assert emulator.query_fields("api.status:>=500") == ["api.status"]
    assert emulator.query_fields("") == []


# -- the queries behind the panels --------------------------------------------------------------
def test_panel_queries_are_what_kibana_sends():
    qs = {q.object_id: q for q in emulator.panel_queries(time_range=("2017-06-06T00:00:00Z", "2017-06-07T00:00:00Z"))}
    objects = kibana.build_objects()
    assert set(qs) == {o["id"] for o in objects if o["type"] in ("search", "visualization")}
    disk = qs["osloscope-vis-disk-full-hosts"]
    assert disk.index == "osloscope-incidents" and disk.time_field == "last_seen"
    assert disk.body["size"] == 0
    assert disk.body["query"]["bool"]["must"] == [{"query_string": {"query": "type:disk_full",
                                                                     "analyze_wildcard": True}}]
    assert disk.body["query"]["bool"]["filter"] == [{"range": {"last_seen": {
        "gte": "2017-06-06T00:00:00Z", "lte": "2017-06-07T00:00:00Z", "format": "strict_date_optional_time"}}}]
    assert disk.body["aggs"] == {"4": {
        "terms": {"field": "hosts", "size": 20, "order": {"_count": "desc"}},
        "aggs": {"2": {"sum": {"field": "count"}}, "3": {"max": {"field": "last_seen"}}}}}
    over_time = qs["osloscope-vis-incidents-over-time-by-type"].body["aggs"]
    assert over_time["2"]["date_histogram"] == {"field": "last_seen", "fixed_interval": "30m", "time_zone": "UTC",
                                                "min_doc_count": 1}
    assert over_time["2"]["aggs"]["3"]["terms"]["field"] == "type"
    retry = qs["osloscope-vis-retry-exhaustion-by-resource"].body["aggs"]["3"]
    assert retry["aggs"]["4"]["terms"]["missing"] == emulator.MISSING
    slow = qs["osloscope-vis-slowest-api-calls"].body["aggs"]["4"]
    # ordered by the max-duration metric, which Kibana adds to every level it orders by
    assert slow["terms"]["order"] == {"1": "desc"} and slow["aggs"]["1"] == {"max": {"field": "duration_seconds"}}
    assert qs["osloscope-vis-slowest-api-calls"].buckets[-1].field == "api.path"
    search = qs["osloscope-search-slowest-requests"]
    assert search.body["sort"] == [{"duration_seconds": {"order": "desc", "unmapped_type": "boolean"}}]
    assert search.body["query"]["bool"]["must"] == []
    remapped = emulator.panel_queries(index_map={kibana.DV_INCIDENTS: "it-x-incidents"})
    assert {q.index for q in remapped if q.data_view == kibana.DV_INCIDENTS} == {"it-x-incidents"}


def test_auto_interval():
    assert emulator.auto_interval(("2017-06-06T00:00:00Z", "2017-06-06T00:15:00Z")) == {"fixed_interval": "30s"}
    assert emulator.auto_interval(("2017-06-06T00:00:00Z", "2017-06-08T00:00:00Z")) == {"calendar_interval": "1h"}
    assert emulator.auto_interval(("2017-06-01T00:00:00Z", "2017-06-08T00:00:00Z")) == {"fixed_interval": "12h"}
    assert emulator.auto_interval(("2017-06-01T00:00:00Z", "2017-07-01T00:00:00Z")) == {"calendar_interval": "1d"}
    assert emulator.auto_interval(("2015-01-01T00:00:00Z", "2018-01-01T00:00:00Z")) == {"calendar_interval": "1M"}


def test_tabify_rows():
    pq = next(q for q in emulator.panel_queries() if q.object_id == "osloscope-vis-retry-exhaustion-by-resource")
    response = {"hits": {"total": {"value": 2}, "hits": []}, "aggregations": {"3": {"buckets": [
        {"key": "retry_exhausted.volume_not_created", "doc_count": 2, "4": {"buckets": [
            {"key": "vol-1", "doc_count": 1, "5": {"buckets": [
                {"key": "inst-1", "doc_count": 1, "2": {"value": 3.0}}]}},
            {"key": emulator.MISSING, "doc_count": 1, "5": {"buckets": [
                {"key": emulator.MISSING, "doc_count": 1, "2": {"value": 1.0}}]}}]}}]}}}
    assert emulator.tabify(pq, response) == [
        {"keys": ("retry_exhausted.volume_not_created", "vol-1", "inst-1"), "count": 1, "1": 1, "2": 3.0},
        {"keys": ("retry_exhausted.volume_not_created", emulator.MISSING, emulator.MISSING), "count": 1, "1": 1,
         "2": 1.0}]
    assert emulator.tabify(pq, {"hits": {"total": {"value": 0}, "hits": []}}) == []    # index missing
    search = next(q for q in emulator.panel_queries() if q.object_id == "osloscope-search-open-incidents")
    rows = emulator.tabify(search, {"hits": {"hits": [{"_id": "a", "_source": {
        "severity": "critical", "type": "disk_full", "title": "t", "hosts": ["compute-2"], "count": 2,
        "remediation": "free space"}}]}})
    assert rows == [{"_id": "a", "severity": "critical", "type": "disk_full", "title": "t",
                     "hosts": ["compute-2"], "count": 2, "remediation": "free space"}]
    assert emulator.get_path({"exceptions": [{"type": "A"}, {"type": "B"}]}, "exceptions.type") == ["A", "B"]
    assert emulator.get_path({"api": None}, "api.path") is None


def test_builders_follow_the_configured_index_names():
    objs = kibana.build_objects(kibana.Indices("it-1-events-*", "it-1-incidents", "it-1-requests"))
    titles = {o["id"]: o["attributes"]["title"] for o in objs if o["type"] == "index-pattern"}
    assert titles == {kibana.DV_EVENTS: "it-1-events-*", kibana.DV_INCIDENTS: "it-1-incidents",
                      kibana.DV_REQUESTS: "it-1-requests"}
    assert kibana.validate(objs) == []
    assert kibana.ndjson_for(kibana.Indices()) == NDJSON           # defaults: the committed file
    other = kibana.ndjson_for(kibana.Indices("it-1-events-*", "it-1-incidents", "it-1-requests"))
    assert other != NDJSON and emulator.load_ndjson(other) == objs
    other.unlink()
    other.parent.rmdir()


# -- import into a (fake, but real HTTP) Kibana ----------------------------------------------------
class FakeKibana:
    """An HTTP server in a thread that records requests and answers from a script."""

    def __init__(self, answers: list[tuple[int, dict | str]] | None = None) -> None:
        self.requests: list[dict] = []
        self.answers = list(answers or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                outer.requests.append({"path": self.path, "headers": self.headers, "body": body})
                status, answer = outer.answers.pop(0) if outer.answers else (200, outer.success(body))
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def success(body: bytes) -> dict:
        return {"success": True, "successCount": 0, "successResults": []}

    def __enter__(self) -> "FakeKibana":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def upload(request: dict) -> tuple[str | None, bytes]:
    """(filename, content) of the multipart form field ``file``; checks the form is well formed."""
    ctype = request["headers"]["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + request["body"])
    assert msg.is_multipart() and not msg.defects
    parts = list(msg.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_content_type() == "application/ndjson"
    return part.get_filename(), part.get_payload(decode=True)


def imported_ok(objects: list[dict]) -> dict:
    return {"success": True, "successCount": len(objects),
            "successResults": [{"type": o["type"], "id": o["id"], "meta": {"title": o["attributes"]["title"]}}
                               for o in objects]}


def test_import_posts_the_file_as_multipart_with_kbn_xsrf(objects):
    with FakeKibana([(200, imported_ok(objects))]) as kb:
        result = kibana.import_saved_objects(kb.url, NDJSON)
    assert result["successCount"] == len(objects)
    (req,) = kb.requests
    assert req["path"] == "/api/saved_objects/_import?overwrite=true"
    assert req["headers"]["kbn-xsrf"]
    assert req["headers"].get("Authorization") is None
    filename, content = upload(req)
    assert filename == "osloscope.ndjson" and content == NDJSON.read_bytes()
    assert kibana.summarize(result) == (f"{len(objects)} saved object(s) (2 dashboard, 3 index-pattern, "
                                        f"{sum(o['type'] == 'search' for o in objects)} search, "
                                        f"{sum(o['type'] == 'visualization' for o in objects)} visualization)")


def test_import_into_a_space_with_api_key_or_basic_auth():
    with FakeKibana() as kb:
        kibana.import_saved_objects(kb.url + "/kibana/", NDJSON, space="ops team", api_key="aWQ6a2V5")
        kibana.import_saved_objects(kb.url, NDJSON, space="default", username="elastic", password="s3cret")
    first, second = kb.requests
    assert first["path"] == "/kibana/s/ops%20team/api/saved_objects/_import?overwrite=true"
    assert first["headers"]["Authorization"] == "ApiKey aWQ6a2V5"
    assert second["path"] == "/api/saved_objects/_import?overwrite=true"
    assert second["headers"]["Authorization"] == "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    with pytest.raises(kibana.KibanaError, match="not both"):
        kibana.import_saved_objects("http://127.0.0.1:1", NDJSON, api_key="k", username="u")


def test_import_errors_are_clear(tmp_path):
    failed = {"success": False, "successCount": 28, "errors": [
        {"id": "osloscope-vis-top-hosts", "type": "visualization", "meta": {"title": "Top hosts by incidents"},
         "error": {"type": "missing_references",
                   "references": [{"type": "index-pattern", "id": "osloscope-incidents"}]}},
        {"id": "x", "type": "search", "title": "X", "error": {"type": "unknown", "message": "boom"}}]}
    kibana_401 = {"statusCode": 401, "error": "Unauthorized", "message": "[security_exception] missing credentials"}
    with FakeKibana([(200, failed), (401, kibana_401), (404, "<html>nginx</html>"),
                     (200, "<html>login</html>")]) as kb:
        with pytest.raises(kibana.KibanaError) as err:
            kibana.import_saved_objects(kb.url, NDJSON)
        assert "28 object(s)" in str(err.value) and "2 failed" in str(err.value)
        assert "visualization osloscope-vis-top-hosts (Top hosts by incidents): missing_references: " \
               "index-pattern osloscope-incidents" in str(err.value)
        assert "search x (X): unknown: boom" in str(err.value)
        with pytest.raises(kibana.KibanaError, match="HTTP 401: authentication failed.*missing credentials"):
            kibana.import_saved_objects(kb.url, NDJSON)
        with pytest.raises(kibana.KibanaError, match="HTTP 404.*does not look like Kibana"):
            kibana.import_saved_objects(kb.url, NDJSON)
        with pytest.raises(kibana.KibanaError, match="not JSON"):
            kibana.import_saved_objects(kb.url, NDJSON)
    with pytest.raises(kibana.KibanaError, match=r"Kibana not reachable at http://127.0.0.1:1"):
        kibana.import_saved_objects("http://127.0.0.1:1", NDJSON)
    with pytest.raises(kibana.KibanaError, match="must start with http"):
        kibana.import_saved_objects("localhost:5601", NDJSON)
    with pytest.raises(kibana.KibanaError, match="cannot read"):
        kibana.import_saved_objects("http://127.0.0.1:1", tmp_path / "missing.ndjson")


def test_import_waits_while_kibana_starts(objects):
    starting = {"statusCode": 503, "error": "Service Unavailable", "message": "Kibana server is not ready yet"}
    waited = []
    with FakeKibana([(503, starting), (200, imported_ok(objects))]) as kb:
        result = kibana.import_saved_objects(kb.url, NDJSON, wait=30, log=waited.append)
    assert result["success"] and len(kb.requests) == 2
    assert waited and "not ready" in waited[0]
    with FakeKibana([(503, starting)]) as kb:
        with pytest.raises(kibana.KibanaError, match="HTTP 503: Kibana is not ready yet"):
            kibana.import_saved_objects(kb.url, NDJSON)


def test_osloscope_setup_kibana(objects, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.delenv("KIBANA_API_KEY", raising=False)
    monkeypatch.setenv("KIBANA_PASSWORD", "pw")
    with FakeKibana([(200, imported_ok(objects))]) as kb:
        rc = main(["setup", "--skip-kafka", "--skip-elasticsearch", "--kibana", kb.url, "--kibana-user", "admin",
                   "--kibana-space", "ops"])
    assert rc == 0
    (req,) = kb.requests
    assert req["path"] == "/s/ops/api/saved_objects/_import?overwrite=true"
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()
    assert upload(req)[1] == NDJSON.read_bytes()
    assert f"imported {len(objects)} saved object(s)" in capsys.readouterr().out
    rc = main(["setup", "--skip-kafka", "--skip-elasticsearch", "--kibana", "http://127.0.0.1:1"])
    assert rc == 2
    assert "osloscope setup: Kibana: Kibana not reachable at http://127.0.0.1:1" in capsys.readouterr().err


def test_setup_kibana_uses_the_configured_index_names(monkeypatch, objects):
    from pipeline.operations import setup as provision
    from pipeline.settings import load

    settings = load(None, env={"OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": "prod-events-",
                               "OSLOSCOPE_ES_INCIDENTS_INDEX": "prod-incidents",
                               "OSLOSCOPE_ES_REQUESTS_INDEX": "prod-requests"})
    with FakeKibana([(200, imported_ok(objects))]) as kb:
        provision.setup_kibana(settings, kb.url, log=lambda _m: None)
    content = upload(kb.requests[0])[1].decode()
    views = {o["id"]: o["attributes"]["title"] for o in map(json.loads, content.splitlines())
             if o["type"] == "index-pattern"}
    assert views == {kibana.DV_EVENTS: "prod-events-*", kibana.DV_INCIDENTS: "prod-incidents",
                     kibana.DV_REQUESTS: "prod-requests"}


def test_module_command_line(tmp_path):
    out = tmp_path / "x.ndjson"
    assert kibana.main(["--write", str(out)]) == 0
    assert out.read_text() == NDJSON.read_text()
    assert Path(kibana.NDJSON) == NDJSON


def test_emulator_command_line(capsys):
    assert emulator.main(["--queries", "--from", "2017-06-06T00:00:00Z", "--to", "2017-06-07T00:00:00Z"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {p["id"] for p in printed} == {q.object_id for q in emulator.panel_queries()}
    # --from/--to are the time picker: every request filters on its data view's time field
    ranges = [r for p in printed for f in p["body"]["query"]["bool"]["filter"] for r in f["range"].values()]
    assert len(ranges) == len(printed)
    assert all((r["gte"], r["lte"]) == ("2017-06-06T00:00:00Z", "2017-06-07T00:00:00Z") for r in ranges)


def test_emulator_runs_as_a_script(tmp_path):
    """``python tests/kibana_emulator.py --queries`` from anywhere (its docstring's usage)."""
    script = ROOT / "tests" / "kibana_emulator.py"
    r = subprocess.run([sys.executable, str(script), "--queries"], capture_output=True, text=True, cwd=tmp_path,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr
    ids = [json.loads(line)["id"] for line in r.stdout.splitlines()]
    assert sorted(ids) == sorted(o["id"] for o in kibana.build_objects() if o["type"] in ("search", "visualization"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--queries" in r.stderr and "--preview" in r.stderr
