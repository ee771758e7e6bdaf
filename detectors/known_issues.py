"""known_issue: the detector that matches the signature library.

The signatures are data (``detectors/signatures/<id>.toml``, loaded and
validated by ``pipeline.signatures``); this module only matches them, so it does no
file I/O. Each signature names the services/loggers and levels it applies to,
literal ``keywords`` (the prefilter), ``patterns`` (regexes with named groups)
and ``exclude`` patterns, the ``fields`` it extracts, the ``dedupe_key`` and
the probable cause and remediation.

One incident per root cause: one per (signature id, dedupe key values) until
the signature's quiet period (default 30 min, ``quiet_period``) passes with no
occurrence; count, last_seen and the evidence grow meanwhile.

Two optional behaviours:

* ``persist_seconds`` + ``recovery``: the condition only counts when it
  lasts. The incident opens once occurrences of the same key span
  ``persist_seconds`` without a ``recovery`` line for that key (an AMQP
  reconnect loop that never reconnects); a recovery line clears the pending
  occurrences and resolves an open incident at once.
* ``explains``: a specific signature (``Filter DiskFilter returned 0 hosts``)
  names the generic ones it explains (``no_valid_host``). A generic match of
  the same request id then becomes evidence of the specific incident instead
  of a second incident for the same root cause.

Fleet-wide causes: a signature whose ``dedupe_key`` does not name the host
(one database server, one broker, one keystone URL, one image) is one
incident for the whole fleet, listing every host and service it hit (the
blast radius) and, where the signature names it, the ``component`` the cause
lies in. Its state cannot live with one host's records, so such signatures
(and every signature an ``explains`` relation ties to one of them) are
*fleet-scoped*: ``KnownIssueRouter`` matches them next to the host's records
and keys each occurrence and recovery by signature and dedupe values (by the
group, for an ``explains`` group), and ``FleetKnownIssues`` keeps their
incidents per key (detectors/engine.py says how the worker routes them). For
a fleet signature with ``persist_seconds`` the condition must last on each
(host, service) by itself, and the incident resolves on recovery lines only
once every (host, service) in it has recovered.

Speed: one combined regex over every signature's keywords rejects most
records with a single search; records at levels no signature wants are
rejected before that.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
import re
from typing import Any, Iterable

from .base import Detector, FleetDetector, IncidentBook, Router
from .incident import Incident, evidence_of
from .model import Event
from .store import KeyedStore

DEFAULT_LEVELS = ("WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "TRACE")
DEFAULT_QUIET = 1800.0
EVENT_FIELDS = {"host": "host", "service": "service", "logger": "logger",
                "instance": "instance_id", "request_id": "request_id"}
RESOURCE_FIELDS = ("instance", "volume", "image", "port", "network", "path", "user")
FIELD_CHARS = 200
MAX_MEMBERS = 200       # (host, service) pairs a fleet condition tracks as failing
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def literal_union(words: Iterable[str]) -> re.Pattern:
    """One regex that finds any of ``words``, factored as a trie.

    Python's regex engine tries the branches of a flat alternation one by one
    at every position; sharing prefixes makes the prefilter about a third
    faster. A word that another word starts with stands for both.
    """
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict) -> str:
        if "" in node:
            return ""
        alts = [re.escape(ch) + build(node[ch]) for ch in sorted(node)]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(build(trie)) if trie else re.compile("(?!)")


def _fill(text: str, ctx: dict) -> str:
    """``{name}`` replaced by ``ctx[name]`` where known; other braces stay."""
    return _PLACEHOLDER.sub(lambda m: str(ctx[m.group(1)]) if m.group(1) in ctx else m.group(0), text)


class Signature:
    """One loaded signature, compiled for matching."""

    __slots__ = ("id", "doc", "rule", "title", "severity", "cause", "remediation", "keywords",
                 "levels", "services", "service_globs", "loggers", "patterns", "exclude",
                 "recovery", "fields", "dedupe_key", "quiet_period", "persist", "explains",
                 "component")

    def __init__(self, doc: dict) -> None:
        self.id = doc["id"]
        self.doc = doc
        self.rule = f"known_issue.{self.id}"
        self.title = doc["title"]
        self.severity = doc["severity"]
        self.cause = doc["probable_cause"]
        self.remediation = doc["remediation"]
        self.keywords = tuple(doc["keywords"])
        self.levels = frozenset(doc.get("levels") or DEFAULT_LEVELS)
        services = doc.get("services") or ()
        self.services = frozenset(s for s in services if not any(c in s for c in "*?["))
        self.service_globs = tuple(s for s in services if any(c in s for c in "*?["))
        self.loggers = tuple(doc.get("loggers") or ())
        self.patterns = tuple(re.compile(p) for p in doc["patterns"])
        self.exclude = tuple(re.compile(p) for p in doc.get("exclude") or ())
        self.recovery = tuple(re.compile(p) for p in doc.get("recovery") or ())
        self.fields = tuple(doc.get("fields") or ())
        self.dedupe_key = tuple(doc.get("dedupe_key") or ())
        self.quiet_period = float(doc.get("quiet_period", DEFAULT_QUIET))
        self.persist = float(doc.get("persist_seconds", 0.0))
        self.explains = frozenset(doc.get("explains") or ())
        self.component = doc.get("component")

    # -- applicability -------------------------------------------------------
    def applies(self, ev: Event) -> bool:
        """Service and logger filters (an unknown service or logger passes)."""
        svc = ev.service
        if svc is not None and (self.services or self.service_globs):
            if svc not in self.services and not any(fnmatch.fnmatchcase(svc, g) for g in self.service_globs):
                return False
        lg = ev.logger
        if lg is not None and self.loggers:
            if not any(lg == p or lg.startswith(p + ".") for p in self.loggers):
                return False
        return True

    def match(self, ev: Event, text: str) -> dict | None:
        """The extracted fields when ``ev`` is an occurrence, else None."""
        if ev.level not in self.levels or not self.applies(ev):
            return None
        for rx in self.exclude:
            if rx.search(text):
                return None
        for rx in self.patterns:
            m = rx.search(text)
            if m:
                return self._fields(m, ev)
        return None

    def recovered(self, ev: Event, text: str) -> dict | None:
        if not self.recovery or not self.applies(ev):
            return None
        for rx in self.recovery:
            m = rx.search(text)
            if m:
                return self._fields(m, ev)
        return None

    def _fields(self, m: re.Match, ev: Event) -> dict:
        groups = m.groupdict()
        out = {}
        for name in self.fields:
            value = groups.get(name)
            if value is None and name in EVENT_FIELDS:
                value = getattr(ev, EVENT_FIELDS[name])
            if value is not None:
                out[name] = str(value)[:FIELD_CHARS]
        return out

    def key(self, fields: dict, ev: Event) -> tuple:
        values = []
        for name in self.dedupe_key:
            value = fields.get(name)
            if value is None and name in EVENT_FIELDS:
                value = getattr(ev, EVENT_FIELDS[name])
            values.append(value if value is not None else "?")
        return (self.id, *values)


def fleet_groups(signatures: Iterable[dict]) -> dict[str, str]:
    """The fleet-scoped signatures: id -> routing group. A signature whose
    ``dedupe_key`` lacks ``host`` is fleet-scoped; ``explains`` ties signatures
    into groups (the explaining incident must see the explained records),
    and a group with one fleet-scoped member is fleet-scoped as a whole and
    routed under one key (its name: the first id in sorted order). Other
    fleet signatures are their own group ("")."""
    docs = {d["id"]: d for d in signatures}
    parent = {sid: sid for sid in docs}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for sid, d in docs.items():
        for other in d.get("explains") or ():
            if other in parent:
                a, b = find(sid), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for sid in docs:
        members.setdefault(find(sid), []).append(sid)
    out: dict[str, str] = {}
    for root, ids in members.items():
        if any("host" not in (docs[i].get("dedupe_key") or ()) for i in ids):
            name = min(ids) if len(ids) > 1 else ""
            for i in ids:
                out[i] = name
    return out


def split_signatures(signatures: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(host-scoped, fleet-scoped) signatures, each in library order."""
    docs = list(signatures)
    fleet = fleet_groups(docs)
    return [d for d in docs if d["id"] not in fleet], [d for d in docs if d["id"] in fleet]


