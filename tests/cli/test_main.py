"""The top-level parser and ``main`` (pipeline/cli/__init__.py): help, the command tree,
lazy imports."""
from __future__ import annotations

import argparse
import subprocess
import sys

from support import ROOT, SAMPLES, osloscope


def _parsers(parser: argparse.ArgumentParser, path: str = "osloscope"):
    """(path, parser) of the parser and every subparser below it (aliases once)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _parsers(sub, f"{path} {name}")


def test_help_explains_the_commands():
    r = osloscope("--help")
    assert r.returncode == 0 and "analyze" in r.stdout and "Exit codes" in r.stdout
    r = osloscope("analyze", "--help")
    assert "--since" in r.stdout and "--tz" in r.stdout


def test_unknown_command_exits_2():
    r = osloscope("frobnicate")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


def test_every_option_and_command_has_help_and_every_command_its_exit_codes():
    from pipeline.cli import build_parser

    missing, no_exit = [], []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}: no help in the command list"
                            for c in action._choices_actions if not c.help]
        if path != "osloscope":
            text = f"{parser.description or ''}\n{parser.epilog or ''}"
            if "exit" not in text.lower():
                no_exit.append(path)
    assert missing == []
    assert no_exit == []


def test_the_description_names_every_detector():
    from detectors.registry import ENTRIES
    from pipeline.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    for entry in ENTRIES:
        assert f"{entry.type} {' '.join(entry.fires_on.split())}" in text, entry.type


def test_commands_are_registered_in_a_fixed_order():
    from pipeline import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    names = [c.dest.split()[0] for c in sub._choices_actions]
    assert names == [m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS]
    assert names[:2] == ["analyze", "parse"] and len(set(names)) == len(names)


def test_embedded_path_imports_no_streaming_library():
    code = (
        "import sys, detectors\n"
        "from pipeline.local.analyze import analyze\n"
        "from pipeline.sources.files import discover\n"
        "from pipeline import cli\n"
        f"res = analyze(discover([{str(SAMPLES)!r}]))\n"
        "assert res.incidents\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'kafka', 'aiokafka', 'elasticsearch', 'elastic_transport', 'mode'))\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
    # the CLI runs of analyze and parse as well
    for args in (["analyze", str(SAMPLES), "--dead-letter", "-"], ["parse", str(SAMPLES)]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline.cli", *args],
                           capture_output=True, text=True, cwd=ROOT)
        imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
        assert "pipeline" in imported, args
        assert not imported & {"faust", "kafka", "aiokafka", "elasticsearch"}, args
