"""``osloscope account``: arguments, exit codes and printing; the ledger is
pipeline/operations/accounting.py."""
from __future__ import annotations

import argparse
import sys
import time

from pipeline.cli.options import add_config_option, load_settings

DESCRIPTION = """\
Where every input line went, per source file: into an indexed event (folded into a record
with its traceback and continuation lines), into a dead letter (with the reason), or
nowhere yet. Each line counts once, with its bytes, in the record that took its first byte:
events carry log.lines and log.bytes, dead letters lines and bytes.

Without PATH: the streaming pipeline of the settings. SENT is the raw topic (a line, or a
piece of a line over 1 MB; a line shipped twice counts once), INDEXED the events in
Elasticsearch, DEAD the dead-letter topic (a letter written twice counts once); MISSING is
SENT - INDEXED - DEAD. The worker group's lag on the raw and events topics says whether the
pipeline has drained. A worker also holds lines back for a while after it read them: in
open records (worker.idle_flush) and until the other files of a partition caught up
(worker.source_idle_timeout); --wait gives it that time.

With PATHs: embedded mode, the files read and parsed as `osloscope analyze` does (READ,
RECORDS, DEAD as analyze's dead-letter file would hold them)."""

EPILOG = """\
Exit codes: 0 every line accounted for; 1 lines missing although the worker has drained
(lost: the table names the files); 3 lines missing while the worker has not drained yet (run
again, or use --wait); 2 usage errors, invalid settings, Kafka or Elasticsearch unreachable.

Examples:
  osloscope account                                  the whole pipeline, every file
  osloscope account --wait 120 --problems            until drained and accounted, or 2 minutes
  osloscope account --format json | jq '.files[] | select(.missing.lines != 0)'
  osloscope account /var/log/nova --host compute-7   embedded: local files"""


def register(subparsers) -> None:
    p = subparsers.add_parser("account", help="where every input line went, per file (sent, "
                                              "indexed, dead-lettered, missing)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="local log files or directories (as for analyze): account for them in "
                        "embedded mode instead of the pipeline")
    p.add_argument("--host", help="with PATHs: host name for all files (as for analyze); without: "
                                  "show only this host's files")
    p.add_argument("--tz", default="UTC", help="with PATHs: timezone of the logs (as for analyze)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or one JSON document: every file with sent, indexed, "
                        "dead_lettered (with reasons) and missing lines and bytes, the totals, the "
                        "worker group's lag and the status")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="pipeline: while lines are missing, look again every few seconds for up to "
                        "SECONDS (default 0: look once)")
    p.add_argument("--problems", action="store_true",
                   help="table: list only the files with missing or dead-lettered lines (the totals "
                        "still cover every file)")
    add_config_option(p)
    p.set_defaults(func=cmd_account)


def cmd_account(args) -> int:
    if args.wait < 0:
        print("osloscope account: error: --wait must be >= 0", file=sys.stderr)
        return 2
    if args.paths:
        ledger = _files(args)
    else:
        ledger = _pipeline(args)
        if ledger is None:
            return 2
    if args.host and not args.paths:
        ledger.files = {k: a for k, a in ledger.files.items() if a.host == args.host}
    out = sys.stdout
    if args.format == "json":
        from pipeline import codec
        sys.stdout.buffer.write(codec.dumps(ledger.to_doc()) + b"\n")
    else:
        out.write(table(ledger, problems_only=args.problems))
    out.flush()
    status = ledger.status()
    return {"accounted": 0, "missing": 1, "in_flight": 3}[status]


def _files(args):
    from pipeline.cli.options import inputs, require_tz
    from pipeline.operations.accounting import files_ledger
    from pipeline.sources.files import warn

    require_tz(args.tz)
    return files_ledger(inputs(args), args.tz, on_warning=warn)


