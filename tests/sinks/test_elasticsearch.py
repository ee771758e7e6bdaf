"""The Elasticsearch sink against a real HTTP server speaking the bulk API:
429 and 5xx items are retried with backoff until taken, 4xx items are handed
back as rejected, a dead node is retried (the worker must not commit)."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.sinks.elasticsearch import ElasticsearchSink, day_index, wants_event
from pipeline.settings import load


class FakeBulk(BaseHTTPRequestHandler):
    """Answers _bulk from a script: a list of per-request behaviours."""

    script: list = []
    seen: list = []
    hung = threading.Event()           # set at the end of a test: hung requests give up

    def log_message(self, *_a):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        self.do_POST()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        lines = [json.loads(x) for x in self.rfile.read(length).splitlines() if x.strip()]
        ops = [lines[i] for i in range(0, len(lines), 2)]
        ids = [next(iter(op.values()))["_id"] for op in ops]
        self.seen.append(ids)
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "hang":             # a frozen node: the request is taken, never answered
            self.hung.wait(10)
            return
        if behaviour == "503":
            return self._send(503, {"error": "unavailable", "status": 503})
        items = []
        for i, _id in enumerate(ids):
            status = 201
            if behaviour == "429-first" and i == 0:
                status = 429
            if behaviour == "400-last" and i == len(ids) - 1:
                status = 400
            item = {"_index": "x", "_id": _id, "status": status}
            if status >= 300:
                item["error"] = {"type": "mapper_parsing_exception" if status == 400 else
                                 "es_rejected_execution_exception", "reason": "scripted"}
            items.append({"index": item})
        self._send(200, {"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items),
                         "items": items})


@pytest.fixture
def server():
    FakeBulk.script, FakeBulk.seen, FakeBulk.hung = [], [], threading.Event()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeBulk)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    FakeBulk.hung.set()
    srv.shutdown()
    srv.server_close()


def make_sink(server, retry_forever=True, **env):
    port = server.server_address[1]
    settings = load(None, env={"OSLOSCOPE_ES_URL": f"http://127.0.0.1:{port}",
                               "OSLOSCOPE_ES_MAX_RETRIES": "2", **env})
    sleeps: list[float] = []
    sink = ElasticsearchSink(settings.elasticsearch, retry_forever=retry_forever, sleep=sleeps.append)
    sink.client = sink.client.options(max_retries=0)
    return sink, sleeps


def actions(sink, n=3):
    return [sink.event_action({"@timestamp": "2017-06-06T09:30:28.600+00:00", "message": f"m{i}"}, f"id{i}")
            for i in range(n)]


def test_429_items_are_retried_with_backoff_until_taken(server):
    sink, sleeps = make_sink(server)
    FakeBulk.script = ["429-first", "429-first", "ok"]
    assert sink.write(actions(sink)) == []
    assert FakeBulk.seen == [["id0", "id1", "id2"], ["id0"], ["id0"]]   # only the refused item again
    assert sleeps == [1.0, 2.0]
    assert sink.stats.indexed == 3 and sink.stats.retried == 2


def test_unavailable_node_is_retried_and_nothing_is_dropped(server):
    sink, sleeps = make_sink(server)
    FakeBulk.script = ["503", "503", "503", "503", "ok"]
    assert sink.write(actions(sink)) == []
    assert len(FakeBulk.seen) == 5 and FakeBulk.seen[-1] == ["id0", "id1", "id2"]
    assert sleeps == sorted(sleeps) and len(sleeps) == 4     # exponential, beyond max_retries


def test_mapping_rejections_come_back_for_the_dead_letter_topic(server):
    sink, _ = make_sink(server)
    FakeBulk.script = ["400-last"]
    rejected = sink.write(actions(sink))
    assert [r.action["_id"] for r in rejected] == ["id2"]
    assert rejected[0].status == 400 and "mapper_parsing_exception" in rejected[0].reason


def test_without_retry_forever_gives_up_after_max_retries(server):
    sink, sleeps = make_sink(server, retry_forever=False)
    FakeBulk.script = ["503"] * 10
    rejected = sink.write(actions(sink, 2))
    assert len(rejected) == 2 and all(r.status == 503 for r in rejected)
    assert len(sleeps) == 2


def test_index_names_and_event_policy():
    assert day_index("osloscope-events-", None, 1496741428.6) == "osloscope-events-2017.06.06"
    assert day_index("p-", "2017-06-06T23:30:00-02:00") == "p-2017.06.07"
    assert wants_event("all", "DEBUG") and not wants_event("none", "ERROR")
    assert wants_event("warning+", "ERROR") and wants_event("warning+", "WARNING")
    assert not wants_event("warning+", "INFO")


def test_a_request_that_hangs_is_bounded_logged_measured_and_retried(server, caplog):
    """A frozen Elasticsearch takes the request and never answers: the attempt ends after
    request_timeout (not the client's silent retries), is logged and retried; while the
    write hangs, watch() logs it as slow and the latency snapshot shows its age."""
    sink, sleeps = make_sink(server, OSLOSCOPE_ES_REQUEST_TIMEOUT="1.5", OSLOSCOPE_ES_SLOW_REQUEST="0.3")
    FakeBulk.script = ["hang", "ok"]
    caplog.set_level(logging.WARNING, logger="osloscope.elasticsearch")
    result: list = []
    writer = threading.Thread(target=lambda: result.append(sink.write(actions(sink))))
    t0 = time.monotonic()
    writer.start()
    reported = 0
    while writer.is_alive() and not reported and time.monotonic() - t0 < 10:
        time.sleep(0.1)
        reported = sink.watch()
    snap = sink.latency.snapshot()
    assert reported == 1, "watch() did not report the hung request"
    assert snap["inflight"] == 1 and snap["inflight_seconds"] > 0.3
    assert sink.watch() == 0                         # reported once, not on every call
    writer.join(15)
    assert result == [[]] and time.monotonic() - t0 < 10
    assert FakeBulk.seen == [["id0", "id1", "id2"]] * 2          # the whole request again
    assert len(sleeps) == 1
    snap = sink.latency.snapshot()
    assert snap["outcomes"] == {"timeout": 1, "ok": 1} and snap["count"] == 2
    assert snap["inflight"] == 0 and snap["inflight_seconds"] == 0.0 and snap["slow"] == 1
    assert snap["seconds"] >= 1.5
    buckets = dict(snap["buckets"])
    assert buckets[0.5] == 1 and buckets[1.0] == 1 and buckets[2.5] == 2     # cumulative
    text = caplog.text
    assert "has not taken a batch of 3 document(s)" in text
    assert re.search(r"took \d+\.\d s and 2 request\(s\) to take a batch of 3 document", text), text
    assert "did not answer a bulk request of 3 document(s) within 1.5 s" in text
