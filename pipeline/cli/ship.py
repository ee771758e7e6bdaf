"""``osloscope ship``: arguments, exit codes and printing; the shipper is in
pipeline/streaming/ship.py."""
from __future__ import annotations

import argparse
import sys

from pipeline.cli.options import add_config_option, load_settings

DESCRIPTION = """\
Tail oslo.log files into Kafka (topic topics.raw), one record per line:
key host|path, value the raw line, headers host, service, path, offset,
inode, shipper. Follows appends, rotation by rename and copytruncate; picks
up new files; reads .gz and rotated archives once (with --from-start).

Delivery is at least once with no loss: a file's checkpoint
(shipper.checkpoint_dir) moves only past lines Kafka acknowledged. After
SIGINT/SIGTERM nothing is sent twice; after a crash at most the last second
of acknowledged lines plus those in flight are sent again.
"""

EPILOG = """\
examples:
  osloscope ship /var/log/nova /var/log/cinder          follow from now on
  osloscope ship /var/log/nova --from-start             ship what is there, then follow
  osloscope ship 'collected/*/nova/*.log*' --once --layout-hosts

While no broker answers, the shipper waits and retries (logging "broker ...
unreachable"). A failure that retrying cannot cure is named and ends it at
once: "authentication failed" (SASL user, password or mechanism), "TLS
failure" (certificate not trusted, not a TLS listener) or "wrong security
protocol" (kafka.security_protocol does not match the listener).

Exit codes: 0 done (--once) or stopped by SIGINT/SIGTERM; 1 Kafka rejected a
record for good; 2 usage errors, bad PATH, settings or checkpoint directory, or
a Kafka configuration, authentication, TLS or security-protocol error.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("ship", help="tail log files into Kafka (one record per line)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files, directories (walked for *.log*, *.txt, *.json*, messages) or globs; "
                        "re-expanded every few seconds so new files are picked up")
    p.add_argument("--from-start", action="store_true",
                   help="files without a checkpoint are read from their first byte, rotated archives "
                        "(.1, .gz) included (default: from their end, i.e. only new lines)")
    p.add_argument("--once", action="store_true",
                   help="ship what the files hold now (from the checkpoint, else from the start), wait "
                        "for Kafka to acknowledge everything, exit 0")
    p.add_argument("--host",
                   help="host name for every file (default: shipper.host, else this machine's name)")
    p.add_argument("--layout-hosts", action="store_true",
                   help="take the host from the first directory below each directory PATH, as "
                        "'osloscope analyze' does (for collected logs laid out <root>/<host>/...)")
    p.add_argument("--stats-interval", type=float, default=10.0, metavar="SECONDS",
                   help="progress line on stderr every SECONDS (default 10)")
    add_config_option(p)
    p.set_defaults(func=cmd_ship)


def cmd_ship(args) -> int:
    import logging

    from pipeline.operations.graceful import stop_on_signals
    from pipeline.sources.files import PathError
    from pipeline.sources.tail import CheckpointError, check_paths
    from pipeline.streaming.ship import ship

    settings = load_settings(args.config, "ship")
    if settings is None:
        return 2
    try:
        check_paths(args.paths)
    except PathError as exc:
        print(f"osloscope: error: {exc}", file=sys.stderr)
        return 2
    from pipeline.streaming.kafka_clients import KafkaError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)   # we say it once, in our words

    def stopping(name: str) -> None:
        print(f"osloscope ship: {name}: stopping (flushing and writing checkpoints)", file=sys.stderr,
              flush=True)

    try:
        with stop_on_signals(stopping) as stop:
            result = ship(args.paths, settings, from_start=args.from_start, once=args.once, host=args.host,
                          layout_hosts=args.layout_hosts, stop_event=stop, stats_interval=args.stats_interval)
    except (CheckpointError, PathError) as exc:
        print(f"osloscope: error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:             # authentication, TLS, protocol: retrying will not help
        print(f"osloscope ship: error: Kafka {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
    return 1 if result["error"] else 0
