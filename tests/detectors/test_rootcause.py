"""Incidents name where their request's chain ends (root-cause candidate and
linked ids), in `osloscope analyze` and in the worker's correlate stage."""
from __future__ import annotations

import json
import subprocess
import sys

from support import FIXTURES, ROOT

from detectors.rootcause import RootCauses

SEEDS = FIXTURES / "seeds"


def analyze_jsonl(path) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(path), "--format", "jsonl",
                        "--dead-letter", "-"], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == 1, r.stderr.decode()
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_seed_002_volume_not_created_points_at_cinder_volume(incident_validator):
    docs = analyze_jsonl(SEEDS / "S20")
    inc = next(d for d in docs if d["rule"] == "retry_exhausted.volume_not_created")
    rc = inc["details"]["root_cause"]
    assert rc["component"] == "cinder-volume" and rc["exception_type"] == "VolumeNotCreated"
    assert rc["request_id"] in inc["request_ids"]
    assert inc["details"]["linked"]["volume"] == ["dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"]
    for d in docs:
        incident_validator.validate(d)


def test_seed_004_api_500_points_inside_glanceclient():
    docs = analyze_jsonl(SEEDS / "S23-flow")
    inc = next(d for d in docs if d["rule"] == "known_issue.glanceclient_attributeerror_id")
    rc = inc["details"]["root_cause"]
    assert (rc["component"], rc["service"], rc["exception_type"]) == ("glanceclient", "nova-api", "AttributeError")
    assert inc["details"]["linked"]["image"]


def test_cause_learned_after_the_incident_completes_it_once():
    rc = RootCauses()
    doc = {"id": "i1", "status": "open", "request_ids": ["req-a"], "details": {}}
    assert rc.track([doc]) == [doc]                    # nothing known yet
    summary = {"key": "req-a", "request_ids": ["req-a"], "linked": {"volume": ["v"]},
               "root_cause": {"component": "cinder-volume", "reason": "x"}}
    (updated,) = rc.learn([summary])
    assert updated["details"]["root_cause"]["component"] == "cinder-volume"
    assert rc.learn([summary]) == []                   # already complete
    later = rc.track([{**doc, "count": 2}])[0]         # a later version keeps the cause
    assert later["details"]["linked"] == {"volume": ["v"]}
    assert rc.track([{**doc, "status": "resolved"}])[0]["details"]["root_cause"]
    assert "i1" not in rc.incidents
