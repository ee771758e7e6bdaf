"""new_error: an ERROR or CRITICAL record of a template its service never logged while learned.

What no signature knows still shows as novelty: a record whose *template*
(the message with its ids, numbers, addresses, paths and quoted values
masked) the (host, service) stream did not log during its learning period.
Two parts, split by the key their state lives under:

* :class:`TemplateLearner` (host-scoped, parse stage): mines each (host,
  service) stream's templates with Drain3's ``Drain`` (the online template
  miner; its masking, persistence and LRU are replaced here, see below) and
  returns, for a post-learning ERROR/CRITICAL record of a template it has not
  seen, that record's **fleet template key**: the masked message computed by
  :func:`template_key` from the record alone, so two hosts logging the same
  new error give the same key whatever the order their records arrive in.
* :class:`NewErrorAggregator` (fleet-keyed, a ``Detector``): one incident per
  (service, template key) across the fleet: the template, the first and the
  latest records, hosts and count.

**Learning.** A stream learns from its first record for ``learn_seconds`` of
its own event time (default 24 h: one daily cycle, so nightly jobs, log
rotation, backups, token flushes and the daily traffic peak are seen; an
hour would report the first nightly job's errors as new) *and* at least
``learn_min_records`` records (a stream that logged a handful of records in
its first day has shown little of its vocabulary; it learns on). The clock
adds up the forward gaps between consecutive records, each at most
``learn_max_gap`` (1 h): one record with a wrong timestamp (a corrupted or
glued line, a clock jump) cannot end the learning period, and a stream
silent for days does not learn while it is silent. Every
WARNING, ERROR and CRITICAL record of the learning period is learned,
errors included: what a service logs while learning is its normal, known
vocabulary (an outage during the learning period becomes "known" too). DEBUG
and INFO records are only counted: they are ~95 % of a log and would fill
the cluster budget with healthy lines, evicting the rare error templates that
matter (and an ERROR worded like a healthy INFO record is worth a look).
After learning, WARNING records are not looked at; each ERROR/CRITICAL record
is searched in the stream's clusters with Drain's own similarity rule (the
rule by which Drain, learning, would have put it in an existing cluster).
The template is the masked first line of the message, preceded for Drain by
the exception class when the message does not name it ("Exception during
message handling" hides every RPC failure otherwise): a new exception class
behind a known message is a new template. A record a signature already
diagnoses (``observe(ev, explained=True)``) is left to its signature.

**New templates after learning.** A record that matches no cluster opens a
new cluster (so its variants match it) and is *novel*: it and every later
record matching that cluster return the key of the cluster's first record
on that stream (variants whose unmasked words differ still count under one
key). A novel template quiet for ``adopt_after`` seconds on the stream is
adopted: known from then on, no longer reported. With the default (the
aggregator's quiet period) a new error gives one incident while it lasts,
and none when it comes back after its incident resolved: it was reported
once, and a recurring failure deserves a signature (the remediation says
so). ``adopt_after = inf`` reports it every time instead.

**Bounds.** Streams: ``max_streams`` (least recently used forgotten: it
learns afresh, so an eviction can never raise a false alarm), and streams
silent for ``forget_after``. Per stream: ``max_clusters`` clusters (least
recently used first out), ``max_novel`` novel templates. Per template:
``MAX_TOKENS`` tokens of at most ``MAX_TOKEN_CHARS`` characters. Drain's
prefix tree has at most ``MAX_TOKENS + 1`` length nodes of at most
``max_children`` children each. The snapshot is plain JSON (clusters, tree,
novel table), never Drain3's jsonpickle blob.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from drain3.drain import Drain, LogCluster, Node

from . import texts
from .base import Detector, FleetDetector, IncidentBook, Router
from .incident import Incident
from .model import Event
from .store import KeyedStore

TEXTS = texts.load("new_error")      # detectors/texts/new_error.toml

LEARN_LEVELS = frozenset(("WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"))
REPORT_LEVELS = frozenset(("ERROR", "CRITICAL", "FATAL"))
CRITICAL_LEVELS = frozenset(("CRITICAL", "FATAL"))

MAX_TOKENS = 40           # a template is at most this many tokens (the rest is cut)
MAX_TOKEN_CHARS = 64      # a longer token (a blob, a long name) becomes <long>
MAX_MESSAGE_CHARS = 2000  # of the message's first line, read for the template
PARAM = "<*>"             # Drain's wildcard, also the mask of any other token with a digit
TITLE_CHARS = 100
FLEET_KEY_ATTR = "new_error_key"   # the attribute the fleet stage reads the key from


# --------------------------------------------------------------------------------------------
# the template key: masking from the record alone

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_TOKEN = r"[\w.:@/+~%=,-]"      # characters of one "word" for the number and digit masks
_MASKS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"), "<url>"),
    (re.compile(r"\breq-" + _UUID + r"\b"), "<req>"),
    (re.compile(r"\b" + _UUID + r"\b"), "<uuid>"),
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?!\w|\.\d)"), "<ip>"),
    (re.compile(r"(?<![\w:.])(\[)?(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                r"(?:%\w+)?(?(1)\](?::\d{1,5})?)(?![\w:])"), "<ip>"),           # IPv6 ([addr]:port), MACs
    (re.compile(r"(?<![\w.~/<>-])(?:~|\.{1,2})?/[\w.@%+~,=-]+(?:/[\w.@%+~,=-]*)*"), "<path>"),
    (re.compile(r"\b0x[0-9A-Fa-f]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
)
# a quoted value: kept when a bare identifier (an attribute, type or option name, a reason
# like 'shutdown'), masked otherwise (names, sentences, numbers: data)
_QUOTED = re.compile(r"""(?<!\w)u?(['"])([^'"\n]{0,200})\1(?!\w)""")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_.]*|<\w+>|")
# numbers, then any other word with a digit (hostnames, instance names, versions); an errno
# is kept: it names the failure ("[Errno 28]" is not "[Errno 111]")
_NUMBER = re.compile(r"(?<!" + _TOKEN + r")(?<!Errno )[-+]?\d+(?:\.\d+)?(?!\w)")
_DIGITS = re.compile(r"(?<!" + _TOKEN + r")(?<!Errno )" + _TOKEN + r"*\d" + _TOKEN + r"*")


