"""``osloscope trace ID``: arguments, exit codes and printing; following the ids, the sources and
the timeline are in pipeline/local/trace.py."""
from __future__ import annotations

import argparse
import sys

from pipeline.cli.options import add_config_option, bad_tz, load_settings

DESCRIPTION = """\
Follow a request id (req-...) or an instance, volume or image UUID across services and hosts --
request ids, downstream Request-ID mentions, shared instance/volume ids -- and print the
timeline with errors marked (!!), tracebacks' last lines and the root-cause candidate. Reads
files with --logs, otherwise the events indexed in Elasticsearch."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="cross-service timeline of a request id or instance/volume/image id",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 records found, 1 nothing matched, 2 usage, input or Elasticsearch errors.")
    p.add_argument("ident", metavar="ID", help="req-<uuid>, or an instance, volume or image UUID")
    p.add_argument("--logs", nargs="+", metavar="PATH",
                   help="read these files/directories/globs (as `osloscope analyze`) instead of "
                        "Elasticsearch")
    p.add_argument("--host", help="host name for all --logs files")
    p.add_argument("--tz", default="UTC", help="timezone the --logs files were written in (default UTC)")
    add_config_option(p)
    p.add_argument("--hops", type=int, default=2, metavar="N",
                   help="rounds of following linked ids (default 2; 0: only the id itself)")
    p.add_argument("--limit", type=int, default=5000, metavar="N",
                   help="at most N records per Elasticsearch query (default 5000, max 10000)")
    p.set_defaults(func=_cmd)


def _err(msg: str) -> int:
    print(f"osloscope trace: {msg}", file=sys.stderr)
    return 2


def _cmd(args) -> int:
    from pipeline.local.trace import from_files, render, root_cause, seed_ids

    try:
        seed = seed_ids(args.ident)
    except ValueError as exc:
        return _err(str(exc))
    if args.hops < 0 or args.limit < 1:
        return _err("--hops must be >= 0 and --limit >= 1")
    if args.logs:
        from pipeline.sources.files import PathError, discover

        problem = bad_tz(args.tz)
        if problem:
            return _err(problem)
        try:
            files = discover(args.logs, host=args.host)
        except PathError as exc:
            return _err(str(exc))
        events, ids = from_files(files, args.tz, seed.copy(), args.hops)
    else:
        events, ids = _from_elasticsearch(args, seed)
        if events is None:
            return 2
    if not events:
        print(f"osloscope trace: no record mentions {args.ident}", file=sys.stderr)
        return 1
    cause, summaries = root_cause(events, seed)
    out = sys.stdout
    out.write(render(args.ident, events, ids, cause, summaries))
    out.flush()
    return 0


def _from_elasticsearch(args, seed):
    """(events, ids) from the events indices, or (None, None) after printing why not."""
    settings = load_settings(args.config, "trace")
    if settings is None:
        return None, None
    es = settings.elasticsearch
    if not es.enabled:
        _err("Elasticsearch is disabled (elasticsearch.url is empty); use --logs PATH")
        return None, None
    from elasticsearch import ApiError, TransportError

    from pipeline.local.trace import from_elasticsearch
    from pipeline.sinks.elasticsearch import make_client

    client = make_client(es)
    try:
        return from_elasticsearch(client, es.events_index_prefix + "*", seed.copy(), args.hops, args.limit)
    except (TransportError, ApiError) as exc:
        _err(f"Elasticsearch query at {es.url} failed: {exc}")
        return None, None
    finally:
        client.close()
