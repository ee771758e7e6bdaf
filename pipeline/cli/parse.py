"""``osloscope parse``: arguments, exit codes and printing; the parsing is in pipeline/parsing/
(driven over files by pipeline/local/analyze.py)."""
from __future__ import annotations

import sys

from pipeline.cli.options import add_input_args, inputs, require_tz


def register(subparsers) -> None:
    p = subparsers.add_parser("parse", help="print parsed records as ECS-shaped JSON (oslo.log in, JSON out)",
                              description="Parse oslo.log files and print one JSON document per record "
                                          "(tracebacks and continuation lines folded in).",
                              epilog="Exit codes: 0 done; 2 usage or input errors (unreadable paths are "
                                     "named); 130 interrupted.")
    add_input_args(p)
    p.add_argument("--format", choices=("jsonl",), default="jsonl", help="output format (jsonl)")
    p.set_defaults(func=cmd_parse)


def cmd_parse(args) -> int:
    from pipeline import codec
    from pipeline.local.analyze import Stats, file_events
    from pipeline.sources.files import warn

    require_tz(args.tz)
    files = inputs(args)
    out = sys.stdout.buffer
    stats = Stats()
    for lf in files:
        for ev in file_events(lf, args.tz, stats, on_warning=warn):
            out.write(codec.event_json(ev) + b"\n")
    out.flush()
    return 0
