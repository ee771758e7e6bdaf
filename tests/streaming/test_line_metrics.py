"""Line accounting on the worker's /metrics (pipeline/streaming/metrics.py): the parse
stage counts every raw record in, and the lines it passed on in events or in dead
letters; what it still holds is pending; the indexing step counts the lines of the
events Elasticsearch acknowledged or refused."""
from __future__ import annotations

import re

import pytest
from support import SAMPLES, raw_messages

from pipeline import codec
from pipeline.settings import load
from pipeline.sinks.elasticsearch import ElasticsearchSink, Rejected
from pipeline.streaming.metrics import OTHER_HOSTS, LineCounts, Metrics
from pipeline.streaming.stages import ParseStage, RawMessage

SAMPLE = re.compile(r'osloscope_lines_total\{stage="(\w+)",outcome="(\w+)",host="([^"]*)"\} (\d+)')


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={"OSLOSCOPE_WORKER_IDLE_FLUSH": "5"})


def hostile(host: bytes = b"compute-9") -> list[RawMessage]:
    lines = [b"\x00\xff\xfe binary garbage", b"2017-13-45 10:00:00.000 1 ERROR nova.x [-] impossible date",
             b"2017-06-06 10:00:00.000 1 ERROR nova.x [-] truncated" + b"\x00" * 3000,
             b"2017-06-06 10:00:01.000 1 ERROR nova.x Traceback (most recent call last):",
             b"2017-06-06 10:00:01.000 1 ERROR nova.x   File \"x.py\", line 1", b"\x01\x02\x03\xff\xfe\xfd"]
    out, off = [], 0
    for i, ln in enumerate(lines):
        out.append(RawMessage("raw", 0, 10_000 + i, host, ln,
                              {"host": host, "path": b"/var/log/nova/nova-compute.log", "offset": b"%d" % off}))
        off += len(ln) + 1
    return out


def test_the_parse_stage_counts_every_raw_record_once(settings):
    msgs = raw_messages([SAMPLES]) + hostile()
    stage = ParseStage(settings)
    out = stage.process(msgs, 0.0)
    c = stage.lines
    pending = stage.pending_lines()
    assert c.total("in") == len(msgs)
    assert sum(pending.values()) > 0                         # open records, events held for their turn
    assert c.total("event") + c.total("dead_letter") + sum(pending.values()) == len(msgs)
    out.extend(stage.tick(1e9))
    assert sum(stage.pending_lines().values()) == 0
    assert c.total("event") + c.total("dead_letter") == len(msgs)
    # the counts are those the documents carry
    assert c.total("event") == sum(codec.loads(v)["log"]["lines"] for _k, v, _u in out.events)
    assert c.total("dead_letter") == sum(d["lines"] for d in out.deadletters) > 0
    per_host = {h for (_o, h) in c.counts}
    assert {"compute-1", "controller-1", "compute-9"} <= per_host


def test_metrics_expose_lines_per_stage_outcome_and_host(settings):
    stage = ParseStage(settings)
    stage.process(hostile(), 0.0)
    m = Metrics()
    m.observe_lines("parse", stage.lines, stage.pending_lines())
    text = m.prometheus()
    assert "# TYPE osloscope_lines_total counter" in text and "# TYPE osloscope_lines_pending gauge" in text
    got = {(s, o, h): int(n) for s, o, h, n in SAMPLE.findall(text)}
    assert got[("parse", "in", "compute-9")] == 6
    pending = int(re.search(r'osloscope_lines_pending\{stage="parse",host="compute-9"\} (\d+)', text).group(1))
    assert got[("parse", "dead_letter", "compute-9")] + got.get(("parse", "event", "compute-9"), 0) \
        + pending == 6
    assert "parse.lines_in=6" in m.summary()


def test_indexing_counts_acknowledged_and_refused_lines(settings):
    sink = ElasticsearchSink(settings.elasticsearch, client=object())
    a = sink.event_action({"host": {"name": "h1"}, "log": {"lines": 3, "bytes": 90}}, "a")
    b = sink.event_action({"host": {"name": "h1"}, "log": {"lines": 2, "bytes": 10}}, "b")
    incident = sink.incident_action({"id": "i1", "host": "h1"})
    m = Metrics()
    m.indexed_lines("correlate", [a, b, incident], [Rejected(b, 400, "mapper_parsing_exception")])
    assert dict(m.lines["correlate"].counts) == {("indexed", "h1"): 3, ("dead_letter", "h1"): 2}
    letter = Rejected(b, 400, "mapper_parsing_exception").dead_letter()
    assert (letter["lines"], letter["bytes"]) == (2, 10)


def test_hosts_beyond_the_cap_count_together():
    c = LineCounts(max_hosts=2)
    for host in ("a", "b", "c", "d", "a"):
        c.add("in", host)
    assert dict(c.counts) == {("in", "a"): 2, ("in", "b"): 1, ("in", OTHER_HOSTS): 2}
