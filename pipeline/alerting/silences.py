"""Silences: mute the notifications of matching incidents until a point in time.

A silence is a list of matchers on the alert labels ``osloscope notify`` gives every incident
(alertname = type, type, rule, severity, host, service, incident_id), as in Alertmanager:
``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex`` (regexes match the whole
value). An incident is silenced while a silence whose matchers all match is active
(``starts_at <= now < ends_at``). Receivers of style ``alertmanager_api`` are not muted by these:
Alertmanager silences what it is sent (its own API, UI or amtool), on the labels it gets.

Silences live in one JSON file (``<notify.state_dir>/silences.json``), written atomically (temp
file, fsync, rename) under an advisory lock, so ``osloscope silence add|expire`` can change it
while ``osloscope notify`` runs; the notifier re-reads it when the file changes (a rename gives
it a new inode). Silences that expired more than RETENTION ago are dropped on the next write.

The ``osloscope silence add|list|expire`` commands are in ``pipeline/cli/silence.py``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
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
                "startsAt": iso(self.starts_at), "endsAt": iso(self.ends_at),
                "createdBy": self.created_by, "comment": self.comment,
                "createdAt": iso(self.created_at)}

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


def iso(t: float) -> str:
    """``2024-05-01T10:00:00Z`` (how silences.json and `silence list` write times)."""
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

    def read(self) -> tuple[Silence, ...]:
        """The silences in the file now (none if it does not exist); SilenceError if it is broken."""
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
                self._silences = self.read()
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
            items = list(self.read())
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
                raise SilenceError(f"silence {old.id} already expired at {iso(old.ends_at)}")
            new = Silence(old.id, old.matchers, min(old.starts_at, now), now, old.created_by,
                          old.comment, old.created_at)
            items[hits[0]] = new
        return new


def store_for(state_dir: str | os.PathLike) -> SilenceStore:
    return SilenceStore(Path(state_dir) / FILE_NAME)
