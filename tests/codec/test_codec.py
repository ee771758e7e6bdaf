"""pipeline.codec: the ECS mapping both ways, caps by encoded bytes, and the
one dead-letter shape every producer writes."""
from __future__ import annotations

import json

import pytest

from support import CORPUS, SAMPLES, parse_file

from detectors.model import Event
from pipeline import codec
from pipeline.codec import MAX_DOC_BYTES, TRUNCATED
from pipeline.codec.ecs import FIELDS
from pipeline.settings import load
from pipeline.sinks.elasticsearch import ElasticsearchSink, Rejected
from pipeline.streaming.stages import CorrelateStage, ParseStage, RawMessage

LETTER_KEYS = ["@timestamp", "reason", "host", "service", "file", "offset", "lines", "bytes", "id", "kafka",
               "elasticsearch", "raw"]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return load(None, env={})


def test_the_ecs_mapping_covers_every_event_field():
    assert {name for name, _ in FIELDS} | {"ts", "resources"} == set(Event.FIELDS)


def test_event_documents_map_back_to_the_same_events():
    events = [ev for path in sorted(SAMPLES.rglob("*.log")) + sorted(CORPUS.glob("*.txt"))[:20]
              for ev in parse_file(path)]
    assert len(events) > 200 and any(ev.resources for ev in events)
    for ev in events:
        back = codec.event_from_doc({**codec.loads(codec.event_json(ev)), "_ts": ev.ts})
        assert {f: getattr(back, f) for f in Event.FIELDS} == {f: getattr(ev, f) for f in Event.FIELDS}


def test_event_records_carry_id_and_time_and_refuse_what_is_not_one():
    ev = parse_file(SAMPLES / "compute-1" / "nova" / "nova-compute.log")[0]
    key, value = codec.event_record(ev, "2049:7")
    doc, eid, ts = codec.read_event_record(value)
    assert (key, eid, ts) == (codec.request_key(ev), codec.event_id(ev, "2049:7"), ev.ts)
    assert doc == codec.event_to_doc(ev)
    for bad in (b"[1]", b'{"message": "no id"}', b'{"_id": "x", "_ts": "soon"}'):
        with pytest.raises(ValueError, match="not an event record"):
            codec.read_event_record(bad)


# -- caps by encoded bytes --------------------------------------------------------------
def test_a_record_of_control_characters_is_capped_by_its_json_not_its_characters(settings):
    """A control character is one character and six bytes of JSON: capping
    characters let this event grow past Kafka's message limit."""
    line = b"2017-06-06 08:12:41.201 1 ERROR nova.x [-] " + b"\x01" * 400_000
    p = ParseStage(settings)
    out = p.process([RawMessage("raw", 0, 0, b"h|/x.log", line, {"host": b"h", "path": b"/x.log"})], 0.0)
    out.extend(p.tick(1e9))
    [(_key, value, _upstream)] = out.events
    assert len(value) <= MAX_DOC_BYTES
    doc = json.loads(value)
    assert doc["message"].endswith(TRUNCATED) and doc["event"]["original"].endswith(TRUNCATED)
    assert doc["log"]["level"] == "ERROR" and doc["_id"]            # the rest is whole
    assert doc["log"]["lines"] == 1 and doc["log"]["bytes"] == len(line)    # counts are never cut


def test_a_nul_block_after_a_record_is_a_dead_letter_capped_by_its_json(settings):
    """NUL bytes are cut out of the record (pipeline.parsing.fold): the block is a
    dead letter of its own, capped by its JSON (six bytes per NUL), with its count."""
    line = b"2017-06-06 08:12:41.201 1 ERROR nova.x [-] boom" + b"\x00" * 400_000
    p = ParseStage(settings)
    out = p.process([RawMessage("raw", 0, 0, b"h|/x.log", line,
                                {"host": b"h", "path": b"/x.log", "offset": b"100"})], 0.0)
    out.extend(p.tick(1e9))
    [(_key, value, _upstream)] = out.events
    doc = json.loads(value)
    assert doc["message"] == "boom" and doc["log"]["lines"] == 1 and doc["log"]["bytes"] == len(line)
    [letter] = out.deadletters
    assert len(codec.dumps(letter)) <= MAX_DOC_BYTES and letter["raw"].endswith(TRUNCATED)
    assert letter["reason"].startswith("400000 NUL bytes: ")
    assert letter["offset"] == 100 + len(line) - 400_000 and (letter["lines"], letter["bytes"]) == (0, 0)


def test_cap_cuts_the_largest_strings_to_a_common_size_and_keeps_the_small_ones():
    doc = {"a": "x" * 2_000_000, "b": {"c": "é" * 600_000, "d": "y" * 5000}, "n": [1, 2, 3]}
    data = codec.cap(doc)
    assert len(data) <= MAX_DOC_BYTES and doc["a"] == "x" * 2_000_000       # the argument is unchanged
    got = json.loads(data)
    assert got["b"]["d"] == "y" * 5000 and got["n"] == [1, 2, 3]
    assert got["a"].endswith(TRUNCATED) and got["b"]["c"].endswith(TRUNCATED)
    sizes = [len(json.dumps(got["a"], ensure_ascii=False).encode()),
             len(json.dumps(got["b"]["c"], ensure_ascii=False).encode())]
    assert abs(sizes[0] - sizes[1]) <= 4 and sum(sizes) > MAX_DOC_BYTES - 6000


