"""The Kafka loop (pipeline/alerting/consumer.py) reaches Kafka only through
pipeline/streaming/kafka_clients.py and notify_state.py, so the rest of alerting loads no
streaming library. Its runs against a real broker are tests/integration/test_notify_kafka.py and
test_notify_ha.py."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STREAMING_LIBRARIES = ("kafka", "faust", "aiokafka")


def test_alerting_imports_no_streaming_library_itself():
    offenders = []
    for path in sorted((ROOT / "pipeline" / "alerting").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] in STREAMING_LIBRARIES]
    assert offenders == []


def test_the_notifier_and_its_commands_load_no_streaming_library():
    code = ("import sys, pipeline.alerting.notifier, pipeline.cli.notify, pipeline.cli.silence\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {STREAMING_LIBRARIES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
