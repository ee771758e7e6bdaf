"""Golden outputs of the user-facing commands, recorded before a refactor.

``python tests/golden.py`` writes ``tests/fixtures/golden/<case>.jsonl`` from
the code as it is; ``tests/test_golden.py`` checks the code still prints
exactly those bytes. The cases: ``osloscope analyze --format jsonl``,
``analyze --requests --format jsonl`` and ``osloscope parse --format jsonl``
(plus analyze's dead letters) on the demo samples, every seed fixture and
the corpus.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


def inputs() -> dict[str, str]:
    """case name -> path (relative to the repository root)."""
    out = {"samples": "deploy/samples", "corpus": "tests/fixtures/corpus"}
    for d in sorted((ROOT / "tests" / "fixtures" / "seeds").iterdir()):
        if d.is_dir():
            out[f"seed-{d.name}"] = f"tests/fixtures/seeds/{d.name}"
    return out


COMMANDS = {
    "analyze": ["analyze", "--format", "jsonl", "--no-progress"],
    "requests": ["analyze", "--requests", "--format", "jsonl", "--no-progress"],
    "parse": ["parse", "--format", "jsonl"],
}


def run(main, command: str, path: str, tmp: Path) -> bytes:
    """The bytes ``osloscope <command> <path>`` prints (dead letters appended)."""
    argv = list(COMMANDS[command]) + [path]
    dl = tmp / f"dl-{command}.jsonl"
    if command != "parse":
        argv += ["--dead-letter", str(dl)]
    buf = io.BytesIO()
    wrapper = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(wrapper), contextlib.redirect_stderr(io.StringIO()):
            rc = main(argv)
        wrapper.flush()
    finally:
        os.chdir(cwd)
    data = buf.getvalue()
    if dl.exists():
        data += b"# dead letters\n" + dl.read_bytes()
        dl.unlink()
    # file paths are absolute: the golden files must not depend on where the clone is
    data = data.replace(str(ROOT).encode() + b"/", b"<root>/")
    return f"# exit {rc}\n".encode() + data


def main_entry():
    from pipeline.cli import main
    return main


if __name__ == "__main__":
    import tempfile

    entry = main_entry()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case, path in inputs().items():
            for command in COMMANDS:
                data = run(entry, command, path, Path(tmp))
                (GOLDEN / f"{case}.{command}.jsonl").write_bytes(data)
                print(case, command, len(data), file=sys.stderr)