def test_cap_leaves_a_document_that_fits_byte_for_byte():
    doc = {"message": "\x00" * 1000, "id": 2 ** 70}
    assert codec.cap(doc) == codec.dumps(doc)


def test_cap_halves_lists_when_no_string_is_large():
    ids = [f"{i:08d}-1111-2222-3333-444455556666" for i in range(60_000)]
    got = json.loads(codec.cap({"openstack": {"resources": {"instance": ids}}, "message": "m"}))
    kept = got["openstack"]["resources"]["instance"]
    assert 0 < len(kept) < len(ids) and kept == ids[:len(kept)] and got["message"] == "m"


def test_cap_text_fits_the_budget_including_quotes_and_escapes():
    for text in ("\x00" * 10_000, "é" * 10_000, '"\\' * 10_000, "ok"):
        for budget in (1024, 5000):
            cut = codec.cap_text(text, budget)
            assert len(codec.dumps(cut)) <= budget
            assert cut == text or (cut.endswith(TRUNCATED) and text.startswith(cut[:-len(TRUNCATED)]))


# -- one dead-letter shape ----------------------------------------------------------------
def _shape(letter: dict) -> None:
    keys = list(letter)
    assert keys == [k for k in LETTER_KEYS if k in letter], keys
    assert keys[:6] == LETTER_KEYS[:6] and keys[-1] == "raw" and letter["reason"]
    assert len(codec.dumps(letter)) <= MAX_DOC_BYTES


def test_every_producer_writes_the_same_dead_letter_shape(settings, monkeypatch):
    letters = []
    # analyze's and watch's files, and the parse stage: an unparsed record
    ev = Event(kind="unparsed", reason="continuation line with no record to join", original="x",
               message="x", host="h", service="nova-compute", file_path="/f", offset=3)
    letters.append(codec.dead_letter(ev))
    assert letters[-1] == {"@timestamp": None, "reason": "continuation line with no record to join",
                           "host": "h", "service": "nova-compute", "file": "/f", "offset": 3, "raw": "x"}
    p = ParseStage(settings)
    out = p.process([RawMessage("raw", 0, 0, b"h|/x.log", b"orphan line", {"host": b"h", "path": b"/x.log"})],
                    0.0)
    [letter] = out.deadletters
    assert (letter["lines"], letter["bytes"]) == (1, len(b"orphan line")) and letter["id"]
    letters.append(letter)
    # the parse stage: the parser raised
    from pipeline.parsing.parser import Parser
    with monkeypatch.context() as m:
        m.setattr(Parser, "feed", lambda *a, **k: 1 / 0)
        out = p.process([RawMessage("raw", 2, 7, b"h|/x.log", b"line",
                                    {"host": b"h", "path": b"/x.log", "offset": b"40"})], 0.0)
    [letter] = out.deadletters
    assert letter["kafka"] == {"topic": "raw", "partition": 2, "offset": 7} and letter["offset"] == 40
    assert (letter["lines"], letter["bytes"]) == (1, 4)
    letters.append(letter)
    # the correlate stage: a record of the events topic it cannot read
    out = CorrelateStage(settings).process([RawMessage("events", 1, 9, b"k", b"\x00" * 2_000_000)], 0.0)
    [letter] = out.deadletters
    assert letter["kafka"]["offset"] == 9 and letter["raw"].endswith(TRUNCATED)
    letters.append(letter)
    # the Elasticsearch sink: documents it refused
    sink = ElasticsearchSink(settings.elasticsearch, client=object())
    ev = parse_file(SAMPLES / "compute-1" / "nova" / "nova-compute.log")[0]
    [action] = sink.event_actions(codec.event_to_doc(ev), "id1", ev.ts)
    letter = Rejected(action, 400, "mapper_parsing_exception: failed to parse").dead_letter()
    assert (letter["host"], letter["file"], letter["offset"]) == (ev.host, ev.file_path, ev.offset)
    assert letter["elasticsearch"] == {"index": action["_index"], "id": "id1"}
    assert (letter["lines"], letter["bytes"]) == (ev.lines, ev.nbytes) and ev.lines >= 1
    assert json.loads(letter["raw"]) == action["_source"]
    letters.append(letter)
    incident = {"id": "i1", "host": "compute-1", "service": "nova-compute", "evidence": []}
    letters.append(Rejected(sink.incident_action(incident), 400, "x").dead_letter())
    assert letters[-1]["host"] == "compute-1" and letters[-1]["file"] is None
    for letter in letters:
        _shape(letter)


def test_the_sink_decides_which_events_it_indexes(settings):
    import dataclasses
    doc = {"@timestamp": "2017-06-06T09:30:28.600+00:00", "log": {"level": "INFO"}}
    for policy, n_info, n_error in (("all", 1, 1), ("warning+", 0, 1), ("none", 0, 0)):
        es = dataclasses.replace(settings.elasticsearch, index_events=policy)
        sink = ElasticsearchSink(es, client=object())
        assert len(sink.event_actions(doc, "a")) == n_info
        assert len(sink.event_actions({**doc, "log": {"level": "ERROR"}}, "b")) == n_error
