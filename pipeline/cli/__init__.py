"""The ``osloscope`` command line.

Streaming commands import their libraries lazily, so the embedded commands
(``parse``, ``analyze``) never load faust, kafka or elasticsearch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

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
  osloscope watch /var/log/nova --host compute-1          live detection on local files
  osloscope notify                                        webhooks (JSON, Alertmanager, Slack)
  osloscope silence add --matcher host=compute-2 --duration 2h --comment maintenance
  osloscope trace req-... [--logs PATH...]                one request across services
  osloscope rules list | rules test PATH...               the known-issue signature library

Exit codes: 0 no incidents, 1 incidents found, 2 usage or input errors. A damaged
file (truncated .gz) or an unreadable subdirectory is a warning on stderr: the
lines before the damage and the other files are analysed as usual.
"""


# modules that add a subcommand with register(subparsers); their heavy imports are lazy
STREAMING_COMMANDS = ("pipeline.settings", "pipeline.operations.setup", "pipeline.streaming.ship",
                      "pipeline.streaming.worker", "pipeline.local.watch", "pipeline.sinks.incidents",
                      "pipeline.cli.notify", "pipeline.cli.silence", "pipeline.local.trace",
                      "pipeline.signatures")


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="log files (plain, .gz, rotated .1), directories laid out as "
                        "<root>/<host>/.../<service>.log, or quoted globs; a glob's directory "
                        "before its first wildcard is the <root> ('sos/*/nova/*.log': the host "
                        "is the directory below sos)")
    p.add_argument("--host", help="host name for all files (e.g. for one machine's /var/log); "
                                  "default: the first directory below each directory PATH or "
                                  "below the literal directory of a glob PATH")
    p.add_argument("--tz", default="UTC",
                   help="timezone the logs were written in (oslo.log writes local time without a "
                        "zone): an IANA name like Europe/Berlin or an offset like +08:00 (default UTC)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="osloscope",
        description="Incident detection for OpenStack oslo.log files: parses every oslo.log era, "
                    "folds tracebacks into their records, and detects retry exhaustion, "
                    "authentication failures and full disks -- on local files (embedded) or "
                    "streaming through Kafka into Elasticsearch.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("analyze", help="detect incidents in local log files (embedded mode)",
                       description="Parse local oslo.log files, merge all records in timestamp "
                                   "order and run the detectors; print the incidents.")
    _add_input_args(p)
    p.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table (default): readable summary with cause and fix; jsonl: one incident "
                        "document per line, as indexed into Elasticsearch")
    p.add_argument("--since", metavar="T", help="ignore records before T (ISO 8601; no zone = UTC)")
    p.add_argument("--until", metavar="T", help="ignore records after T (ISO 8601; no zone = UTC)")
    p.add_argument("--dead-letter", metavar="FILE", default="osloscope-deadletter.jsonl",
                   help="where lines that fit no record go, one JSON object each with the reason "
                        "(default ./osloscope-deadletter.jsonl, created only when needed; '-' "
                        "to discard)")
    p.add_argument("--auth-threshold", type=int, default=10, metavar="N",
                   help="rejected authentications per source/user that make a burst (default 10)")
    p.add_argument("--auth-window", type=float, default=300.0, metavar="SECONDS",
                   help="sliding window for --auth-threshold (default 300)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--requests", action="store_true",
                   help="list request summaries instead of incidents: one per request id (session "
                        "window), with the services chain, the API call, the outcome and the "
                        "root-cause candidate (exit 1 when a request ended in error)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="parse the files in N processes (default: one per CPU core; 1: in this "
                        "process). The results do not depend on N.")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("parse", help="print parsed records as ECS-shaped JSON (oslo.log in, JSON out)",
                       description="Parse oslo.log files and print one JSON document per record "
                                   "(tracebacks and continuation lines folded in).")
    _add_input_args(p)
    p.add_argument("--format", choices=("jsonl",), default="jsonl", help="output format (jsonl)")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("services", help="run local Kafka and Elasticsearch (Java processes, no Docker)",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_services)
    for module in STREAMING_COMMANDS:
        importlib.import_module(module).register(sub)
    return ap


def _discover(args):
    from pipeline.sources.files import PathError, discover, warn
    try:
        return discover(args.paths, host=args.host, on_warning=warn)
    except PathError as exc:
        print(f"osloscope: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _warner(bar):
    """Warnings on stderr that do not land in the middle of the progress bar."""
    from pipeline.sources.files import warn

    def on_warning(message: str) -> None:
        if bar.enabled:
            bar.stream.write("\r\x1b[K")
        warn(message)
    return on_warning


def _check_tz(name: str) -> None:
    from pipeline.parsing.timefmt import tz_of
    try:
        tz_of(name)
    except Exception:
        print(f"osloscope: error: --tz {name!r} is not a timezone (use e.g. UTC, Europe/Berlin, +08:00)",
              file=sys.stderr)
        raise SystemExit(2) from None


def _time_arg(name: str, value: str | None) -> float | None:
    from pipeline.parsing.timefmt import iso_to_epoch
    if value is None:
        return None
    try:
        return iso_to_epoch(value)
    except ValueError:
        print(f"osloscope: error: {name} {value!r} is not an ISO 8601 time "
              "(e.g. 2017-06-06T09:30:00 or '2017-06-06 09:30')", file=sys.stderr)
        raise SystemExit(2) from None


def _jobs(args) -> int:
    from pipeline.local.analyze import default_jobs
    if args.jobs is None:
        return default_jobs()
    if args.jobs < 1:
        print("osloscope: error: --jobs must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    return args.jobs


def cmd_analyze(args) -> int:
    from detectors import registry
    from detectors.auth_failures import AuthFailuresConfig

    from pipeline import codec
    from pipeline.cli.progress import Progress
    from pipeline.local.analyze import analyze
    from pipeline.signatures import bundled
    from pipeline.sinks import terminal as render

    _check_tz(args.tz)
    since, until = _time_arg("--since", args.since), _time_arg("--until", args.until)
    if args.auth_threshold < 1 or args.auth_window <= 0:
        print("osloscope: error: --auth-threshold must be >= 1 and --auth-window > 0", file=sys.stderr)
        return 2
    files = _discover(args)
    if args.requests:
        return _analyze_requests(args, files, since, until)
    bar = Progress(sum(f.size for f in files), "analyzing", enabled=args.progress)
    dead = _DeadLetters(args.dead_letter)
    config = registry.DetectorConfig(
        auth_failures=AuthFailuresConfig(threshold=args.auth_threshold, window=args.auth_window))
    engine = registry.engine("all", config, bundled())
    try:
        result = analyze(files, tz=args.tz, since=since, until=until, engine=engine,
                         on_progress=bar.advance, on_unparsed=dead.write, on_warning=_warner(bar),
                         jobs=_jobs(args))
    finally:
        bar.close()
        dead.close()
    out = sys.stdout.buffer
    if args.format == "jsonl":
        for inc in result.incidents:
            out.write(codec.dumps(inc) + b"\n")
    else:
        out.write(render.table(result.incidents).encode())
    out.flush()
    st = result.stats
    note = f"; {st.unparsed} unparsed line(s) written to {dead.path}" if dead.count else (
        f"; {st.unparsed} unparsed line(s) discarded" if st.unparsed else "")
    print(f"osloscope: {st.files} file(s), {st.lines} lines, {st.events} records, "
          f"{len(result.incidents)} incident(s){note}", file=sys.stderr)
    return 1 if result.incidents else 0


def _analyze_requests(args, files, since, until) -> int:
    from pipeline import codec
    from pipeline.local import requests
    from pipeline.local.analyze import Stats
    from pipeline.cli.progress import Progress

    bar = Progress(sum(f.size for f in files), "analyzing", enabled=args.progress)
    dead = _DeadLetters(args.dead_letter)
    stats = Stats()
    out = sys.stdout.buffer
    counts = {"requests": 0, "errors": 0}

    def write(doc: dict) -> None:         # jsonl: each summary as soon as its place is known
        counts["requests"] += 1
        counts["errors"] += doc["outcome"] == "error"
        out.write(codec.dumps(doc) + b"\n")

    try:
        docs = requests.summaries(files, args.tz, since=since, until=until, stats=stats,
                                  on_progress=bar.advance, on_unparsed=dead.write, jobs=_jobs(args),
                                  on_summary=write if args.format == "jsonl" else None)
    finally:
        bar.close()
        dead.close()
    if args.format != "jsonl":
        counts = {"requests": len(docs), "errors": sum(1 for d in docs if d["outcome"] == "error")}
        out.write(requests.table(docs).encode())
    out.flush()
    print(f"osloscope: {stats.files} file(s), {stats.lines} lines, {stats.events} records, "
          f"{counts['requests']} request(s), {counts['errors']} ended in error", file=sys.stderr)
    return 1 if counts["errors"] else 0


class _DeadLetters:
    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._fh = None

    def write(self, ev) -> None:
        from pipeline import codec
        if self.path == "-":
            return
        if self._fh is None:
            self._fh = open(self.path, "ab")
        self._fh.write(codec.dumps(codec.dead_letter(ev)) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def cmd_parse(args) -> int:
    from pipeline import codec
    from pipeline.local.analyze import Stats, file_events
    from pipeline.sources.files import warn

    _check_tz(args.tz)
    files = _discover(args)
    out = sys.stdout.buffer
    stats = Stats()
    for lf in files:
        for ev in file_events(lf, args.tz, stats, on_warning=warn):
            out.write(codec.event_json(ev) + b"\n")
    out.flush()
    return 0


def cmd_services(args) -> int:
    from pipeline.operations import services
    return services.main(args.args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["services"]:          # its own argparse, including --help
        from pipeline.operations import services
        return services.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("osloscope: interrupted", file=sys.stderr)
        return 130


