"""``osloscope incidents``: list incidents from Elasticsearch."""
from __future__ import annotations

import argparse
import sys


def query(es_settings, *, status: str | None = None, type_: str | None = None,
          host: str | None = None, severity: str | None = None, since: str | None = None,
          limit: int = 50, client=None) -> list[dict]:
    """Incident documents, most recently seen first."""
    from pipeline.sinks.elasticsearch import make_client

    filters: list[dict] = []
    if status:
        filters.append({"term": {"status": status}})
    if type_:
        filters.append({"term": {"type": type_}})
    if host:
        filters.append({"term": {"hosts": host}})
    if severity:
        filters.append({"term": {"severity": severity}})
    if since:
        filters.append({"range": {"last_seen": {"gte": since}}})
    own = client is None
    client = client or make_client(es_settings)
    try:
        if not client.indices.exists(index=es_settings.incidents_index):
            return []
        res = client.search(index=es_settings.incidents_index, size=limit,
                            query={"bool": {"filter": filters}} if filters else {"match_all": {}},
                            sort=[{"last_seen": {"order": "desc"}}, {"id": {"order": "asc"}}])
        return [hit["_source"] for hit in res["hits"]["hits"]]
    finally:
        if own:
            client.close()


def register(subparsers) -> None:
    from pipeline.settings import add_config_option

    p = subparsers.add_parser(
        "incidents", help="list incidents stored in Elasticsearch",
        description="List the incidents the worker indexed into Elasticsearch, most recently "
                    "seen first, as a table with cause and fix or as JSON lines.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--status", choices=("open", "resolved"), help="only incidents in this state")
    p.add_argument("--type", dest="type_", help="only this type (retry_exhausted, auth_failure, "
                                                 "disk_full, ...)")
    p.add_argument("--severity", choices=("critical", "error", "warning"))
    p.add_argument("--host", help="only incidents involving this host")
    p.add_argument("--since", metavar="T", help="only incidents seen at or after T (ISO 8601)")
    p.add_argument("--limit", type=int, default=50, help="at most N incidents (default 50)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from pipeline import codec
    from pipeline.sinks import terminal as render
    from pipeline.settings import load_for_command

    settings = load_for_command(args.config, "incidents")
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
