"""``osloscope trace ID``: the cross-service timeline of a request or resource.

What an operator does by hand (seed 001 "The method", steps 2-3; seed 004):
take a request id (``req-...``) or an instance, volume or image UUID, find
every record carrying it, then follow what those records link to -- their
request ids, the downstream ``Request-ID: req-...`` they mention, the
instance and volume ids they name -- for ``--hops`` rounds (default 2), and
print one timeline across hosts and services, errors marked, each
traceback's last line shown, ending with the root-cause candidate (the
same logic as the request summaries, ``detectors.request_windows``).

Records come from files (``--logs PATH...``, read once per hop) or, without
``--logs``, from Elasticsearch: the events indices
(``elasticsearch.events_index_prefix`` + ``*``) queried on
``openstack.request_id``, ``openstack.global_request_id``,
``openstack.instance_id`` and ``openstack.resources.*``.

Image ids are followed only when they are what was asked for: one image
backs thousands of unrelated requests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from detectors.model import Event

REQ_RE = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FOLLOW_KINDS = ("instance", "volume")        # resource kinds followed to other requests
MATCH_KINDS = ("instance", "volume", "image")
ERROR_LEVELS = frozenset(("ERROR", "CRITICAL", "FATAL", "TRACE"))
MAX_IDS = 200
ES_MAX = 10_000
WINDOW = 30 * 86400.0                        # one window per request, however long it ran


@dataclass
class Ids:
    requests: set = field(default_factory=set)
    resources: set = field(default_factory=set)

    def copy(self) -> "Ids":
        return Ids(set(self.requests), set(self.resources))

    def __len__(self) -> int:
        return len(self.requests) + len(self.resources)


def seed_ids(ident: str) -> Ids:
    """The ids to start from; ValueError for anything but a request id or UUID."""
    text = ident.strip().lower()
    if REQ_RE.match(text):
        return Ids(requests={text})
    if UUID_RE.match(text):
        return Ids(resources={text})
    raise ValueError(f"{ident!r} is neither a request id (req-<uuid>) nor an instance/volume/image UUID")


def matches(ev: Event, ids: Ids) -> bool:
    reqs, res = ids.requests, ids.resources
    if ev.request_id in reqs or ev.global_request_id in reqs or ev.instance_id in res:
        return True
    r = ev.resources
    if r:
        if reqs and any(x in reqs for x in r.get("request", ())):
            return True
        if res and any(x in res for kind in MATCH_KINDS for x in r.get(kind, ())):
            return True
    return False


def expand(events: list[Event], ids: Ids) -> Ids:
    """``ids`` plus what the matched records link to (capped)."""
    out = ids.copy()

    def add(target: set, value) -> None:
        if value and len(out) < MAX_IDS:
            target.add(value)

    for ev in events:
        add(out.requests, ev.request_id)
        add(out.requests, ev.global_request_id)
        add(out.resources, ev.instance_id)
        r = ev.resources or {}
        for x in r.get("request", ()):
            add(out.requests, x)
        for kind in FOLLOW_KINDS:
            for x in r.get(kind, ()):
                add(out.resources, x)
    return out


# -- sources ---------------------------------------------------------------------
def follow(fetch: Callable[[Ids], list[Event]], ids: Ids, hops: int) -> tuple[list[Event], Ids]:
    """The events ``fetch`` finds for ``ids``, the ids widened by what they
    mention and fetched again, up to ``hops`` times or until nothing new."""
    events: list[Event] = []
    for hop in range(hops + 1):
        events = fetch(ids)
        if hop == hops:
            break
        wider = expand(events, ids)
        if wider == ids:
            break
        ids = wider
    return events, ids


def from_files(files, tz: str | None, ids: Ids, hops: int) -> tuple[list[Event], Ids]:
    from pipeline.local.analyze import Stats, merged_events

    return follow(lambda ids: [ev for ev in merged_events(files, tz, Stats())
                               if ev.kind != "unparsed" and matches(ev, ids)], ids, hops)


def es_query(ids: Ids) -> dict:
    reqs, res = sorted(ids.requests), sorted(ids.resources)
    should: list[dict] = []
    if reqs:
        should += [{"terms": {f: reqs}} for f in ("openstack.request_id", "openstack.global_request_id",
                                                   "openstack.resources.request")]
    if res:
        should += [{"terms": {f: res}} for f in ("openstack.instance_id", "openstack.resources.instance",
                                                  "openstack.resources.volume", "openstack.resources.image")]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _event_of(doc: dict) -> Event:
    from pipeline.codec import event_from_doc

    from pipeline.parsing.timefmt import InvalidTimestamp, TimeParser

    ev = event_from_doc(doc)
    if ev.timestamp:
        try:
            ev.ts = TimeParser.parse_iso(ev.timestamp)[0]
        except InvalidTimestamp:
            ev.ts = None
    return ev


def from_elasticsearch(client, index: str, ids: Ids, hops: int, limit: int) -> tuple[list[Event], Ids]:
    def fetch(ids: Ids) -> list[Event]:
        res = client.search(index=index, query=es_query(ids), size=min(limit, ES_MAX),
                            sort=[{"@timestamp": {"order": "asc"}},
                                  {"log.offset": {"order": "asc", "unmapped_type": "long"}}],
                            ignore_unavailable=True)
        return [_event_of(hit["_source"]) for hit in res["hits"]["hits"]]

    events, ids = follow(fetch, ids, hops)
    events.sort(key=lambda e: e.ts if e.ts is not None else float("-inf"))
    return events, ids


# -- conclusions -------------------------------------------------------------------
def root_cause(events: list[Event], seed: Ids) -> tuple[dict | None, list[dict]]:
    """(root-cause candidate, request summaries) of the traced records."""
    from detectors.request_windows import RequestWindows

    windows = RequestWindows(gap=WINDOW, max_length=WINDOW)
    summaries: list[dict] = []
    for ev in events:
        summaries.extend(windows.feed(ev))
    summaries.extend(windows.flush())
    summaries.sort(key=lambda d: (d["first_seen"] or "", d["id"]))
    found = [d for d in summaries if d["root_cause"]]
    if not found:
        return None, summaries
    own = [d for d in found if seed.requests & set(d["request_ids"] + [d["key"]])]
    return (own or found)[0]["root_cause"], summaries


def is_error(ev: Event) -> bool:
    return ev.level in ERROR_LEVELS or (ev.status_code is not None and ev.status_code >= 500)


def _flat(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render(ident: str, events: list[Event], ids: Ids, cause: dict | None, summaries: list[dict],
           *, width: int = 160) -> str:
    hosts = sorted({e.host for e in events if e.host})
    services: list[str] = []
    for e in events:
        if e.service and e.service not in services:
            services.append(e.service)
    reqs = [d["key"] for d in summaries]
    lines = [f"trace {ident}: {len(events)} record(s), {len(reqs)} request(s), host(s) {', '.join(hosts) or '-'}",
             f"  chain:    {' > '.join(services) or '-'}",
             f"  requests: {', '.join(reqs[:8])}{' ...' if len(reqs) > 8 else ''}"]
    followed = sorted(ids.resources)
    if followed:
        lines.append(f"  ids:      {', '.join(followed[:8])}{' ...' if len(followed) > 8 else ''}")
    lines.append("")
    cols = f"   {'TIME':<23}  {'HOST':<14}  {'SERVICE':<16}  {'LEVEL':<8}  {'REQUEST ID':<40}  MESSAGE"
    lines.append(cols)
    for e in events:
        mark = "!!" if is_error(e) else "  "
        stamp = (e.timestamp or "")[:23].replace("T", " ")
        lines.append(f"{mark} {stamp:<23}  {(e.host or '-')[:14]:<14}  {(e.service or '-')[:16]:<16}  "
                     f"{(e.level or '-'):<8}  {(e.request_id or '-'):<40}  {_flat(e.message, width)}")
        if e.error_type and (e.stack_trace or e.error_type not in (e.message or "")):
            lines.append(f"{'':<3}{'':<23}  {'':<14}  {'':<16}  {'':<8}  {'':<40}  -> "
                         f"{e.error_type}: {_flat(e.error_message, width)}")
    lines.append("")
    if cause:
        lines.append(f"root cause: {cause['component']} -- {cause['reason']}")
        if cause.get("raised_in"):
            lines.append(f"            raised in {cause['raised_in']}")
    else:
        lines.append("root cause: none found (no error in the traced records)")
    return "\n".join(lines) + "\n"
