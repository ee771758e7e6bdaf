"""Dependency direction (DESIGN.md): ``detectors/`` imports no streaming library, no
``pipeline``, no I/O and no wall clock."""
from __future__ import annotations

import ast

from support import ROOT


def test_detectors_package_is_pure():
    banned = {"faust", "kafka", "aiokafka", "elasticsearch", "pipeline", "time", "socket", "os"}
    for path in (ROOT / "detectors").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [(node.module or "").split(".")[0]]
            assert not set(names) & banned, (path.name, names)
        assert "datetime.now" not in path.read_text() and "utcnow" not in path.read_text()


def test_only_streaming_imports_the_kafka_and_faust_libraries():
    """pipeline/streaming/ is the one place faust, aiokafka and kafka-python are imported."""
    banned = {"faust", "kafka", "aiokafka", "mode"}
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if "streaming" in path.relative_to(ROOT / "pipeline").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            if set(names) & banned:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
