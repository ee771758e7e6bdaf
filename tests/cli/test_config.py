"""``osloscope config check|show`` (pipeline/cli/config.py), also run as ``python -m
pipeline.settings``, which hands over to the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.cli import config
from pipeline.settings import load
from support import ROOT

EXAMPLE = ROOT / "deploy" / "osloscope.example.toml"


@pytest.fixture(autouse=True)
def _isolated(no_settings):
    """No ./osloscope.toml and no OSLOSCOPE_* variables of the caller interfere."""


def write(tmp_path: Path, text: str, name: str = "osloscope.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run_config(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OSLOSCOPE_")}
    full.update(env or {})
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pipeline.settings", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_config_check_exit_codes(tmp_path):
    ok = run_config("check", "--config", str(EXAMPLE), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"ok: {EXAMPLE}\n"
    bad = write(tmp_path, "[kafka]\npartitions = 0\n[nope]\n")
    r = run_config("check", "--config", bad, env={"OSLOSCOPE_ES_URL": "x"}, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert f"{bad}: kafka.partitions: must be >= 1, got 0" in r.stderr
    assert f"{bad}: nope: unknown section" in r.stderr
    assert "env OSLOSCOPE_ES_URL: " in r.stderr
    missing = run_config("check", "--config", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_config_funcs_via_argparse(tmp_path, capsys, monkeypatch):
    import argparse
    ap = argparse.ArgumentParser(prog="osloscope")
    config.register(ap.add_subparsers(dest="command"))
    monkeypatch.setenv("OSLOSCOPE_ES_API_KEY", "topsecret")
    monkeypatch.setenv("OSLOSCOPE_KAFKA_PARTITIONS", "4")
    args = ap.parse_args(["config", "check"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert out.out == "ok: defaults\n" and "OSLOSCOPE_KAFKA_PARTITIONS" in out.err

    args = ap.parse_args(["config", "show"])
    assert args.func(args) == 0
    shown = capsys.readouterr().out
    assert "topsecret" not in shown
    doc = tomllib.loads(shown)                              # the TOML output parses back
    assert doc["kafka"]["partitions"] == 4 and doc["elasticsearch"]["api_key"] == "***"
    assert "partitions = 4  # env OSLOSCOPE_KAFKA_PARTITIONS" in shown

    args = ap.parse_args(["config", "show", "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["kafka"]["partitions"] == 4

    monkeypatch.setenv("OSLOSCOPE_KAFKA_PARTITIONS", "-1")
    args = ap.parse_args(["config", "show"])
    assert args.func(args) == 2
    assert "env OSLOSCOPE_KAFKA_PARTITIONS: must be >= 1, got -1" in capsys.readouterr().err


def test_show_round_trips_through_load(tmp_path, capsys):
    path = write(tmp_path, """
[kafka]
bootstrap = "k:9092"
[[parser.sources]]
host = "compute-*"
timezone = "Asia/Tokyo"
""")
    import argparse
    ns = argparse.Namespace(config=path, format="toml")
    assert config.cmd_config_show(ns) == 0
    again = write(tmp_path, capsys.readouterr().out, "shown.toml")
    assert load(again, env={}) == load(path, env={})
