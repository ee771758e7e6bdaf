"""``osloscope incidents``: arguments, exit codes and printing; the query is in
pipeline/sinks/incidents.py."""
from __future__ import annotations

import argparse
import sys

from pipeline.cli.options import add_config_option, load_settings

EPILOG = """\
Exit codes: 0 listed (also when there are none); 2 usage errors, invalid settings, or
Elasticsearch disabled or not reachable; 1 any other failure, with a traceback."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "incidents", help="list incidents stored in Elasticsearch",
        description="List the incidents the worker indexed into Elasticsearch, most recently "
                    "seen first, as a table with cause and fix or as JSON lines.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--status", choices=("open", "resolved"), help="only incidents in this state")
    p.add_argument("--type", dest="type_", help="only this type (retry_exhausted, auth_failure, "
                                                 "disk_full, ...)")
    p.add_argument("--severity", choices=("critical", "error", "warning"),
                   help="only incidents of this severity")
    p.add_argument("--host", help="only incidents involving this host")
    p.add_argument("--since", metavar="T", help="only incidents seen at or after T (ISO 8601)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N incidents (default 50)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table (default): readable summary with cause and fix; jsonl: one incident "
                        "document per line, as stored")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from pipeline import codec
    from pipeline.sinks import terminal as render
    from pipeline.sinks.incidents import query

    settings = load_settings(args.config, "incidents")
    if settings is None:
        return 2
    if not settings.elasticsearch.enabled:
        print("osloscope incidents: Elasticsearch is disabled (elasticsearch.url is empty)",
              file=sys.stderr)
        return 2
    from elasticsearch import ConnectionError as ESConnectionError

    try:
        docs = query(settings.elasticsearch, status=args.status, type_=args.type_, host=args.host,
                     severity=args.severity, since=args.since, limit=args.limit)
    except ESConnectionError as exc:
        print(f"osloscope incidents: Elasticsearch not reachable at {settings.elasticsearch.url}: "
              f"{exc}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    if args.format == "jsonl":
        for doc in docs:
            out.write(codec.dumps(doc) + b"\n")
    else:
        out.write(render.table(docs).encode())
    out.flush()
    print(f"osloscope: {len(docs)} incident(s) from {settings.elasticsearch.incidents_index}",
          file=sys.stderr)
    return 0
