"""``osloscope analyze``: arguments, exit codes and printing; the work is in pipeline/local/
(analyze.py for incidents, requests.py for ``--requests``)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline.cli.options import add_config_option, add_input_args, inputs, load_settings, require_tz

DESCRIPTION = """\
Parse local oslo.log files, merge all records in timestamp order and run the detectors; print
the incidents (or, with --requests, one summary per request)."""

EPILOG = """\
Exit codes: 0 no incidents (with --requests: no request ended in error); 1 incidents found
(with --requests: a request ended in error); 2 usage or input errors (unreadable paths are
named); 130 interrupted. A damaged file (truncated .gz) or an unreadable subdirectory is a
warning on stderr: the lines before the damage and the other files are analysed as usual."""


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="detect incidents in local log files (embedded mode)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_args(p)
    p.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table (default): readable summary with cause and fix; jsonl: one incident "
                        "document per line, as indexed into Elasticsearch")
    p.add_argument("--since", metavar="T", help="ignore records before T (ISO 8601; no zone = UTC)")
    p.add_argument("--until", metavar="T", help="ignore records after T (ISO 8601; no zone = UTC)")
    p.add_argument("--dead-letter", metavar="FILE", default="osloscope-deadletter.jsonl",
                   help="where lines that fit no record go, one JSON object each with the reason "
                        "(default ./osloscope-deadletter.jsonl, created only when needed; '-' "
                        "to discard)")
    p.add_argument("--auth-threshold", type=int, default=None, metavar="N",
                   help="rejected authentications per source/user that make a burst (default: "
                        "[detectors] auth_threshold of the settings, 10)")
    p.add_argument("--auth-window", type=float, default=None, metavar="SECONDS",
                   help="sliding window for --auth-threshold (default: [detectors] auth_window, 300)")
    add_config_option(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--requests", action="store_true",
                   help="list request summaries instead of incidents: one per request id (session "
                        "window), with the services chain, the API call, the outcome and the "
                        "root-cause candidate (exit 1 when a request ended in error)")
    p.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report to FILE (no script, no network): "
                        "a timeline of the incidents per host, each incident with its evidence, "
                        "cause and fix, and a waterfall of each request that ended in error (at "
                        "most 200 requests and 200 incidents are embedded; the page says what it "
                        "left out). The table or jsonl output is printed as usual")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="parse the files in N processes (default: one per CPU core; 1: in this "
                        "process). The results do not depend on N.")
    p.set_defaults(func=cmd_analyze)


def _warner(bar):
    """Warnings on stderr that do not land in the middle of the progress bar."""
    from pipeline.sources.files import warn

    def on_warning(message: str) -> None:
        if bar.enabled:
            bar.stream.write("\r\x1b[K")
        warn(message)
    return on_warning


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

    from pipeline import codec
    from pipeline.cli.progress import Progress
    from pipeline.local.analyze import analyze
    from pipeline.signatures import bundled
    from pipeline.sinks import terminal as render
    from pipeline.sinks.deadletter_file import DeadLetterFile

    require_tz(args.tz)
    since, until = _time_arg("--since", args.since), _time_arg("--until", args.until)
    if (args.auth_threshold is not None and args.auth_threshold < 1) or \
            (args.auth_window is not None and args.auth_window <= 0):
        print("osloscope: error: --auth-threshold must be >= 1 and --auth-window > 0", file=sys.stderr)
        return 2
    settings = load_settings(args.config, "analyze")
    if settings is None:
        return 2
    config = settings.detectors.config()
    auth = config.auth_failures
    if args.auth_threshold is not None:
        auth = dataclasses.replace(auth, threshold=args.auth_threshold)
    if args.auth_window is not None:
        auth = dataclasses.replace(auth, window=args.auth_window)
    config = dataclasses.replace(config, auth_failures=auth)
    if args.html is not None:
        from pipeline.sinks import html_report
        if args.requests:
            print("osloscope: error: --html goes with the incident analysis; drop --requests "
                  "(the report shows the requests that ended in error)", file=sys.stderr)
            return 2
        problem = html_report.problem_with(args.html)
        if problem:
            print(f"osloscope: error: {problem}", file=sys.stderr)
            return 2
    files = inputs(args)
    if args.requests:
        return _analyze_requests(args, files, since, until, config)
    bar = Progress(sum(f.size for f in files), "analyzing", enabled=args.progress)
    dead = DeadLetterFile(args.dead_letter)
    engine = registry.engine("all", config, bundled())
    report = None
    if args.html is not None:
        report = html_report.Collector()
        engine = report.wrap(engine)
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
    note = f"; {st.unparsed} unparsed line(s) written to {dead.path}" if dead.written else (
        f"; {st.unparsed} unparsed line(s) discarded" if st.unparsed else "")
    if report is not None:
        try:
            html_report.write(args.html, html_report.render(result.incidents, report, stats=st,
                                                            sources=args.paths))
        except OSError as exc:
            print(f"osloscope: error: cannot write --html {args.html!r}: {exc}", file=sys.stderr)
            return 2
        note += f"; report written to {args.html}"
    lost = st.lines - st.record_lines - st.dead_lines
    print(f"osloscope: {st.files} file(s), {st.lines} lines ({st.record_lines} in "
          f"{st.events - st.unparsed} records, {st.dead_lines} in {st.unparsed} dead letters"
          f"{f', {lost} UNACCOUNTED' if lost else ''}), "
          f"{len(result.incidents)} incident(s){note}", file=sys.stderr)
    return 1 if result.incidents else 0


def _analyze_requests(args, files, since, until, config) -> int:
    from pipeline import codec
    from pipeline.cli.progress import Progress
    from pipeline.local import requests
    from pipeline.local.analyze import Stats
    from pipeline.sinks.deadletter_file import DeadLetterFile

    bar = Progress(sum(f.size for f in files), "analyzing", enabled=args.progress)
    dead = DeadLetterFile(args.dead_letter)
    stats = Stats()
    out = sys.stdout.buffer
    counts = {"requests": 0, "errors": 0}

    def write(doc: dict) -> None:         # jsonl: each summary as soon as its place is known
        counts["requests"] += 1
        counts["errors"] += doc["outcome"] == "error"
        out.write(codec.dumps(doc) + b"\n")

    try:
        docs = requests.summaries(files, args.tz, since=since, until=until, stats=stats,
                                  gap=config.request_window_gap, max_length=config.request_window_max,
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
