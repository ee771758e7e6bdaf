"""``osloscope worker``: arguments and exit codes; the faust app is in pipeline/streaming/worker.py."""
from __future__ import annotations

import argparse

from pipeline.cli.options import add_config_option, add_loglevel_option, load_settings

DESCRIPTION = """\
Consume oslo.log lines from the raw Kafka topic, parse and fold them exactly as `osloscope
analyze` does, run the detectors, publish events (keyed by request id), incidents and dead
letters to Kafka and index events and incidents into Elasticsearch. Offsets are committed only
after Kafka and Elasticsearch acknowledged the outputs, and after each stage's state (parsers,
detectors, events held for their turn) was saved to its compacted changelog topic
(<app_id>.state.parse / .correlate): a restart, or another worker taking the partitions over,
goes on from there. worker.state_dir holds only faust's own files; while it cannot be created (a
full disk) the worker says so and waits. Stop with Ctrl-C or SIGTERM."""

EPILOG = """\
Exit codes: 0 stopped by Ctrl-C or SIGTERM; 2 usage errors, invalid settings, or Kafka rejected
the settings (authentication, TLS, security protocol: named at start); 1 no Kafka broker
reachable within 60 s, or any other failure, with a traceback."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "worker", help="run the streaming worker: raw topic -> parse -> detect -> Elasticsearch",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    add_loglevel_option(p)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    settings = load_settings(args.config, "worker")
    if settings is None:
        return 2
    from pipeline.streaming.worker import run          # loads faust

    return run(settings, loglevel=args.loglevel)