def _quoted(m: re.Match) -> str:
    q, inner = m.group(1), m.group(2)
    return m.group(0) if _IDENTIFIER.fullmatch(inner) else f"{q}<*>{q}"


@lru_cache(maxsize=4096)
def _host_rx(host: str) -> re.Pattern:
    names = {host, host.split(".", 1)[0]}
    alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True) if n)
    return re.compile(r"(?<![\w.-])(?:" + alts + r")(?:\.[A-Za-z][\w-]*)*(?![\w-])")


def mask_tokens(message: str, host: str | None = None) -> list[str]:
    """The masked tokens of ``message``'s first line: ``host`` (the record's
    own host name, full or short) is ``<host>``; urls, request ids, uuids,
    IPv4/IPv6 addresses (with port), MACs, paths, hex ids, quoted values that
    are not bare identifiers, numbers and any other word with a digit are
    masked; at most ``MAX_TOKENS`` tokens of at most ``MAX_TOKEN_CHARS``."""
    text = message.split("\n", 1)[0][:MAX_MESSAGE_CHARS]
    if host:
        text = _host_rx(host).sub("<host>", text)
    for rx, mask in _MASKS:
        text = rx.sub(mask, text)
    text = _QUOTED.sub(_quoted, text)
    text = _NUMBER.sub("<num>", text)
    text = _DIGITS.sub(PARAM, text)
    return [t if len(t) <= MAX_TOKEN_CHARS else "<long>" for t in text.split()[:MAX_TOKENS]]