@dataclass(frozen=True)
class KnownIssuesConfig:
    pending_evidence: int = 5        # records kept while a persist_seconds condition builds up
    max_pending: int = 10_000        # conditions building up at once
    max_recent: int = 20_000         # request ids remembered for ``explains``
    recent_ttl: float = 900.0        # ... for this many seconds


class KnownIssues(Detector):
    """Matches every signature; one incident per (signature, dedupe key)."""

    name = "known_issue"

    def __init__(self, signatures: Iterable[dict], config: "KnownIssuesConfig | None" = None) -> None:
        self.config = config = config or KnownIssuesConfig()
        super().__init__()
        self.signatures: dict[str, Signature] = {}
        for doc in signatures:
            sig = Signature(doc)
            self.signatures[sig.id] = sig
        self.books: dict[str, IncidentBook] = {
            sid: IncidentBook(sig.quiet_period, max_open=1000) for sid, sig in self.signatures.items()}
        self.levels = frozenset().union(*(s.levels for s in self.signatures.values())) if self.signatures else frozenset()
        self._recovering = tuple(s for s in self.signatures.values() if s.recovery)
        # records at levels no signature reads can still end a condition (INFO reconnects)
        self.recovery_prefilter = (literal_union({k for s in self._recovering for k in s.keywords})
                                   if self._recovering else None)
        # per level: the signatures that read it (or may recover on it) -- their keywords'
        # prefilter, and which of them each keyword points at (in library order)
        self._by_level = {level: self._plan([s for s in self.signatures.values()
                                             if level in s.levels or s.recovery])
                          for level in self.levels}
        self._recovery_plan = self._plan(list(self._recovering))   # any other level
        # (signature id, key) -> {"first_ts", "last_ts", "count", "items"}: persist_seconds not yet reached
        self.pending: KeyedStore[tuple, dict] = KeyedStore(config.max_pending)
        # request id -> (signature id, key, ts) of a signature that explains others
        self.recent: KeyedStore[str, tuple] = KeyedStore(config.max_recent)

    # -- matching (also used by `osloscope signatures test`) -----------------
    @staticmethod
    def _plan(sigs: list[Signature]) -> tuple[re.Pattern | None, tuple, list[Signature]]:
        words = sorted({k for s in sigs for k in s.keywords})
        by_word = tuple((w, tuple(i for i, s in enumerate(sigs) if w in s.keywords)) for w in words)
        return (literal_union(words) if words else None), by_word, sigs

    def candidates(self, ev: Event) -> tuple[str, list[Signature]]:
        """The record's text and the signatures one of whose keywords it holds,
        among those that read its level or may recover on it."""
        if ev.kind == "unparsed":
            return "", []
        plan = self._by_level.get(ev.level, self._recovery_plan)
        text = ev.text()
        if plan[0] is None or not plan[0].search(text):
            return text, []
        _, by_word, sigs = plan
        hit: set[int] = set()
        for word, ids in by_word:
            if word in text:
                hit.update(ids)
        return text, [sigs[i] for i in sorted(hit)]

    def match(self, ev: Event) -> list[tuple[Signature, dict]]:
        """Every signature ``ev`` is an occurrence of, with its fields."""
        if ev.level not in self.levels:
            return []
        text, cands = self.candidates(ev)
        out = []
        for sig in cands:
            fields = sig.match(ev, text)
            if fields is not None:
                out.append((sig, fields))
        return out

    # -- the contract --------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        return self._feed(ev, None)

    def _feed(self, ev: Event, only: frozenset | None) -> list[dict]:
        """``feed`` for every signature, or for those ``only`` names."""
        if ev.kind == "unparsed":
            return []
        if ev.level not in self.levels:
            return self._recovery_only(ev, only)
        text, cands = self.candidates(ev)
        if only is not None:
            cands = [sig for sig in cands if sig.id in only]
        if not cands:
            return []
        out: list[dict] = []
        for sig in cands:
            fields = sig.match(ev, text)
            if fields is not None:
                self._occurrence(sig, fields, ev, out)
            elif sig.recovery:
                rec = sig.recovered(ev, text)
                if rec is not None:
                    self._recover(sig, sig.key(rec, ev), out, ev)
        return out

    def _recovery_only(self, ev: Event, only: frozenset | None = None) -> list[dict]:
        if self.recovery_prefilter is None:
            return []
        text = ev.text()
        if not self.recovery_prefilter.search(text):
            return []
        out: list[dict] = []
        for sig in self._recovering:
            if only is not None and sig.id not in only:
                continue
            rec = sig.recovered(ev, text)
            if rec is not None:
                self._recover(sig, sig.key(rec, ev), out, ev)
        return out

    def _occurrence(self, sig: Signature, fields: dict, ev: Event, out: list[dict]) -> None:
        ts = ev.ts if ev.ts is not None else 0.0
        rids = [r for r in (ev.global_request_id, ev.request_id) if r]
        if self._explained(sig, ev, rids, ts, out):
            return
        key = sig.key(fields, ev)
        book = self.books[sig.id]
        member = self._member(sig, ev)
        pkey = (sig.id, key) if member is None else (sig.id, key + (member,))
        if sig.persist > 0 and (book.get(key, ts) is None or member is not None and pkey in self.pending):
            p = self.pending.get(pkey)
            if p is None:
                p = {"first_ts": ts, "last_ts": ts, "count": 0, "items": []}
                self.pending.put(pkey, p)
            p["count"] += 1
            p["last_ts"] = ts
            if ts - p["first_ts"] < sig.persist:
                if len(p["items"]) < self.config.pending_evidence:
                    p["items"].append([ts, evidence_of(ev)])
                return
            del self.pending[pkey]
            inc = self._touch(sig, key, fields, ev, p["first_ts"], out)
            for item_ts, item in p["items"]:
                inc.add_item(item, item_ts)
            inc.count += p["count"] - 1 - len(p["items"])
        else:
            inc = self._touch(sig, key, fields, ev, ts, out)
        if member is not None and sig.persist > 0:
            failing = inc.details.setdefault("still_failing", [])
            if member not in failing and len(failing) < MAX_MEMBERS:
                failing.append(member)
        res = {k: [fields[k]] for k in RESOURCE_FIELDS if k in fields}
        inc.add(ev, resources=res)
        stored = inc.details.setdefault("fields", {})
        stored.update(fields)
        inc.summary = self._summary(inc, sig)
        if sig.explains:
            for rid in rids:
                self.recent.put(rid, (sig.id, key, ts))
        out.append(inc.to_doc())

    def _member(self, sig: Signature, ev: Event) -> str | None:
        """The (host, service) a fleet signature's condition is tracked for."""
        return None

    def _touch(self, sig: Signature, key: tuple, fields: dict, ev: Event, start: float,
               out: list[dict]) -> Incident:
        ctx = {"host": ev.host or "unknown", "service": ev.service or "unknown",
               "logger": ev.logger or "unknown", **fields}
        inc = self.books[sig.id].touch(key, ev.ts if ev.ts is not None else start, lambda: Incident(
            rule=sig.rule, type="known_issue", key=key, window_start=start, severity=sig.severity,
            title=_fill(sig.title, ctx), probable_cause=_fill(sig.cause, ctx),
            remediation=_fill(sig.remediation, ctx)), out)
        if not inc.details:
            inc.details = {"signature": sig.id, "fields": {}}
            seed = sig.doc.get("seed")
            if seed:
                inc.details["seed"] = seed
            if sig.component:
                inc.details["component"] = sig.component
        return inc

    def _explained(self, sig: Signature, ev: Event, rids: list[str], ts: float, out: list[dict]) -> bool:
        """Attach ``ev`` to the open incident of a signature that explains ``sig``."""
        for rid in rids:
            hit = self.recent.get(rid)
            if hit is None:
                continue
            sid, key, _ = hit
            owner = self.signatures.get(sid)
            if owner is None or sig.id not in owner.explains:
                continue
            inc = self.books[sid].get(key, ts)
            if inc is None:
                continue
            inc.add(ev, count=False)
            explained = inc.details.setdefault("explains", [])
            if sig.id not in explained:
                explained.append(sig.id)
            out.append(inc.to_doc())
            return True
        return False

    def _recover(self, sig: Signature, key: tuple, out: list[dict], ev: Event | None = None) -> None:
        member = self._member(sig, ev) if ev is not None else None
        if member is None:
            self.pending.pop((sig.id, key), None)
            inc = self.books[sig.id].open.pop(key, None)
        else:
            # a fleet condition: this (host, service) recovered; the incident
            # resolves when every one that was failing in it has
            self.pending.pop((sig.id, key + (member,)), None)
            inc = self.books[sig.id].open.get(key)
            if inc is None:
                return
            failing = inc.details.get("still_failing") or []
            if member in failing:
                failing.remove(member)
            if failing:
                return
            self.books[sig.id].open.pop(key, None)
        if inc is not None:
            inc.status = "resolved"
            out.append(inc.to_doc())

    @staticmethod
    def _summary(inc: Incident, sig: Signature) -> str:
        parts = [inc.title, f"{inc.count} occurrence(s) between {inc.first_seen} and {inc.last_seen}"]
        if len(inc.hosts) > 1 or len(inc.services) > 1:       # the blast radius
            more = ", ..." if len(inc.hosts) > 6 else ""
            parts.append(f"{len(inc.hosts)} host(s): {', '.join(inc.hosts[:6])}{more}; "
                         f"services: {', '.join(inc.services[:6])}")
        if sig.component:
            parts.append(f"likely cause in: {sig.component}")
        fields = inc.details.get("fields") or {}
        shown = [f"{k}={v}" for k, v in fields.items() if k not in ("host", "service")][:6]
        if shown:
            parts.append(", ".join(shown))
        return "; ".join(parts)

    def advance(self, now: float) -> list[dict]:
        out: list[dict] = []
        for book in self.books.values():
            out.extend(book.advance(now))
        self.pending.expire(lambda pk, p: now - p["last_ts"] > max(self.signatures[pk[0]].persist, 60.0))
        self.recent.expire(lambda _r, v: now - v[2] > self.config.recent_ttl)
        return out

    # -- state ---------------------------------------------------------------
    def tracked_stores(self) -> dict:
        stores = super().tracked_stores()
        stores.update((f"books.{sid}", book.tracked()) for sid, book in self.books.items())
        return stores

    def snapshot(self) -> dict:
        return {
            "books": {sid: st for sid, book in self.books.items() if (st := book.snapshot())},
            "pending": [[sid, list(key), p] for (sid, key), p in self.pending.items()],
            "recent": [[rid, sid, list(key), ts] for rid, (sid, key, ts) in self.recent.items()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        for book in self.books.values():
            book.restore([])
        for sid, states in (state.get("books") or {}).items():
            if sid in self.books:            # a retired signature's incidents are dropped
                self.books[sid].restore(states)
        self.pending.restore([((sid, tuple(key)), dict(p)) for sid, key, p in state.get("pending", [])
                              if sid in self.signatures])
        self.recent.restore([(rid, (sid, tuple(key), ts)) for rid, sid, key, ts in state.get("recent", [])
                             if sid in self.signatures])


class KnownIssueRouter(Router):
    """Routes the records of fleet-scoped signatures (``split_signatures``):
    occurrences and recovery lines, keyed by signature and dedupe values
    (or by the ``explains`` group). Stateless."""

    name = "known_issue_fleet"

    def __init__(self, signatures: Iterable[dict]) -> None:
        docs = list(signatures)
        self.groups = fleet_groups(docs)
        self.matcher = KnownIssues([d for d in docs if d["id"] in self.groups])

    def route(self, ev: Event) -> list[str]:
        m = self.matcher
        if not m.signatures or ev.kind == "unparsed":
            return []
        if ev.level in m.levels:
            text, cands = m.candidates(ev)
        elif m.recovery_prefilter is not None:
            text = ev.text()
            cands = list(m._recovering) if m.recovery_prefilter.search(text) else []
        else:
            return []
        keys: list[str] = []
        for sig in cands:
            fields = sig.match(ev, text)
            if fields is None and sig.recovery:
                fields = sig.recovered(ev, text)
            if fields is None:
                continue
            group = self.groups[sig.id]
            key = f"group:{group}" if group else "\x1f".join(map(str, sig.key(fields, ev)))
            if key not in keys:
                keys.append(key)
        return keys


class FleetKnownIssues(FleetDetector, KnownIssues):
    """The incidents of the fleet-scoped signatures, per routing key: one per
    cause for the whole fleet, with every host and service it hit."""

    name = "known_issue_fleet"

    def __init__(self, signatures: Iterable[dict], config: "KnownIssuesConfig | None" = None) -> None:
        docs = list(signatures)
        self.groups = fleet_groups(docs)
        KnownIssues.__init__(self, [d for d in docs if d["id"] in self.groups], config)
        self._group_members: dict[str, frozenset] = {}
        for sid, group in self.groups.items():
            if group:
                self._group_members[group] = self._group_members.get(group, frozenset()) | {sid}

    def feed(self, ev: Event) -> list[dict]:
        return []

    def feed_keyed(self, ev: Event, key: str) -> list[dict]:
        if key.startswith("group:"):
            only = self._group_members.get(key[6:], frozenset())
        else:
            only = frozenset((key.split("\x1f", 1)[0],))
        return self._feed(ev, only)

    def _member(self, sig: Signature, ev: Event) -> str | None:
        return f"{ev.host or '?'}|{ev.service or '?'}"
