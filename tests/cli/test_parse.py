"""``osloscope parse`` (pipeline/cli/parse.py): oslo.log in, one ECS-shaped document per record out."""
from __future__ import annotations

import json

from support import FIXTURES, osloscope

SEEDS = FIXTURES / "seeds"


def test_parse_prints_one_nested_json_document_per_record(event_validator):
    r = osloscope("parse", SEEDS / "S20", "--format", "jsonl")
    assert r.returncode == 0
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 6
    assert docs[1]["error"]["type"] == "VolumeNotCreated"
    assert docs[1]["openstack"]["instance_id"] == "30e8a024-d1c0-4a64-aae7-a830e8c6be94"
    for d in docs:
        assert not list(event_validator.iter_errors(d))


def test_parse_usage_errors_exit_2(tmp_path):
    r = osloscope("parse", tmp_path / "missing.log")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = osloscope("parse", SEEDS / "S20", "--tz", "Mars/Olympus")
    assert r.returncode == 2 and "is not a timezone" in r.stderr
