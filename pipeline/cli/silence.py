"""``osloscope silence add|list|expire``: arguments, exit codes and printing; matching and the
silences file are in pipeline/alerting/silences.py."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pipeline.alerting.silences import (Matcher, SilenceError, SilenceStore, iso, parse_duration,
                                        store_for)
from pipeline.cli.options import add_config_option, load_settings
from pipeline.settings import NOTIFY_LABELS

DESCRIPTION = f"""\
Add, list and expire silences for `osloscope notify`. A silence mutes the incidents whose
labels match all its matchers until it expires. Labels: {', '.join(NOTIFY_LABELS)}
(alertname is the incident type). The running notifier picks changes up within a second."""

EPILOG = """\
examples:
  osloscope silence add --matcher type=disk_full --matcher host=compute-2 \\
      --duration 2h --comment "replacing the disk"
  osloscope silence add --matcher 'host=~compute-[0-9]+' --duration 30m --comment upgrade
  osloscope silence list
  osloscope silence expire 3f2c

Exit codes: 0 done; 2 usage errors, invalid settings, a bad matcher or duration, an unreadable
silences file, or an id that is unknown, ambiguous or already expired."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "silence", help="mute notifications of matching incidents for a while",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="silence_action", metavar="ACTION", help="add, list or expire")
    sub.required = True
    a = sub.add_parser("add", help="add a silence; prints its id",
                       description="Add a silence starting now; print its id on stdout.",
                       epilog="Exit codes: 0 added; 2 usage errors, invalid settings, a bad matcher "
                              "or duration, or the silences file cannot be written.")
    add_config_option(a)
    a.add_argument("--matcher", "-m", action="append", required=True, metavar="MATCHER",
                   help="label=value, label!=value, label=~regex or label!~regex (regexes match the "
                        "whole value); repeat for more (all must match)")
    a.add_argument("--duration", "-d", default="1h",
                   help="how long from now, e.g. 30m, 2h, 1h30m, 1d (default 1h)")
    a.add_argument("--comment", "-c", required=True, help="why; shown by `silence list`")
    a.add_argument("--author", "-a", default=os.environ.get("USER") or os.environ.get("LOGNAME") or "",
                   help="who (default $USER)")
    a.set_defaults(func=_cmd_add)
    ls = sub.add_parser("list", help="list active and pending silences",
                        description="List the silences of notify.state_dir (active and pending; "
                                    "with --all also the expired ones).",
                        epilog="Exit codes: 0 listed (also when there are none); 2 usage errors, "
                               "invalid settings or an unreadable silences file.")
    add_config_option(ls)
    ls.add_argument("--all", action="store_true", help="include expired silences")
    ls.add_argument("--format", choices=("table", "json"), default="table",
                    help="table (default): one row per silence; json: one JSON object per line, "
                         "as stored in silences.json plus its state")
    ls.set_defaults(func=_cmd_list)
    e = sub.add_parser("expire", help="end silences now",
                       description="End the given silences now (the notifier sends what they "
                                   "muted at the next group_interval).",
                       epilog="Exit codes: 0 all expired; 2 usage errors, invalid settings, or an "
                              "id unknown, ambiguous or already expired (the other ids are still "
                              "expired).")
    add_config_option(e)
    e.add_argument("ids", nargs="+", metavar="ID", help="silence id (a unique prefix is enough)")
    e.set_defaults(func=_cmd_expire)


def _fail(exc: Exception) -> int:
    print(f"osloscope silence: {exc}", file=sys.stderr)
    return 2


def _store(args) -> SilenceStore | None:
    settings = load_settings(args.config, "silence")
    return None if settings is None else store_for(settings.notify.state_dir)


def _cmd_add(args) -> int:
    store = _store(args)
    if store is None:
        return 2
    try:
        matchers = [Matcher.parse(t) for t in args.matcher]
        s = store.add(matchers, now=time.time(), duration=parse_duration(args.duration),
                      created_by=args.author, comment=args.comment)
    except (SilenceError, OSError) as exc:
        return _fail(exc)
    print(s.id)
    print(f"osloscope: silenced {', '.join(map(str, s.matchers))} until {iso(s.ends_at)}",
          file=sys.stderr)
    return 0


def _cmd_list(args) -> int:
    store = _store(args)
    if store is None:
        return 2
    try:
        items = store.read()
    except SilenceError as exc:
        return _fail(exc)
    now = time.time()
    shown = [s for s in items if args.all or s.state(now) != "expired"]
    if args.format == "json":
        for s in shown:
            print(json.dumps({**s.to_json(), "state": s.state(now)}))
        return 0
    rows = [("ID", "STATE", "ENDS", "MATCHERS", "BY", "COMMENT")]
    rows += [(s.id, s.state(now), iso(s.ends_at)[:19] + "Z", " ".join(map(str, s.matchers)),
              s.created_by, s.comment) for s in shown]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    print(f"osloscope: {len(shown)} silence(s) in {store.path}", file=sys.stderr)
    return 0


def _cmd_expire(args) -> int:
    store = _store(args)
    if store is None:
        return 2
    rc = 0
    for ident in args.ids:
        try:
            s = store.expire(ident, now=time.time())
            print(f"expired {s.id}", file=sys.stderr)
        except (SilenceError, OSError) as exc:
            rc = _fail(exc)
    return rc
