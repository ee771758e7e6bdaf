"""``osloscope watch``: arguments, exit codes and printing; the work is in pipeline/local/watch.py."""
from __future__ import annotations

import argparse
import sys

from pipeline.cli.options import add_config_option, bad_tz, load_settings

DESCRIPTION = """\
Follow local oslo.log files and report incidents as they open, grow and
resolve -- the parser and the detectors in one process (no Kafka, no
Elasticsearch). Follows appends, rotation by rename and copytruncate, and
new files. Runs until SIGINT/SIGTERM.
"""

EPILOG = """\
examples:
  osloscope watch /var/log/nova /var/log/cinder --host compute-7
  osloscope watch 'logs/*/nova-*.log' --format jsonl | jq .title
  osloscope watch deploy/samples --from-start           replay, then follow

time: incidents resolve after their quiet period measured in log time; when
no lines arrive, log time moves on with the idle wall-clock time.

Exit codes: 0 stopped by SIGINT/SIGTERM; 2 bad PATH, --tz or settings, or
--elasticsearch without a reachable Elasticsearch.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("watch", help="live incident detection on local files (embedded mode)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files, directories (laid out <root>/<host>/.../<service>.log) or globs; "
                        "re-expanded every few seconds so new files are picked up")
    p.add_argument("--from-start", action="store_true",
                   help="read the files present from their first byte, rotated archives (.1, .gz) "
                        "included (default: only lines written from now on)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table (default): a row each time an incident opens or changes, with cause "
                        "and fix when it opens; jsonl: the incident document each time it changes")
    p.add_argument("--host", help="host name for all files (default: the first directory below "
                                  "each directory PATH, else 'unknown')")
    p.add_argument("--tz", help="timezone of every file (default: parser.timezone / "
                                "[[parser.sources]] from the settings, UTC)")
    p.add_argument("--dead-letter", metavar="FILE", default="osloscope-deadletter.jsonl",
                   help="where lines that fit no record go, one JSON object each with the reason "
                        "(default ./osloscope-deadletter.jsonl, created only when needed; '-' to discard)")
    p.add_argument("--elasticsearch", action="store_true",
                   help="also index the events and incidents into Elasticsearch (elasticsearch.url "
                        "of the settings, same indices and ids as the worker)")
    add_config_option(p)
    p.set_defaults(func=cmd_watch)


def _error(message: str) -> int:
    print(f"osloscope: error: {message}", file=sys.stderr)
    return 2


def cmd_watch(args) -> int:
    from pipeline.local.watch import watch
    from pipeline.operations.graceful import stop_on_signals
    from pipeline.sources.files import PathError
    from pipeline.sources.tail import check_paths

    settings = load_settings(args.config, "watch")
    if settings is None:
        return 2
    problem = args.tz and bad_tz(args.tz)
    if problem:
        return _error(problem)
    try:
        check_paths(args.paths)
    except PathError as exc:
        return _error(str(exc))
    sink = None
    if args.elasticsearch:
        if not settings.elasticsearch.enabled:
            return _error("--elasticsearch needs elasticsearch.url in the settings")
        from pipeline.sinks.elasticsearch import BufferedIndexer, install_templates, make_client

        try:
            client = make_client(settings.elasticsearch)
            install_templates(settings.elasticsearch, client)
        except Exception as exc:
            return _error(f"Elasticsearch at {settings.elasticsearch.url}: {exc}")
        sink = BufferedIndexer(settings.elasticsearch, client=client)
    with stop_on_signals() as stop:
        stats = watch(args.paths, settings, out=sys.stdout.buffer, stop_event=stop,
                      from_start=args.from_start, fmt=args.format, host=args.host, tz=args.tz,
                      dead_letter=args.dead_letter, index_sink=sink)
    note = f"; {stats['dead_letters']} unparsed line(s) to {args.dead_letter}" \
        if stats["dead_letters"] and args.dead_letter != "-" else ""
    print(f"osloscope watch: stopped: {stats['lines']} lines, {stats['events']} records, "
          f"{stats['incidents']} incident(s){note}", file=sys.stderr, flush=True)
    return 0