def exception_name(ev: Event) -> str | None:
    """The record's exception class (last dotted part) when its message does not name it."""
    et = ev.error_type
    if not et:
        return None
    name = et.rsplit(".", 1)[-1][:MAX_TOKEN_CHARS]
    return None if name in (ev.message or "") else name


def template_key(ev: Event) -> str:
    """The fleet template key of ``ev``: its masked message (plus ``[Exception]``
    when the message does not name the record's exception). The same for the
    same template whatever host logged it and whatever came before."""
    tokens = mask_tokens(ev.message or "", ev.host)
    exc = exception_name(ev)
    return " ".join(tokens) + (f" [{exc}]" if exc else "")


def fleet_key_of(ev: Event) -> str | None:
    """The template key the parse stage tagged ``ev`` with (``FLEET_KEY_ATTR``), if any."""
    return getattr(ev, FLEET_KEY_ATTR, None)


# --------------------------------------------------------------------------------------------
# configuration

@dataclass(frozen=True)
class NewErrorConfig:
    # learning, per (host, service) stream
    learn_seconds: float = 86400.0     # of the stream's own event time, from its first record ...
    learn_min_records: int = 200       # ... and at least this many records (any level)
    learn_max_gap: float = 3600.0      # a gap between two records counts at most this much
    adopt_after: float = 1800.0        # a novel template quiet this long on a stream is known
    # Drain (drain3.drain.Drain): a record joins a cluster of its length and first token when at
    # least sim_th of its tokens equal the cluster's; 0.5 is LogPAI's Drain setting for OpenStack
    # logs (logpai/logparser, logparser/Drain/benchmark.py), stricter than Drain3's 0.4 on the
    # short messages errors often are; depth 4 is Drain3's (one prefix token: the exception
    # class, else the first word), which keeps the tree at most MAX_TOKENS x max_children leaves
    sim_th: float = 0.5
    depth: int = 4
    max_children: int = 100
    # bounds
    max_clusters: int = 300            # per stream, least recently used first out
    max_novel: int = 50                # novel templates followed at once per stream
    max_streams: int = 5000            # (host, service) streams per learner
    forget_after: float = 30 * 86400.0   # a stream silent this long is forgotten (learns afresh)
    # the fleet incidents
    quiet_period: float = 1800.0       # an incident with no record for this long resolves
    max_incidents: int = 10_000

    def __post_init__(self) -> None:
        problems = []
        for name in ("learn_seconds", "learn_max_gap", "adopt_after", "forget_after", "quiet_period"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, not {getattr(self, name)!r}")
        for name in ("max_clusters", "max_novel", "max_streams", "max_incidents", "max_children"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, not {getattr(self, name)!r}")
        if not 0.0 < self.sim_th <= 1.0:
            problems.append(f"sim_th must be in (0, 1], not {self.sim_th!r}")
        if self.depth < 3:
            problems.append(f"depth must be >= 3 (Drain's minimum), not {self.depth!r}")
        if self.learn_min_records < 0:
            problems.append(f"learn_min_records must be >= 0, not {self.learn_min_records!r}")
        if problems:
            raise ValueError("new_error settings: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# Drain's cluster map, least recently used first, with a JSON form

class _Clusters:
    """Drain's ``id_to_cluster`` (drain3 uses a cachetools LRUCache): ``[]``
    touches (most recently used), ``get`` does not, past ``maxsize`` the least
    recently used cluster goes. An OrderedDict, so its order is snapshotted."""

    __slots__ = ("data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.data: OrderedDict[int, LogCluster] = OrderedDict()
        self.maxsize = maxsize

    def __getitem__(self, cid: int) -> LogCluster | None:
        cluster = self.data.get(cid)
        if cluster is not None:
            self.data.move_to_end(cid)
        return cluster

    def get(self, cid: int) -> LogCluster | None:
        return self.data.get(cid)

    def __setitem__(self, cid: int, cluster: LogCluster) -> None:
        self.data[cid] = cluster
        self.data.move_to_end(cid)
        while len(self.data) > self.maxsize:
            self.data.popitem(last=False)

    def __contains__(self, cid: object) -> bool:
        return cid in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        return iter(self.data)

    def values(self):
        return self.data.values()


def _new_drain(c: NewErrorConfig) -> Drain:
    drain = Drain(depth=c.depth, sim_th=c.sim_th, max_children=c.max_children, param_str=PARAM)
    drain.id_to_cluster = _Clusters(c.max_clusters)
    return drain


def _encode_node(node: Node, live: _Clusters) -> list:
    ids = [i for i in node.cluster_ids if i in live]
    if not node.key_to_child_node:
        return [ids]
    return [ids, {tok: _encode_node(child, live) for tok, child in node.key_to_child_node.items()}]


def _decode_node(state: list) -> Node:
    node = Node()
    node.cluster_ids = list(state[0])
    if len(state) > 1:
        node.key_to_child_node = {tok: _decode_node(child) for tok, child in state[1].items()}
    return node


def drain_state(drain: Drain) -> dict:
    """Drain's state as JSON-safe data: clusters (least recently used first:
    id, template, size), the prefix tree and the id counter. Ids of evicted
    clusters are left out of the tree's leaves (Drain skips them anyway)."""
    live: _Clusters = drain.id_to_cluster
    return {"next": drain.clusters_counter,
            "clusters": [[c.cluster_id, " ".join(c.log_template_tokens), c.size] for c in live.values()],
            "tree": _encode_node(drain.root_node, live)}


def restore_drain(drain: Drain, state: dict) -> None:
    live: _Clusters = drain.id_to_cluster
    live.data.clear()
    for cid, template, size in state["clusters"]:
        cluster = LogCluster(template.split(), cid)
        cluster.size = size
        live.data[cid] = cluster
    drain.clusters_counter = state["next"]
    drain.root_node = _decode_node(state["tree"])


# --------------------------------------------------------------------------------------------
# the host-scoped learner

class _Stream:
    __slots__ = ("last_ts", "elapsed", "records", "learned", "drain", "novel", "cached")

    def __init__(self, ts: float, drain: Drain) -> None:
        self.last_ts = ts            # the latest record's time (arrival order, not the maximum)
        self.elapsed = 0.0           # the learning clock: event time observed (gaps capped)
        self.records = 0             # records seen while learning (any level)
        self.learned = False
        self.drain = drain
        # cluster id -> [key, first_ts, last_ts, count]: templates reported, not yet adopted
        self.novel: OrderedDict[int, list] = OrderedDict()
        self.cached: dict | None = None      # drain_state(drain) until the drain changes


class TemplateLearner(Router):
    """The (host, service) streams' templates; see the module docstring.

    ``observe(ev)`` -> the fleet template key when ``ev`` is an ERROR/CRITICAL
    record of a template its stream had not logged while learning (or of a
    novel template not yet adopted), else None. ``explained=True`` (a
    signature already diagnoses the record), or ``explained_by(ev)`` true,
    returns None and learns nothing after the learning period. ``advance(now)`` forgets streams silent for
    ``forget_after``. ``snapshot()``/``restore()``: JSON-safe state.
    """

    name = "new_error"       # the fleet detector its keys go to (NewErrorAggregator.name)

    def __init__(self, config: NewErrorConfig | None = None,
                 explained_by: Callable[[Event], bool] | None = None) -> None:
        self.config = config = config or NewErrorConfig()
        self.explained_by = explained_by     # e.g. "a signature matches it"; asked after learning only
        self.streams: KeyedStore[tuple, _Stream] = KeyedStore(config.max_streams)

    def route(self, ev: Event) -> list[str]:
        """``observe(ev)`` as a list of fleet keys (the engine's router contract)."""
        key = self.observe(ev)
        return [] if key is None else [key]

    def learning(self, host: str, service: str) -> bool | None:
        """Whether the stream still learns (None: not seen)."""
        s = self.streams.get((host, service))
        return None if s is None else not s.learned

    def observe(self, ev: Event, explained: bool = False) -> str | None:
        ts = ev.ts
        if ts is None or ev.kind != "log":
            return None
        key = (ev.host or "unknown", ev.service or "unknown")
        s = self.streams.get(key)
        if s is None:
            s = _Stream(ts, _new_drain(self.config))
            self.streams.put(key, s)
        else:
            self.streams.touch(key)
        c = self.config
        gap, s.last_ts = ts - s.last_ts, ts
        if not s.learned:
            s.records += 1
            if gap > 0:
                s.elapsed += min(gap, c.learn_max_gap)
            if s.elapsed < c.learn_seconds or s.records < c.learn_min_records:
                if ev.level in LEARN_LEVELS and ev.message:
                    self._learn(s, ev)
                return None
            s.learned = True             # this record is the first one judged
        if ev.level not in REPORT_LEVELS or explained or not ev.message:
            return None
        if self.explained_by is not None and self.explained_by(ev):
            return None
        return self._judge(s, ev, ts)

    def _learn(self, s: _Stream, ev: Event) -> None:
        tokens = mask_tokens(ev.message, ev.host)
        if not tokens:
            return
        exc = exception_name(ev)
        s.drain.add_log_message(f"[{exc}] {' '.join(tokens)}" if exc else " ".join(tokens))
        s.cached = None

    def _judge(self, s: _Stream, ev: Event, ts: float) -> str | None:
        tokens = mask_tokens(ev.message, ev.host)
        if not tokens:
            return None
        exc = exception_name(ev)
        drain = s.drain
        content = [f"[{exc}]", *tokens] if exc else tokens
        cluster = drain.tree_search(drain.root_node, content, drain.sim_th, False)
        if cluster is None:                  # a template this stream never logged: a cluster of
            drain.clusters_counter += 1      # its own (what Drain.add_log_message does on no match)
            cluster = LogCluster(content, drain.clusters_counter)
            drain.id_to_cluster[cluster.cluster_id] = cluster
            drain.add_seq_to_prefix_tree(drain.root_node, cluster)
            s.cached = None
            fleet_key = " ".join(tokens) + (f" [{exc}]" if exc else "")
            s.novel[cluster.cluster_id] = [fleet_key, ts, ts, 1]
            self._prune_novel(s)
            return fleet_key
        live: _Clusters = drain.id_to_cluster
        cid = cluster.cluster_id
        if next(reversed(live.data)) != cid:     # touch: most recently used
            live.data.move_to_end(cid)
            s.cached = None
        entry = s.novel.get(cid)
        if entry is None:
            return None
        if ts - entry[2] > self.config.adopt_after:
            del s.novel[cid]                 # quiet long enough: known from now on
            return None
        entry[2] = max(entry[2], ts)
        entry[3] += 1
        return entry[0]

    def _prune_novel(self, s: _Stream) -> None:
        live = s.drain.id_to_cluster
        for cid in [cid for cid in s.novel if cid not in live]:
            del s.novel[cid]                 # its cluster was evicted
        while len(s.novel) > self.config.max_novel:
            s.novel.popitem(last=False)      # the oldest novel template is adopted

    def advance(self, now: float) -> None:
        """Forget the streams silent for ``forget_after`` (they learn afresh)."""
        horizon = self.config.forget_after
        self.streams.expire(lambda _k, s: now - s.last_ts > horizon)

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        streams = []
        for (host, service), s in self.streams.items():
            if s.cached is None:
                s.cached = drain_state(s.drain)
            streams.append({"host": host, "service": service, "last_ts": s.last_ts,
                            "elapsed": s.elapsed, "records": s.records, "learned": s.learned,
                            "drain": s.cached, "novel": [[cid, *e] for cid, e in s.novel.items()]})
        return {"version": 1, "streams": streams}

    def restore(self, state: dict) -> None:
        if state.get("version", 1) != 1:
            raise ValueError(f"new_error learner snapshot version {state.get('version')!r} is not 1")
        self.streams.clear()
        for st in state.get("streams", []):
            drain = _new_drain(self.config)
            restore_drain(drain, st["drain"])
            s = _Stream(st["last_ts"], drain)
            s.elapsed, s.records, s.learned = st["elapsed"], st["records"], st["learned"]
            s.novel = OrderedDict((cid, [k, first, last, n]) for cid, k, first, last, n in st["novel"])
            self.streams.put((st["host"], st["service"]), s)

    def stats(self) -> dict:
        """Sizes, for benchmarks and operators: streams, clusters, tree nodes, novel templates."""
        def nodes(n: Node) -> int:
            return 1 + sum(nodes(c) for c in n.key_to_child_node.values())
        ss = list(self.streams.values())
        return {"streams": len(ss), "evicted_streams": self.streams.evicted,
                "learning": sum(1 for s in ss if not s.learned),
                "clusters": sum(len(s.drain.id_to_cluster) for s in ss),
                "tree_nodes": sum(nodes(s.drain.root_node) for s in ss),
                "novel": sum(len(s.novel) for s in ss)}


# --------------------------------------------------------------------------------------------
# the fleet aggregator

def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "ever"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _short(template: str, limit: int = TITLE_CHARS) -> str:
    return template if len(template) <= limit else template[:limit - 3].rstrip() + "..."


class NewErrorAggregator(FleetDetector):
    """new_error: one incident per (service, template key) across the fleet.

    ``add(ev, key)`` counts ``ev`` (a record the learner returned ``key``
    for) in the open incident of (``ev.service``, ``key``), or opens one;
    ``feed(ev)`` does the same with ``fleet_key_of(ev)``. The incident
    resolves after ``quiet_period`` without a record (``advance``); a later
    record opens a new one (new window, new id).
    """

    name = "new_error"
    rule = "new_error.template"

    def __init__(self, config: NewErrorConfig | None = None) -> None:
        self.config = config = config or NewErrorConfig()
        self.quiet_period = config.quiet_period
        super().__init__()
        self.book = IncidentBook(config.quiet_period, max_open=config.max_incidents)

    def feed(self, ev: Event) -> list[dict]:
        key = fleet_key_of(ev)
        return [] if key is None else self.add(ev, key)

    def feed_keyed(self, ev: Event, key: str) -> list[dict]:
        """``add`` under the fleet detector contract's name."""
        return self.add(ev, key)

    def add(self, ev: Event, key: str) -> list[dict]:
        if ev.ts is None:
            return []
        service = ev.service or "unknown"
        out: list[dict] = []
        fill = {"service": service, "template": key, "learn": _duration(self.config.learn_seconds),
                "adopt": _duration(self.config.adopt_after)}
        inc = self.book.touch((service, key), ev.ts, lambda: Incident(
            rule=self.rule, type="new_error", key=(service, key), window_start=ev.ts,
            severity="error", title=f"New error in {service}: {_short(key)}",
            probable_cause=TEXTS["probable_cause"].format(**fill),
            remediation=TEXTS["remediation"].format(**fill)), out)
        inc.add(ev)
        if ev.level in CRITICAL_LEVELS:
            inc.severity = "critical"
        # details are replaced, never changed in place: documents already returned share them
        d = inc.details
        if not d:
            d.update(template=key, exceptions=[], loggers=[], levels={})
        for field, value in (("exceptions", ev.error_type), ("loggers", ev.logger)):
            if value and value not in d[field] and len(d[field]) < 10:
                d[field] = [*d[field], value]
        level = ev.level or "unknown"
        d["levels"] = {**d["levels"], level: d["levels"].get(level, 0) + 1}
        hosts = ", ".join(inc.hosts[:6]) + (", ..." if len(inc.hosts) > 6 else "")
        inc.summary = (f"{inc.count} record(s) of an error template {service} had not logged during its "
                       f"learning period, on {len(inc.hosts)} host(s) ({hosts}), between {inc.first_seen} "
                       f"and {inc.last_seen}: {_short(key, 300)}")
        out.append(inc.to_doc())
        return out
