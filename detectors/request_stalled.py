"""request_stalled (seed 001, method step 5): accepted but never processed.

An API accepted a request that starts work in other services (nova ``POST
/servers`` answered 202, a server action such as migrate/resize/live-migrate,
a volume attach, cinder ``POST /volumes`` ...) and no conductor/scheduler/
compute record (cinder-scheduler/volume for cinder) of that request -- same
request id or global request id -- followed within ``timeout`` seconds. The
message queue or a worker service is the likely fault.

The absence rule: absence is only judged against evidence that time moved on
elsewhere -- the event watermark, the highest timestamp of the events *fed*
to the detector. ``advance(now)`` never moves the absence clock beyond it (a
timer is no evidence that anything else was logged). At end of input,
``flush()`` emits nothing and drops what was pending: a file that simply ends
is never an incident. The detector also needs evidence that the logs of the
workers that handle this API's requests are in the input: the workers picked
up at least one accepted request of the same family (nova, cinder) before,
and their last record (for any request) is less than ``horizon`` seconds older
than the accepted request -- otherwise logs of the API alone, or of unrelated
hosts, would make every request "stalled". On a partial collection (some
compute hosts missing) a request scheduled to a missing host still looks
stalled: collect all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import texts
from .base import Detector
from .incident import MAX_LIST, Incident, evidence_of
from .model import Event
from .store import KeyedStore, TrackedStore
from .topology import ACTION_LINE, WORKERS, accepted_operation, worker_family


TEXTS = texts.load("request_stalled")  # detectors/texts/request_stalled.toml


@dataclass(frozen=True)
class RequestStalledConfig:
    timeout: float = 120.0       # seconds an accepted request may wait for its first worker record
    horizon: float = 3600.0      # the workers' logs count as present if they logged this recently
    max_pending: int = 50_000    # accepted requests waiting at once
    max_recent: int = 20_000     # request ids remembered as picked up / fired


class RequestStalled(Detector):
    """request_stalled: accepted but never processed. See the module docstring
    for the absence rule (event watermark only; nothing at end of input)."""

    name = "request_stalled"
    quiet_period = 900.0

    def __init__(self, config: RequestStalledConfig = RequestStalledConfig()) -> None:
        super().__init__()
        self.config = config
        self.timeout = config.timeout
        self.horizon = config.horizon
        self.max_pending = config.max_pending
        self.max_recent = config.max_recent
        self.wm: float | None = None
        # request id -> [accepted ts, family, operation, evidence item, resource id, global id]
        self.pending: KeyedStore[str, list] = KeyedStore(self.max_pending)
        self.alias: dict[str, str] = {}                    # global id -> pending request id
        self.actions: KeyedStore[str, str] = KeyedStore(self.max_recent)  # request id -> action (API DEBUG)
        self.recent: KeyedStore[str, float] = KeyedStore(self.max_recent)  # ids the workers logged lately
        self.worker_seen: dict[str, float] = {}            # family -> last worker record ts
        self.picked: dict[str, int] = {}                   # family -> accepted requests picked up
        self.stalled: KeyedStore[str, tuple] = KeyedStore(self.max_recent)  # fired request id -> incident key

    # -- feeding ---------------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        if ev.kind == "unparsed":
            return []
        out: list[dict] = []
        ts = ev.ts
        family = worker_family(ev)
        rid, gid = ev.request_id, ev.global_request_id
        if family is not None:
            if ts is not None and ts > self.worker_seen.get(family, float("-inf")):
                self.worker_seen[family] = ts
            if rid or gid:
                self._picked_up(family, rid, gid, ts, out)
        elif rid and ev.status_code is not None and ev.http_method == "POST":
            self._accepted(ev, out)
        elif rid and ev.level == "DEBUG" and "Action: '" in (ev.message or ""):
            m = ACTION_LINE.search(ev.message)
            if m:
                self.actions.put(rid, m.group(1))
        if ts is not None and (self.wm is None or ts > self.wm):
            self.wm = ts
            self._judge(out)
        return out

    def _picked_up(self, family: str, rid: str | None, gid: str | None, ts: float | None,
                   out: list[dict]) -> None:
        for i in (rid, gid):
            if not i:
                continue
            key = i if i in self.pending else self.alias.get(i)
            if key is not None and key in self.pending:
                self._drop(key)
                self.picked[family] = self.picked.get(family, 0) + 1
            fired = self.stalled.get(i)
            if fired is not None:              # picked up after the incident fired
                inc = self.book.open.get(fired)
                if inc is not None:
                    inc.details["picked_up_late"] = inc.details.get("picked_up_late", 0) + 1
                    out.append(inc.to_doc())
                del self.stalled[i]
            self.recent.put(i, ts if ts is not None else (self.wm or 0.0))

    def _accepted(self, ev: Event, out: list[dict]) -> None:
        rid = ev.request_id
        op = accepted_operation(ev.http_method, ev.url_path, ev.status_code, self.actions.pop(rid, None))
        if op is None or ev.ts is None:
            return
        ts = ev.ts
        gid = ev.global_request_id
        for i in (rid, gid):                   # the workers were faster than the access line
            seen = self.recent.get(i) if i else None
            if seen is not None and seen >= ts - self.timeout:
                self.picked[op[0]] = self.picked.get(op[0], 0) + 1
                return
        if rid in self.pending:
            return
        family, operation, resource = op
        if gid and gid != rid:
            self.alias[gid] = rid
        # past max_pending the oldest are dropped: never judged, no evidence
        for key, item in self.pending.put(rid, [ts, family, operation, evidence_of(ev), resource, gid]):
            self._unalias(key, item)

    def _drop(self, key: str) -> list:
        item = self.pending.pop(key)
        self._unalias(key, item)
        return item

    def _unalias(self, key: str, item: list) -> None:
        gid = item[5]
        if gid and self.alias.get(gid) == key:
            del self.alias[gid]

    def _judge(self, out: list[dict]) -> None:
        """Pending requests whose deadline the event watermark has passed."""
        wm = self.wm
        while self.pending:
            key, item = self.pending.oldest()
            if item[0] + self.timeout > wm:
                break
            self._drop(key)
            ts, family = item[0], item[1]
            if self.worker_seen.get(family, float("-inf")) < ts - self.horizon or not self.picked.get(family):
                continue                       # these workers' logs are not in the input: cannot judge
            self._fire(key, item, out)

    def _fire(self, rid: str, item: list, out: list[dict]) -> None:
        ts, family, operation, evidence, resource, gid = item
        workers = "/".join(sorted(WORKERS[family]))
        api = f"{family}-api"
        key = ("request_stalled", family)
        inc = self.book.touch(key, ts, lambda: Incident(
            rule=f"request_stalled.{family}", type="request_stalled", key=key, window_start=ts,
            severity="error",
            title=f"{family} requests accepted but never picked up by {workers}",
            probable_cause=TEXTS["probable_cause"].format(api=api, workers=workers, timeout=self.timeout),
            remediation=TEXTS["remediation"][family]), out)
        inc.add_item(evidence, ts)
        if gid and gid not in inc.request_ids and len(inc.request_ids) < MAX_LIST:
            inc.request_ids.append(gid)
        if resource:
            kind = "instance" if family == "nova" else "volume"
            lst = inc.resources.setdefault(kind, [])
            if resource not in lst and len(lst) < MAX_LIST:
                lst.append(resource)
        d = inc.details
        d["timeout_seconds"] = self.timeout
        d["expected_services"] = sorted(WORKERS[family])
        ops = d.setdefault("operations", {})
        ops[operation] = ops.get(operation, 0) + 1
        d["waited_seconds"] = round(self.wm - ts, 3)
        inc.summary = (f"{inc.count} accepted request(s) ({', '.join(f'{k}: {v}' for k, v in ops.items())}) "
                       f"with no record from {workers} within {self.timeout:g} s while other services "
                       f"kept logging; last: {rid} at {evidence['@timestamp']}")
        self.stalled.put(rid, key)
        if gid:
            self.stalled.put(gid, key)
        out.append(inc.to_doc())

    # -- time --------------------------------------------------------------------
    def advance(self, now: float) -> list[dict]:
        """Resolve quiet incidents and expire small maps. Absence is never
        judged past the event watermark, whatever ``now`` says."""
        out = self.book.advance(now)
        limit = min(now, self.wm) if self.wm is not None else now
        while self.recent and self.recent.oldest()[1] < limit - max(self.timeout, 60.0):
            self.recent.pop_oldest()
        if out:
            open_keys = set(self.book.open)
            self.stalled.expire(lambda _r, k: k not in open_keys)
        return out

    def flush(self) -> list[dict]:
        """End of input: nothing is judged; pending requests are dropped."""
        self.pending.clear()
        self.alias.clear()
        return []

    # -- state -------------------------------------------------------------------
    def tracked_stores(self) -> dict:
        """Not ``pending``: the aliases are derived from it in ``restore``."""
        stores = super().tracked_stores()
        self.actions = TrackedStore.of(self.actions, check=True)
        self.recent = TrackedStore.of(self.recent, check=True)
        self.stalled = TrackedStore.of(self.stalled, list, tuple, check=True)
        stores.update(actions=self.actions, recent=self.recent, stalled=self.stalled)
        return stores

    def snapshot(self) -> dict:
        return {
            "incidents": self.book.snapshot(), "wm": self.wm,
            "pending": self.pending.snapshot(),
            "actions": self.actions.snapshot(), "recent": self.recent.snapshot(),
            "worker_seen": dict(self.worker_seen), "picked": dict(self.picked),
            "stalled": self.stalled.snapshot(list),
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.wm = state.get("wm")
        self.pending.restore(state.get("pending", []), list)
        self.alias = {v[5]: k for k, v in self.pending.items() if v[5] and v[5] != k}
        self.actions.restore(state.get("actions", []))
        self.recent.restore(state.get("recent", []))
        self.worker_seen = dict(state.get("worker_seen", {}))
        self.picked = dict(state.get("picked", {}))
        self.stalled.restore(state.get("stalled", []), tuple)
