"""The ``osloscope`` command line: ``main`` and the top-level parser.

Each command is a module of this package (named after it) holding its arguments, exit codes
and printing, with ``register(subparsers)``; the work is done elsewhere in ``pipeline``. A
command module imports that work, and its libraries, only inside its command function, so
``analyze`` and ``parse`` never load faust, kafka or elasticsearch.
"""
from __future__ import annotations

import argparse
import errno
import sys
import textwrap
from typing import Sequence

from pipeline.cli import (account, analyze, config, incidents, notify, parse, services, setup, ship,
                          signatures, silence, trace, watch, worker)

# the commands, in the order `osloscope --help` lists them
COMMANDS = (analyze, parse, services, config, setup, ship, worker, watch, incidents, account, notify,
            silence, trace, signatures)

INTRO = ("Incident detection for OpenStack oslo.log files: parses every oslo.log era, folds "
         "tracebacks into their records and runs the detectors below -- on local files (embedded) "
         "or streaming through Kafka into Elasticsearch.")

EPILOG = """\
Embedded mode (no Kafka, no Elasticsearch):
  osloscope analyze /var/log/nova --host compute-1      one machine's logs
  osloscope analyze sosreports/                           <root>/<host>/.../<service>.log
  osloscope analyze 'sosreports/*/var/log/nova/*.log'     a glob: hosts below sosreports/
  osloscope parse nova-compute.log --format jsonl         oslo.log in, ECS JSON out

Streaming (Kafka + Elasticsearch; `osloscope services up` runs both locally):
  osloscope setup                                         topics and index templates
  osloscope worker                                        raw topic -> detect -> Elasticsearch
  osloscope ship /var/log/nova /var/log/cinder            tail logs into Kafka
  osloscope incidents --status open                       list incidents from Elasticsearch
  osloscope account --wait 60                             every line sent: indexed, dead-lettered?
  osloscope watch /var/log/nova --host compute-1          live detection on local files
  osloscope notify                                        webhooks (JSON, Alertmanager, Slack)
  osloscope silence add --matcher host=compute-2 --duration 2h --comment maintenance
  osloscope trace req-... [--logs PATH...]                one request across services
  osloscope signatures list | signatures test PATH...     the signature library

Exit codes: each command's --help states its own; analyze: 0 no incidents, 1 incidents
found, 2 usage or input errors. A damaged file (truncated .gz) or an unreadable subdirectory
is a warning on stderr: the lines before the damage and the other files are analysed as usual.
"""


def description(width: int = 92) -> str:
    """The intro and every detector of ``detectors.registry``: its incident type and what it fires on."""
    from detectors.registry import ENTRIES

    name = max(len(e.type) for e in ENTRIES)
    lines = [textwrap.fill(INTRO, width), "", "Detectors (incident type: what it fires on):"]
    for e in ENTRIES:
        if not e.fires_on:          # the fleet half of a type listed already
            continue
        lines.append(textwrap.fill(e.fires_on, width, initial_indent=f"  {e.type:<{name}}  ",
                                   subsequent_indent=" " * (name + 4)))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="osloscope", description=description(), epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", help="what to do (COMMAND --help: "
                                                                     "its options and exit codes)")
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("osloscope: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a full disk (or quota) under an output file: say which, not a traceback
        where = exc.filename or "an output file"
        print(f"osloscope {args.command}: cannot write {where}: {exc.strerror} "
              f"({errno.errorcode[exc.errno]}); the output written before this point is incomplete",
              file=sys.stderr)
        return 2
