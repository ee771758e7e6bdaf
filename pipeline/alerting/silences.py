"""Silences: mute the notifications of matching incidents until a point in time.

A silence is a list of matchers on the alert labels ``osloscope notify`` gives every incident
(alertname = type, type, rule, severity, host, service, incident_id), as in Alertmanager:
``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex`` (regexes match the whole
value). An incident is silenced while a silence whose matchers all match is active
(``starts_at <= now < ends_at``).

Silences live in one JSON file (``<notify.state_dir>/silences.json``), written atomically (temp
file, fsync, rename) under an advisory lock, so ``osloscope silence add|expire`` can change it
while ``osloscope notify`` runs; the notifier re-reads it when the file changes (a rename gives
it a new inode). Silences that expired more than RETENTION ago are dropped on the next write.

``osloscope silence add --matcher type=disk_full --matcher host=compute-2 --duration 2h
--comment "replacing the disk"``, ``osloscope silence list [--all]``, ``osloscope silence expire ID``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from pipeline.settings import NOTIFY_LABELS

log = logging.getLogger("osloscope.notify")

FILE_NAME = "silences.json"
FORMAT_VERSION = 1
RETENTION = 5 * 86400.0            # expired silences are kept this long (for `list --all`)
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*\Z", re.S)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+\Z")
_UNIT = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


class SilenceError(Exception):
    """A bad matcher, duration, file or id; the message says which."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str                  # = != =~ !~
    value: str
    _rx: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> "Matcher":
        m = _MATCHER.match(text)
        if not m:
            raise SilenceError(f"matcher {text!r}: expected label=value, label!=value, label=~regex "
                               "or label!~regex")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls.make(name, op, value, where=f"matcher {text!r}")

    @classmethod
    def make(cls, name: str, op: str, value: str, *, where: str = "matcher") -> "Matcher":
        if name not in NOTIFY_LABELS:
            raise SilenceError(f"{where}: unknown label {name!r} (labels: {', '.join(NOTIFY_LABELS)})")
        if op not in ("=", "!=", "=~", "!~"):
            raise SilenceError(f"{where}: unknown operator {op!r}")
        rx = None
        if op in ("=~", "!~"):
            try:
                rx = re.compile(value)
            except re.error as exc:
                raise SilenceError(f"{where}: bad regular expression: {exc}") from None
        return cls(name, op, value, rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name) or ""          # a missing label is the empty string
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self._rx.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    created_at: float = 0.0

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.starts_at <= now < self.ends_at and all(m.matches(labels) for m in self.matchers)

    def to_json(self) -> dict:
        return {"id": self.id,
                "matchers": [{"name": m.name, "op": m.op, "value": m.value} for m in self.matchers],
                "startsAt": _iso(self.starts_at), "endsAt": _iso(self.ends_at),
                "createdBy": self.created_by, "comment": self.comment,
                "createdAt": _iso(self.created_at)}

    @classmethod
    def from_json(cls, d: Mapping, where: str) -> "Silence":
        try:
            matchers = tuple(Matcher.make(m["name"], m["op"], m["value"], where=where)
                             for m in d["matchers"])
            return cls(str(d["id"]), matchers, _epoch(d["startsAt"]), _epoch(d["endsAt"]),
                       str(d.get("createdBy", "")), str(d.get("comment", "")),
                       _epoch(d.get("createdAt") or d["startsAt"]))
        except SilenceError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SilenceError(f"{where}: malformed silence ({type(exc).__name__}: {exc})") from None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def _epoch(text: str) -> float:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``1h30m``, ``1d``, ``45s``, ``1w`` -> seconds (> 0)."""
    t = text.strip().lower()
    total = sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(t)) if _DURATIONS.match(t) else 0.0
    if total <= 0:
        raise SilenceError(f"duration {text!r}: expected e.g. 2h, 30m, 1h30m, 1d (a positive amount)")
    return total


class SilenceStore:
    """The silences file: read (cached until the file changes), add, expire."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._sig: tuple | None = None
        self._silences: tuple[Silence, ...] = ()

    # reading ---------------------------------------------------------------------------------

    def _read(self) -> tuple[Silence, ...]:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return ()
        except (OSError, UnicodeDecodeError) as exc:
            raise SilenceError(f"{self.path}: cannot read: {exc}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SilenceError(f"{self.path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("silences"), list):
            raise SilenceError(f"{self.path}: expected {{\"version\": 1, \"silences\": [...]}}")
        return tuple(Silence.from_json(d, f"{self.path}: silences[{i}]")
                     for i, d in enumerate(doc["silences"]))

    def silences(self) -> tuple[Silence, ...]:
        """All silences in the file, re-read when it changed. A broken file keeps the last good
        set (and is logged) so a bad hand edit does not unmute everything."""
        try:
            st = os.stat(self.path)
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            sig = None
        if sig != self._sig:
            try:
                self._silences = self._read()
                if self._sig is not None or sig is not None:
                    log.info("silences: %d loaded from %s", len(self._silences), self.path)
            except SilenceError as exc:
                log.error("silences: keeping the previous %d: %s", len(self._silences), exc)
            self._sig = sig
        return self._silences

    def muting(self, labels: Mapping[str, str], now: float) -> Silence | None:
        """The first active silence that mutes ``labels``, or None."""
        for s in self.silences():
            if s.mutes(labels, now):
                return s
        return None

    # writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Silence]]:
        """Read-modify-write under an exclusive lock; the list as left by the block is written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            items = list(self._read())
            yield items
            self._write(items)

    def _write(self, items: Sequence[Silence]) -> None:
        doc = {"version": FORMAT_VERSION, "silences": [s.to_json() for s in items]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def add(self, matchers: Sequence[Matcher], *, now: float, duration: float,
            created_by: str = "", comment: str = "", starts_at: float | None = None) -> Silence:
        if not matchers:
            raise SilenceError("a silence needs at least one matcher")
        if duration <= 0:
            raise SilenceError("duration must be positive")
        start = now if starts_at is None else starts_at
        s = Silence(str(uuid.uuid4()), tuple(matchers), start, start + duration, created_by, comment, now)
        with self._locked() as items:
            items[:] = [x for x in items if x.ends_at > now - RETENTION]
            items.append(s)
        return s

    def expire(self, ident: str, *, now: float) -> Silence:
        """End the silence whose id is ``ident`` (or starts with it, when unambiguous) now."""
        with self._locked() as items:
            hits = [i for i, s in enumerate(items) if s.id == ident] or \
                   [i for i, s in enumerate(items) if s.id.startswith(ident)]
            if not ident or not hits:
                raise SilenceError(f"no silence with id {ident!r} in {self.path}")
            if len(hits) > 1:
                raise SilenceError(f"id {ident!r} is ambiguous: {', '.join(items[i].id for i in hits)}")
            old = items[hits[0]]
            if old.ends_at <= now:
                raise SilenceError(f"silence {old.id} already expired at {_iso(old.ends_at)}")
            new = Silence(old.id, old.matchers, min(old.starts_at, now), now, old.created_by,
                          old.comment, old.created_at)
            items[hits[0]] = new
        return new


def store_for(state_dir: str | os.PathLike) -> SilenceStore:
    return SilenceStore(Path(state_dir) / FILE_NAME)


# --- `osloscope silence add|list|expire` -----------------------------------------------------

def register(subparsers) -> None:
    import argparse

    from pipeline.settings import add_config_option

    p = subparsers.add_parser(
        "silence", help="mute notifications of matching incidents for a while",
        description="Add, list and expire silences for `osloscope notify`. A silence mutes the "
                    "incidents whose labels match all its matchers until it expires. Labels: "
                    f"{', '.join(NOTIFY_LABELS)} (alertname is the incident type). The running "
                    "notifier picks changes up within a second.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  osloscope silence add --matcher type=disk_full --matcher host=compute-2 \\\n"
               "      --duration 2h --comment \"replacing the disk\"\n"
               "  osloscope silence add --matcher 'host=~compute-[0-9]+' --duration 30m --comment upgrade\n"
               "  osloscope silence list\n"
               "  osloscope silence expire 3f2c")
    sub = p.add_subparsers(dest="silence_action", metavar="ACTION")
    sub.required = True
    a = sub.add_parser("add", help="add a silence; prints its id")
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
    ls = sub.add_parser("list", help="list active and pending silences")
    add_config_option(ls)
    ls.add_argument("--all", action="store_true", help="include expired silences")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_cmd_list)
    e = sub.add_parser("expire", help="end silences now")
    add_config_option(e)
    e.add_argument("ids", nargs="+", metavar="ID", help="silence id (a unique prefix is enough)")
    e.set_defaults(func=_cmd_expire)


def _store(args) -> SilenceStore | None:
    from pipeline.settings import load_for_command
    settings = load_for_command(args.config, "silence")
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
        print(f"osloscope silence: {exc}", file=sys.stderr)
        return 2
    print(s.id)
    print(f"osloscope: silenced {', '.join(map(str, s.matchers))} until {_iso(s.ends_at)}",
          file=sys.stderr)
    return 0


def _cmd_list(args) -> int:
    store = _store(args)
    if store is None:
        return 2
    try:
        items = store._read()
    except SilenceError as exc:
        print(f"osloscope silence: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    shown = [s for s in items if args.all or s.state(now) != "expired"]
    if args.format == "json":
        for s in shown:
            print(json.dumps({**s.to_json(), "state": s.state(now)}))
        return 0
    rows = [("ID", "STATE", "ENDS", "MATCHERS", "BY", "COMMENT")]
    rows += [(s.id, s.state(now), _iso(s.ends_at)[:19] + "Z", " ".join(map(str, s.matchers)),
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
            print(f"osloscope silence: {exc}", file=sys.stderr)
            rc = 2
    return rc
