"""Options and checks several commands share: ``--config`` and the settings it names,
``--loglevel``, the input paths of ``analyze`` and ``parse``, ``--tz``."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.settings import Settings


def add_config_option(p: argparse.ArgumentParser) -> None:
    from pipeline.settings import DEFAULT_FILE

    p.add_argument("--config", metavar="FILE",
                   help=f"settings file (TOML); default: $OSLOSCOPE_CONFIG, else ./{DEFAULT_FILE} if "
                        "present, else built-in defaults. OSLOSCOPE_<SECTION>_<KEY> variables override it")


def add_loglevel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"),
                   help="least severe log messages written to stderr (default info)")


def load_settings(path: str | None, command: str) -> "Settings | None":
    """``settings.load(path)`` for a command: on invalid settings, print every problem
    as ``osloscope COMMAND: invalid settings:`` and return None (the command exits 2)."""
    from pipeline.settings import SettingsError, load

    try:
        return load(path)
    except SettingsError as exc:
        print(f"osloscope {command}: invalid settings:\n{exc}", file=sys.stderr)
        return None


def bad_tz(name: str) -> str | None:
    """Why ``--tz name`` is not usable, or None."""
    from pipeline.parsing.timefmt import tz_of

    try:
        tz_of(name)
    except Exception:
        return f"--tz {name!r} is not a timezone (use e.g. UTC, Europe/Berlin, +08:00)"
    return None


def add_input_args(p: argparse.ArgumentParser) -> None:
    """PATH..., --host and --tz of ``analyze`` and ``parse``."""
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files (plain, .gz, rotated .1), directories laid out as "
                        "<root>/<host>/.../<service>.log, or quoted globs; a glob's directory "
                        "before its first wildcard is the <root> ('sos/*/nova/*.log': the host "
                        "is the directory below sos)")
    p.add_argument("--host", help="host name for all files (e.g. for one machine's /var/log); "
                                  "default: the first directory below each directory PATH or "
                                  "below the literal directory of a glob PATH")
    p.add_argument("--tz", default="UTC",
                   help="timezone the logs were written in (oslo.log writes local time without a "
                        "zone): an IANA name like Europe/Berlin or an offset like +08:00 (default UTC)")


def require_tz(name: str) -> None:
    """Exit 2 with the reason when ``--tz name`` is not usable."""
    problem = bad_tz(name)
    if problem:
        print(f"osloscope: error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def inputs(args) -> list:
    """The log files of ``add_input_args``' PATHs and --host; a bad PATH exits 2 with the reason."""
    from pipeline.sources.files import PathError, discover, warn

    try:
        return discover(args.paths, host=args.host, on_warning=warn)
    except PathError as exc:
        print(f"osloscope: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