def _pipeline(args):
    from pipeline.operations import accounting

    settings = load_settings(args.config, "account")
    if settings is None:
        return None
    problem = _kafka_problem(settings)
    if problem:
        print(f"osloscope account: error: Kafka {settings.kafka.bootstrap}: {problem}", file=sys.stderr)
        return None

    def progress(message: str) -> None:
        print(f"osloscope account: {message}", file=sys.stderr)

    from elasticsearch import ConnectionError as ESConnectionError
    from pipeline.streaming.kafka_clients import KafkaError

    deadline = time.monotonic() + args.wait
    try:
        sent = accounting.sent_ledger(settings, progress)      # the raw topic, read once
        while True:
            ledger = accounting.pipeline_ledger(settings, progress=progress, sent=sent)
            if ledger.status() == "accounted" or time.monotonic() >= deadline:
                return ledger
            progress(f"{sum(a.missing_lines for a in ledger.missing_files())} line(s) missing "
                     f"({'drained' if ledger.drained else 'worker not drained'}); looking again")
            time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
    except ESConnectionError as exc:
        print(f"osloscope account: error: Elasticsearch not reachable at {settings.elasticsearch.url}: "
              f"{exc}", file=sys.stderr)
    except KafkaError as exc:
        print(f"osloscope account: error: Kafka {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
    return None


def _kafka_problem(settings) -> str | None:
    """Why Kafka cannot be used with these settings (authentication, TLS, unreachable), or None."""
    try:
        from pipeline.streaming.kafka_clients import diagnose
    except ImportError:                      # pragma: no cover - older kafka_clients
        return None
    problem = diagnose(settings.kafka)
    return str(problem) if problem is not None else None


def _n(value: int) -> str:
    return f"{value:,}"


def _missing(lines: int, nbytes: int) -> str:
    if lines == 0 and nbytes == 0:
        return "0"
    if lines < 0 or (lines == 0 and nbytes < 0):
        return f"+{_n(-lines)} ({_n(-nbytes)} B) over"
    return f"{_n(lines)} ({_n(nbytes)} B)"


def _reasons(acc, n: int = 2) -> str:
    return "; ".join(f"{kind} x{count}" for kind, count in acc.reasons.most_common(n))


def table(ledger, *, problems_only: bool = False) -> str:
    """The per-file table, the totals and what the status means."""
    pipeline = ledger.mode == "pipeline"
    head = ("HOST", "FILE", "SENT" if pipeline else "READ", "BYTES",
            "INDEXED" if pipeline else "IN RECORDS", "DEAD", "MISSING", "DEAD-LETTER REASONS")
    rows = []
    for acc in ledger.rows():
        if problems_only and not (acc.missing_lines or acc.missing_bytes or acc.dead_letters):
            continue
        rows.append((acc.host or "-", acc.path or "-", _n(acc.sent_lines), _n(acc.sent_bytes),
                     f"{_n(acc.event_lines)} in {_n(acc.events)}",
                     f"{_n(acc.dead_lines)} in {_n(acc.dead_letters)}",
                     _missing(acc.missing_lines, acc.missing_bytes), _reasons(acc)))
    t = ledger.totals()
    rows.append(("TOTAL", f"{len(ledger.files)} file(s)", _n(t.sent_lines), _n(t.sent_bytes),
                 f"{_n(t.event_lines)} in {_n(t.events)}", f"{_n(t.dead_lines)} in {_n(t.dead_letters)}",
                 _missing(t.missing_lines, t.missing_bytes), _reasons(t, 3)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    lines = [ln.rstrip() for ln in lines]
    lines.append("")
    lines.append("lines (in N records/letters); MISSING: lines (bytes) in no event and no dead letter")
    if t.resent_lines or t.redelivered_letters:
        lines.append(f"counted once: {_n(t.resent_lines)} line(s) shipped again, "
                     f"{_n(t.redelivered_letters)} dead letter(s) written again")
    if t.uncounted_events:
        lines.append(f"{_n(t.uncounted_events)} indexed event(s) carry no line counts (indexed by "
                     "an osloscope older than log.lines): their lines show as missing")
    if ledger.lag is not None:
        behind = {tp: n for tp, n in ledger.lag.items() if n}
        lines.append("worker: drained (every raw and events record committed)" if not behind else
                     f"worker: NOT drained, {_n(sum(behind.values()))} record(s) behind on "
                     + ", ".join(f"{tp} ({_n(n)})" for tp, n in sorted(behind.items())))
    lines += [f"note: {n}" for n in ledger.notes]
    status = ledger.status()
    missing = ledger.missing_files()
    if status == "accounted":
        lines.append("every line accounted for" + (
            f" ({len(ledger.over_files())} file(s) with more than was sent: see notes)"
            if ledger.over_files() else ""))
    elif status == "in_flight":
        lines.append(f"{_n(sum(a.missing_lines for a in missing))} line(s) of {len(missing)} file(s) "
                     "not accounted for yet: the worker has not drained (run again, or --wait)")
    else:
        lines.append(f"LOST: {_n(sum(a.missing_lines for a in missing))} line(s) "
                     f"({_n(sum(a.missing_bytes for a in missing))} bytes) of {len(missing)} file(s) "
                     "are in no event and no dead letter, and the worker has drained"
                     + ("" if not pipeline else " (if it holds them in open records or waits for "
                        "other files, --wait gives it time)"))
    return "\n".join(lines) + "\n"
