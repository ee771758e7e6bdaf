"""The commands print exactly what they printed when the golden files were
recorded (``python tests/golden.py``): same incidents with the same ids, same
request summaries, same events, same dead letters."""
from __future__ import annotations

import difflib

import pytest

from golden import COMMANDS, GOLDEN, inputs, main_entry, run

CASES = [(case, path, command) for case, path in inputs().items() for command in COMMANDS]


@pytest.mark.parametrize("case,path,command", CASES, ids=[f"{c}.{m}" for c, _, m in CASES])
def test_output_equals_golden(case, path, command, tmp_path):
    expected = (GOLDEN / f"{case}.{command}.jsonl").read_bytes()
    got = run(main_entry(), command, path, tmp_path)
    if got != expected:
        diff = difflib.unified_diff(expected.decode().splitlines(), got.decode().splitlines(),
                                    "golden", "now", n=0, lineterm="")
        pytest.fail(f"osloscope {command} {path} changed:\n" + "\n".join(list(diff)[:20]))
