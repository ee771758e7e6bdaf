"""``osloscope signatures list|test`` (alias ``rules``): arguments, exit codes and printing;
loading, validating and matching the signature library is in pipeline/signatures.py."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.cli.options import bad_tz

DESCRIPTION = """\
The signature library (detectors/signatures/<id>.toml, one signature each), which the
known_issue detector matches: list it, or run only the library over log files and print each
matching record. `rules` is the old name of this command."""

LIST_EXIT = "Exit codes: 0 listed; 2 usage errors or an invalid library (every problem is printed)."
TEST_EXIT = ("Exit codes: 0 nothing matched; 1 something matched; 2 usage errors, an invalid "
             "library, an unknown --signature, a bad PATH or --tz.")
EPILOG = """\
Exit codes of list: 0 listed; 2 usage errors or an invalid library (every problem is printed).
Exit codes of test: 0 nothing matched; 1 something matched; 2 usage errors, an invalid library,
an unknown --signature, a bad PATH or --tz."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "signatures", aliases=["rules"], help="list the signatures or try them on log files",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="signatures_action", metavar="ACTION", help="list or test")
    sub.required = True
    lp = sub.add_parser("list", help="print the signatures and how many each service has",
                        description="Print the signatures (id, severity, seed, services, title), "
                                    "then the number of signatures per service (those for any "
                                    "service under 'any') and the total.",
                        epilog=LIST_EXIT)
    lp.add_argument("--format", choices=("table", "json"), default="table",
                    help="table (default) or json (the loaded signatures, as a JSON array)")
    _add_library_option(lp)
    lp.set_defaults(func=_cmd_list)
    tp = sub.add_parser("test", help="run only the signatures over log files and print each match",
                        description="Parse the files as `osloscope analyze` does and print every record "
                                    "a signature matches, then the number of matches per rule "
                                    "(known_issue.<id>, the rule of the incidents it makes). A match "
                                    "is one record: signatures with persist_seconds (the AMQP "
                                    "reconnect loop) open an incident in `osloscope analyze` only when "
                                    "the condition lasts.",
                        epilog=TEST_EXIT)
    tp.add_argument("paths", nargs="+", metavar="PATH", help="log files, directories or globs")
    tp.add_argument("--signature", "--rule", dest="signature", action="append", metavar="ID",
                    help="only this signature (id or known_issue.<id>; repeatable)")
    tp.add_argument("--host", help="host name for all files")
    tp.add_argument("--tz", default="UTC", help="timezone the logs were written in (default UTC)")
    _add_library_option(tp)
    tp.set_defaults(func=_cmd_test)


def _add_library_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signatures", action="append", metavar="DIR",
                   help="load the signatures from DIR instead of the bundled library (repeatable)")


def _error(message: str) -> int:
    print(f"osloscope signatures: error: {message}", file=sys.stderr)
    return 2


def _load(dirs) -> list[dict] | None:
    from pipeline.signatures import SignatureError, load_signatures

    try:
        return load_signatures(dirs)
    except SignatureError as exc:
        print(f"osloscope signatures: {exc}", file=sys.stderr)
        return None


def _cmd_list(args) -> int:
    from pipeline.signatures import count_by_service

    sigs = _load(args.signatures)
    if sigs is None:
        return 2
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps(sigs, indent=2, ensure_ascii=False) + "\n")
        return 0
    rows = [("ID", "SEVERITY", "SEED", "APPLIES TO", "TITLE")]
    for s in sigs:
        scope = ",".join(s.get("services") or []) or ",".join(s.get("loggers") or []) or "any"
        rows.append((s["id"], s["severity"], s.get("seed", "-"), scope[:30], s["title"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] + "\n")
    counts = count_by_service(sigs)
    services = sorted(counts, key=lambda name: (name == "any", name))
    width = max(len("SERVICE"), *map(len, services))
    out.write(f"\n{'SERVICE':<{width}}  SIGNATURES\n")
    for name in services:
        out.write(f"{name:<{width}}  {counts[name]}\n")
    out.write(f"{len(sigs)} signature(s)\n")
    return 0


def _cmd_test(args) -> int:
    from pipeline.local.analyze import Stats
    from pipeline.signatures import match_files
    from pipeline.sources.files import PathError, discover

    sigs = _load(args.signatures)
    if sigs is None:
        return 2
    if args.signature:
        wanted = {r.removeprefix("known_issue.") for r in args.signature}
        unknown = sorted(wanted - {s["id"] for s in sigs})
        if unknown:
            return _error(f"no signature {', '.join(unknown)} (see `osloscope signatures list`)")
        sigs = [s for s in sigs if s["id"] in wanted]
    try:
        files = discover(args.paths, host=args.host)
    except PathError as exc:
        return _error(str(exc))
    problem = bad_tz(args.tz)
    if problem:
        return _error(problem)
    counts = {s["id"]: 0 for s in sigs}
    out = sys.stdout
    stats = Stats()
    for lf, ev, sig, fields in match_files(files, args.tz, sigs, stats):
        counts[sig.id] += 1
        line = (ev.original or ev.message or "").split("\n", 1)[0]
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        out.write(f"{sig.rule}  {lf.path}@{ev.offset}  {line}\n")
        if extra:
            out.write(f"    {extra}\n")
    matched = {k: v for k, v in counts.items() if v or args.signature}
    out.write(f"\n{'RULE':<50} MATCHES\n")
    for sid, n in sorted(matched.items()):
        out.write(f"{'known_issue.' + sid:<50} {n}\n")
    total = sum(counts.values())
    out.write(f"{total} match(es) in {len(files)} file(s), {stats.lines} lines\n")
    out.flush()
    return 1 if total else 0
