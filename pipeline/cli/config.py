"""``osloscope config check|show``: arguments, exit codes and printing; loading and validating
the settings is in pipeline/settings.py."""
from __future__ import annotations

import json
import sys

from pipeline.cli.options import add_config_option

EXIT_CODES = ("Exit codes: 0 the settings are valid; 2 usage errors or invalid settings (every "
              "problem is printed on stderr with its location).")


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="check or show the effective settings",
                              description="Validate the settings (file + OSLOSCOPE_* environment) "
                                          "or print the effective values with secrets masked.",
                              epilog=EXIT_CODES)
    sub = p.add_subparsers(dest="config_action", metavar="ACTION", help="check or show")
    sub.required = True
    c = sub.add_parser("check", help="validate; print 'ok: <origin>' or every problem (exit 2)",
                       description="Validate the settings; print 'ok: <origin>' on stdout (and the "
                                   "environment overrides on stderr) or every problem on stderr.",
                       epilog=EXIT_CODES)
    add_config_option(c)
    c.set_defaults(func=cmd_config_check)
    s = sub.add_parser("show", help="print the effective settings, secrets masked",
                       description="Print the effective settings, secrets masked.",
                       epilog=EXIT_CODES)
    add_config_option(s)
    s.add_argument("--format", choices=("toml", "json"), default="toml",
                   help="toml (default; values set by the environment or differing from the default "
                        "are commented with their source) or json")
    s.set_defaults(func=cmd_config_show)


def _load(args):
    """(settings, where each value came from), or None after printing every problem."""
    from pipeline.settings import SettingsError, load_with_origins

    try:
        return load_with_origins(args.config)
    except SettingsError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"osloscope: config: {len(exc.errors)} problem(s)", file=sys.stderr)
        return None


def cmd_config_check(args) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    settings, where = loaded
    print(f"ok: {settings.origin}")
    overrides = sorted(w for w in where.values() if w.startswith("env "))
    if overrides:
        print(f"environment overrides: {', '.join(w[4:] for w in overrides)}", file=sys.stderr)
    return 0


def cmd_config_show(args) -> int:
    from pipeline.settings import to_toml

    loaded = _load(args)
    if loaded is None:
        return 2
    settings, where = loaded
    if args.format == "json":
        sys.stdout.write(json.dumps(settings.redacted(), indent=2) + "\n")
    else:
        sys.stdout.write(to_toml(settings, where))
    return 0
