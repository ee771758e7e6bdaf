"""Request windows, request summaries (analyze --requests) and trace (their command lines:
tests/cli/test_analyze.py, tests/cli/test_trace.py).

Golden: the seed 002 (S20) and seed 004 (S23-flow) flows name the component
the operator found; synthetic multi-service streams from real templates (events
built with support.ev, no parser) check linking across request ids, windows and
bounded memory.
"""
from __future__ import annotations

import datetime as dt
import json

from support import FIXTURES, SAMPLES, by_time, ev, parse_text
from detectors.request_windows import LINK_CACHE, RES_INDEX, RequestWindows, raised_in
from pipeline.local.requests import summaries
from pipeline.sources.files import discover

SEEDS = FIXTURES / "seeds"
S20_REQ = "req-c5016b48-399b-44f8-adea-a86421f1e129"
S23_REQ = "req-e359221b-6be3-4ac2-bb55-5310f5bb0bb2"
VOLUME = "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"
INSTANCE = "30e8a024-d1c0-4a64-aae7-a830e8c6be94"
CINDER_REQ = "req-0bd8e4b4-6989-4c34-a623-20d2bff98816"
T0 = dt.datetime(2017, 6, 6, 9, 27, 19)


def _valid(validator, docs):
    for doc in docs:
        assert not [e.message for e in validator.iter_errors(doc)], doc


# --- golden ---------------------------------------------------------------------------
def test_seed_002_volume_not_created_ends_in_cinder_volume(request_validator):
    (s,) = summaries(discover([str(SEEDS / "S20")]))
    _valid(request_validator, [s])
    assert (s["key"], s["outcome"], s["services"], s["hosts"]) == (S20_REQ, "error", ["nova-compute"], ["compute"])
    assert s["errors"] == 2 and [x["type"] for x in s["exceptions"]] == ["VolumeNotCreated", "BuildAbortException"]
    assert s["linked"]["volume"] == [VOLUME] and s["linked"]["instance"] == [INSTANCE]
    rc = s["root_cause"]
    # the first error of the deepest service, not the BuildAbortException that follows it
    assert (rc["component"], rc["service"], rc["exception_type"]) == ("cinder-volume", "nova-compute",
                                                                       "VolumeNotCreated")
    assert "status is downloading" in rc["exception_message"]
    assert rc["raised_in"] == "nova/compute/manager.py:1258 in _await_block_device_map_created"


def test_seed_004_http_500_ends_inside_glanceclient(request_validator):
    (s,) = summaries(discover([str(SEEDS / "S23-flow")]))
    _valid(request_validator, [s])
    assert (s["key"], s["outcome"], s["services"]) == (S23_REQ, "error", ["nova-api"])
    assert s["api"] == {"method": "GET", "status": 500, "service": "nova-api", "host": "controller",
                        "path": "/v2/276eb659fd4b44859849c773dcfdf138/images/c9509d39-78b3-4509-94b5-8498e8e6acea"}
    assert s["linked"]["image"] == ["c9509d39-78b3-4509-94b5-8498e8e6acea"]
    rc = s["root_cause"]
    assert (rc["component"], rc["exception_type"], rc["exception_message"]) == ("glanceclient", "AttributeError", "id")
    assert rc["raised_in"] == "glanceclient/openstack/common/apiclient/base.py:494 in __getattr__"
    assert "raised inside glanceclient" in rc["reason"]


def test_healthy_sample_requests_end_ok(request_validator):
    docs = summaries(discover([str(SAMPLES)]))
    _valid(request_validator, docs)
    ok = [d for d in docs if d["key"] == "req-1a3e0f52-7d3c-4e0b-9a77-8f2f1c0b6e21"]
    assert ok and ok[0]["outcome"] == "ok" and ok[0]["root_cause"] is None


def test_raised_in_skips_reraise_helpers():
    stack = ('Traceback (most recent call last):\n'
             '  File "/usr/lib/python2.7/site-packages/nova/compute/manager.py", line 1586, in _prep\n'
             '  File "/usr/lib/python2.7/site-packages/oslo_utils/excutils.py", line 196, in force_reraise\n'
             '  File "/usr/lib/python2.7/site-packages/six.py", line 686, in reraise\n'
             'VolumeNotCreated: x')
    assert raised_in(stack) == ("nova", "nova/compute/manager.py:1586 in _prep")


