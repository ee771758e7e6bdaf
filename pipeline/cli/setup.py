"""``osloscope setup``: arguments, exit codes and printing; creating the topics, templates and
Kibana objects is in pipeline/operations/setup.py."""
from __future__ import annotations

import argparse
import sys

from pipeline.cli.options import add_config_option, load_settings

DESCRIPTION = """\
Create the Kafka topics (raw, dead-letter, events by request, incidents) and install the
Elasticsearch index templates generated from schemas/. Safe to run again: existing topics are
kept, templates are replaced by the current version."""

EPILOG = """\
Exit codes: 0 done; 1 no Kafka broker reachable within 60 s, or another failure (with a
traceback); 2 usage errors, invalid settings, Kafka rejected the settings (authentication,
TLS, security protocol: named, at once), Elasticsearch not reachable, or the Kibana import
failed."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "setup", help="create the Kafka topics and Elasticsearch index templates (idempotent)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--skip-kafka", action="store_true", help="do not touch Kafka")
    p.add_argument("--skip-elasticsearch", action="store_true", help="do not touch Elasticsearch")
    k = p.add_argument_group("Kibana (data views, saved searches, visualizations, dashboards)")
    k.add_argument("--kibana", metavar="URL", help="also import deploy/kibana/osloscope.ndjson into the "
                                                   "Kibana at URL, e.g. http://localhost:5601 (overwrites "
                                                   "the osloscope objects)")
    k.add_argument("--kibana-space", metavar="ID", help="Kibana space to import into (default space)")
    k.add_argument("--kibana-api-key", metavar="KEY", help="Kibana API key (base64 id:key; default "
                                                           "$KIBANA_API_KEY)")
    k.add_argument("--kibana-user", metavar="NAME", help="Kibana user; the password comes from "
                                                         "$KIBANA_PASSWORD or is asked for")
    k.add_argument("--kibana-ca", metavar="FILE", help="CA bundle to verify Kibana's TLS certificate")
    k.add_argument("--kibana-insecure", action="store_true", help="do not verify Kibana's TLS certificate")
    k.add_argument("--kibana-wait", type=float, default=0.0, metavar="SECONDS",
                   help="keep retrying this long while Kibana is unreachable or starting (default 0)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from pipeline.operations.setup import setup, setup_kibana

    settings = load_settings(args.config, "setup")
    if settings is None:
        return 2
    from pipeline.streaming.kafka_clients import KafkaAccessError

    try:
        setup(settings, kafka=not args.skip_kafka, elasticsearch=not args.skip_elasticsearch)
        if args.kibana:
            from pipeline.operations.kibana import KibanaError

            try:
                setup_kibana(settings, args.kibana, **_kibana_options(args))
            except KibanaError as exc:
                print(f"osloscope setup: Kibana: {exc}", file=sys.stderr)
                return 2
    except KafkaAccessError as exc:       # named: authentication, TLS, protocol, unreachable
        hint = " (is `osloscope services up` running?)" if exc.retriable else ""
        print(f"osloscope setup: error: Kafka {settings.kafka.bootstrap}: {exc}{hint}", file=sys.stderr)
        return 1 if exc.retriable else 2
    except Exception as exc:  # connection problems: one clear line, not a traceback
        from elasticsearch import ConnectionError as ESConnectionError

        if isinstance(exc, ESConnectionError):
            print(f"osloscope setup: Elasticsearch not reachable at {settings.elasticsearch.url} "
                  f"(is `osloscope services up` running?): {exc}", file=sys.stderr)
            return 2
        raise
    return 0


def _kibana_options(args) -> dict:
    import os

    api_key = args.kibana_api_key or os.environ.get("KIBANA_API_KEY") or None
    password = None
    if args.kibana_user:
        password = os.environ.get("KIBANA_PASSWORD")
        if password is None and sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"Kibana password for {args.kibana_user}: ")
    verify: bool | str = False if args.kibana_insecure else (args.kibana_ca or True)
    return {"space": args.kibana_space, "api_key": api_key, "username": args.kibana_user,
            "password": password, "verify": verify, "wait": args.kibana_wait}