# --- linking across request ids (pre-Pike: no global request id) ----------------------
def _at(s):
    return T0 + dt.timedelta(seconds=s)


def _flow(cinder_error: bool):
    gave_up = (f"Volume {VOLUME} did not finish being created even after we waited 189 seconds or 61 attempts. "
               "And its status is downloading.")
    nova = [
        ev(_at(0), "INFO", "nova.compute.claims", "Claim successful",
           host="compute-1", service="nova-compute", req=S20_REQ, instance=INSTANCE),
        ev(_at(189.5), "ERROR", "nova.compute.manager", f"Instance failed block device setup: VolumeNotCreated: {gave_up}",
           host="compute-1", service="nova-compute", req=S20_REQ, instance=INSTANCE,
           error_type="VolumeNotCreated", error_message=gave_up, resources={"volume": [VOLUME]}),
    ]
    cinder = [
        ev(_at(1), "INFO", "cinder.volume.flows.manager.create_volume",
           f"Volume {VOLUME}: being created as image with specification: {{'status': u'creating', "
           f"'image_id': 'c9509d39-78b3-4509-94b5-8498e8e6acea', 'volume_name': u'volume-{VOLUME}'}}",
           host="block-1", service="cinder-volume", req=CINDER_REQ,
           resources={"volume": [VOLUME], "image": ["c9509d39-78b3-4509-94b5-8498e8e6acea"]}),
    ]
    if cinder_error:
        cinder.append(ev(_at(60), "ERROR", "cinder.image.image_utils",
                         "Insufficient free space on /var/lib/cinder/conversion for image conversion.",
                         host="block-1", service="cinder-volume", req=CINDER_REQ))
    rw = RequestWindows()
    docs = []
    for e in by_time(nova, cinder):
        docs.extend(rw.feed(e))
    docs.extend(rw.flush())
    return {d["key"]: d for d in docs if d["events"] > 1 or d["key"] == CINDER_REQ}, docs


def test_volume_still_downloading_in_cinder_is_the_root_cause_of_nova_giving_up(request_validator):
    by_key, docs = _flow(cinder_error=False)
    _valid(request_validator, docs)
    nova = [d for d in docs if d["key"] == S20_REQ and d["outcome"] == "error"][0]
    rc = nova["root_cause"]
    assert (rc["component"], rc["service"], rc["host"]) == ("cinder-volume", "cinder-volume", "block-1")
    assert rc["via"] == f"volume {VOLUME}" and rc["request_id"] == CINDER_REQ
    assert "being created as image" in rc["reason"] and "VolumeNotCreated" in rc["reason"]
    assert by_key[CINDER_REQ]["outcome"] == "ok"              # cinder's own request blames nobody


def test_a_cinder_error_is_the_root_cause_and_cinder_does_not_blame_nova():
    _, docs = _flow(cinder_error=True)
    nova = [d for d in docs if d["key"] == S20_REQ and d["outcome"] == "error"][0]
    assert (nova["root_cause"]["service"], nova["root_cause"]["via"]) == ("cinder-volume", f"volume {VOLUME}")
    assert "Insufficient free space" in nova["root_cause"]["message"]
    cinder = [d for d in docs if d["key"] == CINDER_REQ][0]
    assert cinder["root_cause"]["service"] == "cinder-volume" and cinder["root_cause"]["via"] is None


# --- windows ---------------------------------------------------------------------------
def _ev(req, ts, level="INFO", **kw):
    """A record of request ``req`` at epoch seconds ``ts``."""
    kw.setdefault("service", "nova-compute")
    return ev(dt.datetime.fromtimestamp(ts, dt.timezone.utc), level, None, "Claim successful",
              host="compute-1", req=req, **kw)


def _req(i):
    return f"req-00000000-0000-4000-8000-{i:012d}"


def test_windows_close_after_the_gap_and_at_the_maximum_length():
    rw = RequestWindows(gap=120, max_length=3600)
    base = T0.timestamp()
    assert rw.feed(_ev(_req(1), base)) == []
    assert rw.feed(_ev(_req(1), base + 100)) == []
    (s,) = rw.feed(_ev(_req(2), base + 221))                # watermark moved past gap: req 1 closes
    assert (s["key"], s["closed_by"], s["events"], s["duration_seconds"]) == (_req(1), "gap", 2, 100)
    long = [d for t in range(0, 7400, 60) for d in rw.feed(_ev(_req(3), base + 300 + t))] + rw.flush()
    parts = [d for d in long if d["key"] == _req(3)]
    assert [p["closed_by"] for p in parts] == ["max_length", "max_length", "end_of_input"]
    assert parts[0]["outcome"] == "incomplete" and parts[0]["duration_seconds"] <= 3600
    assert len({p["id"] for p in parts}) == 3


def test_advance_closes_idle_windows():
    rw = RequestWindows(gap=120)
    rw.feed(_ev(_req(1), T0.timestamp()))
    assert rw.advance(T0.timestamp() + 60) == []
    (s,) = rw.advance(T0.timestamp() + 121)
    assert s["closed_by"] == "gap" and len(rw.open) == 0


def test_open_windows_are_bounded_and_the_oldest_is_evicted_as_incomplete():
    rw = RequestWindows(max_open=10)
    out = [d for i in range(50) for d in rw.feed(_ev(_req(i), T0.timestamp() + i * 0.01))]
    assert len(rw.open) == 10 and len(out) == 40
    assert {d["outcome"] for d in out} == {"incomplete"} and {d["closed_by"] for d in out} == {"evicted"}


def test_memory_stays_flat_as_distinct_request_ids_grow():
    rw = RequestWindows()
    base = T0.timestamp()
    closed = 0
    for i in range(12_000):
        ts = base + i * 0.05                             # 20 requests/s, 3 records each
        vol = f"00000000-0000-4000-8000-{i:012d}"
        for k in range(3):
            closed += len(rw.feed(_ev(_req(i), ts + k, level="ERROR" if i % 10 == 0 else "INFO",
                                      service="cinder-volume", resources={"volume": [vol]})))
    assert len(rw.open) < 20 * 125                       # only the last gap's worth is open
    assert closed == 12_000 - len(rw.open)
    assert len(rw.closed) <= LINK_CACHE and len(rw.owned) <= RES_INDEX


def test_accepted_boot_without_workers_is_incomplete_and_ends_at_the_api():
    rw = RequestWindows()
    accepted = _ev(_req(7), T0.timestamp(), service="nova-api", http_method="POST", url_path="/v2.1/servers",
                   status_code=202)
    (s,) = rw.feed(accepted) + rw.flush()
    assert s["outcome"] == "incomplete" and s["root_cause"]["component"] == "nova-api"
    assert "no record of the request from nova-compute/nova-conductor/nova-scheduler" in s["root_cause"]["reason"]


def test_request_windows_snapshot_restore_round_trip():
    events = sorted(parse_text((SEEDS / "S20" / "compute" / "nova-compute.log").read_text(), host="compute")
                    + parse_text((SEEDS / "S23-flow" / "controller" / "nova-api.log").read_text(),
                                 host="controller", service="nova-api"), key=lambda e: e.ts)
    whole = RequestWindows()
    expected = [d for e in events for d in whole.feed(e)] + whole.flush()
    for cut in range(0, len(events) + 1, 3):
        a = RequestWindows()
        got = [d for e in events[:cut] for d in a.feed(e)]
        b = RequestWindows()
        b.restore(json.loads(json.dumps(a.snapshot())))
        got += [d for e in events[cut:] for d in b.feed(e)] + b.flush()
        assert got == expected, cut


# --- trace -------------------------------------------------------------------------------
def test_trace_elasticsearch_query_covers_ids_and_resources():
    from pipeline.local.trace import Ids, es_query

    q = es_query(Ids(requests={S20_REQ}, resources={VOLUME}))["bool"]
    fields = {next(iter(c["terms"])) for c in q["should"]}
    assert fields == {"openstack.request_id", "openstack.global_request_id", "openstack.resources.request",
                      "openstack.instance_id", "openstack.resources.instance", "openstack.resources.volume",
                      "openstack.resources.image"}
    assert q["minimum_should_match"] == 1


def test_a_truncated_frame_line_names_no_place():
    """Found by Hypothesis: a traceback cut right after 'File "' raised IndexError."""
    from detectors.request_windows import raised_in

    assert raised_in('Traceback (most recent call last):\n  File "') == (None, None)
