"""Absence detectors: something that should have been logged was not.

* ``request_stalled`` (seed 001, method step 5): an API accepted a request
  that starts work in other services (nova ``POST /servers`` answered 202,
  a server action such as migrate/resize/live-migrate, a volume attach,
  cinder ``POST /volumes`` ...) and no conductor/scheduler/compute record
  (cinder-scheduler/volume for cinder) of that request -- same request id or
  global request id -- followed within ``timeout`` seconds. The message
  queue or a worker service is the likely fault.
* ``service_silent`` (seed 001 step 6, S15): a (host, service) stream that
  logged steadily stops for longer than ``factor`` times its usual gap
  (the 90th percentile of its recent gaps between bursts -- records less
  than ``burst_gap`` apart form one burst, and a stream that never pauses
  records a gap of ``burst_gap`` per ten ``burst_gap`` of activity -- at
  least ``floor`` seconds), while the rest of the fleet keeps logging. It
  resolves when the stream speaks again.

The absence rule. Absence is only judged against evidence that time moved
on elsewhere: the event watermark -- the highest timestamp of the events
*fed* to the detector, i.e. records other streams wrote after the silence
began. ``advance(now)`` never moves the absence clock beyond that watermark
(a timer, or the idle clock of ``watch`` and the worker, is no evidence that
anything else was logged), and a fleet-wide gap in the events (every stream
quiet for longer than ``floor``) restarts every silence clock. At end of
input, ``flush()`` emits nothing and drops what was pending: a file that
simply ends is never an incident. ``request_stalled`` also needs evidence
that the logs of the workers that handle this API's requests are in the
input: the workers picked up at least one accepted request of the same
family (nova, cinder) before, and their last record (for any request) is
less than ``horizon`` seconds older than the accepted request -- otherwise
logs of the API alone, or of unrelated hosts, would make every request
"stalled". On a partial collection (some compute hosts missing) a request
scheduled to a missing host still looks stalled: collect all of them.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque

from .base import Detector
from .incident import MAX_LIST, Incident, evidence_of
from .model import UUID, Event

# -- which API calls start work elsewhere -------------------------------------
_PROJECT = r"(?:/[0-9a-fA-F]{32}|/[0-9a-fA-F-]{36})?"
NOVA_SERVERS = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/?$")
NOVA_ACTION = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/(" + UUID + r")/action/?$")
NOVA_ATTACH = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/(" + UUID +
                         r")/os-volume_attachments/?$")
CINDER_VOLUMES = re.compile(r"^(?:/volume)?/v[23]" + _PROJECT + r"/volumes/?$")
CINDER_ACTION = re.compile(r"^(?:/volume)?/v[23]" + _PROJECT + r"/volumes/(" + UUID + r")/action/?$")
# the API's DEBUG line naming the action of a POST .../action request
ACTION_LINE = re.compile(r"Action: '(?:action|create)'.*?body: \{\s*\"([\w-]+)\"", re.S)

NOVA_ACTIONS = {
    "migrate": "migrate server", "os-migrateLive": "live-migrate server",
    "resize": "resize server", "rebuild": "rebuild server", "evacuate": "evacuate server",
    "unshelve": "unshelve server",
}
CINDER_ACTIONS = {"os-attach": "attach volume", "os-extend": "extend volume",
                  "os-migrate_volume": "migrate volume", "os-retype": "retype volume"}

WORKERS = {
    "nova": frozenset(("nova-conductor", "nova-scheduler", "nova-compute")),
    "cinder": frozenset(("cinder-scheduler", "cinder-volume")),
}
# loggers of API-side modules: a record of theirs is not the worker's
API_LOGGERS = ("nova.api", "nova.osapi_compute", "nova.compute.api", "cinder.api", "cinder.volume.api",
               "eventlet.wsgi", "keystonemiddleware")


def accepted_operation(method: str | None, path: str | None, status: int | None,
                       action: str | None = None) -> tuple[str, str, str | None] | None:
    """``(family, operation, resource id)`` when this API call was accepted
    and starts work in other services; None otherwise.

    ``action`` is the body's action name of a ``POST .../action`` (access
    lines carry no body; the API's DEBUG ``Action: 'action' ... body:`` line
    names it). Without it, server/volume actions are not judged.
    """
    if method != "POST" or not path or status is None:
        return None
    if status == 202:
        if NOVA_SERVERS.match(path):
            return "nova", "create server", None
        m = NOVA_ACTION.match(path)
        if m:
            op = NOVA_ACTIONS.get(action or "")
            return ("nova", op, m.group(1).lower()) if op else None
        if CINDER_VOLUMES.match(path):
            return "cinder", "create volume", None
        m = CINDER_ACTION.match(path)
        if m:
            op = CINDER_ACTIONS.get(action or "")
            return ("cinder", op, m.group(1).lower()) if op else None
    if status in (200, 202):
        m = NOVA_ATTACH.match(path)
        if m:
            return "nova", "attach volume", m.group(1).lower()
    return None


def worker_family(ev: Event) -> str | None:
    """The family whose worker service wrote ``ev`` (nova/cinder), if any."""
    svc = ev.service
    if not svc:
        return None
    for family, names in WORKERS.items():
        if svc in names:
            if ev.logger and ev.logger.startswith(API_LOGGERS):
                return None
            return family
    return None


STALL_CAUSE = (
    "The {api} accepted the request and handed it to the message queue, but no record of the "
    "request from {workers} followed within {timeout:g} s while the other services kept logging: "
    "RabbitMQ is down, partitioned or not delivering (queues growing, consumers gone), or "
    "{workers} are stuck or not consuming (seed 001, step 5)."
)
STALL_FIX = {
    "nova": (
        "Check RabbitMQ: `rabbitmqctl cluster_status`, `rabbitmqctl list_queues name messages "
        "consumers` (conductor/scheduler/compute queues with messages and 0 consumers); check "
        "`openstack compute service list` and that nova-conductor and nova-scheduler run "
        "(`systemctl status openstack-nova-conductor openstack-nova-scheduler`) and their logs for "
        "AMQP errors (Connection refused, MessagingTimeout); compare transport_url in nova.conf on "
        "the API and worker hosts; restart conductor/scheduler once RabbitMQ is healthy, then "
        "retry or delete the stuck instances (`openstack server list --status BUILD`)."
    ),
    "cinder": (
        "Check RabbitMQ: `rabbitmqctl cluster_status`, `rabbitmqctl list_queues name messages "
        "consumers` (cinder-scheduler/cinder-volume queues with messages and 0 consumers); check "
        "`openstack volume service list` and that cinder-scheduler and cinder-volume run and their "
        "logs for AMQP errors; compare transport_url in cinder.conf on the API and volume hosts; "
        "restart them once RabbitMQ is healthy, then reset stuck volumes (`cinder reset-state`)."
    ),
}


class RequestStalled(Detector):
    """request_stalled: accepted but never processed. See the module docstring
    for the absence rule (event watermark only; nothing at end of input)."""

    name = "request_stalled"
    quiet_period = 900.0

    def __init__(self, timeout: float = 120.0, *, horizon: float = 3600.0,
                 max_pending: int = 50_000, max_recent: int = 20_000) -> None:
        super().__init__()
        self.timeout = timeout
        self.horizon = horizon
        self.max_pending = max_pending
        self.max_recent = max_recent
        self.wm: float | None = None
        # request id -> [accepted ts, family, operation, evidence item, resource id, global id]
        self.pending: OrderedDict[str, list] = OrderedDict()
        self.alias: dict[str, str] = {}                    # global id -> pending request id
        self.actions: OrderedDict[str, str] = OrderedDict()  # request id -> action name (API DEBUG)
        self.recent: OrderedDict[str, float] = OrderedDict()  # ids the workers logged lately
        self.worker_seen: dict[str, float] = {}            # family -> last worker record ts
        self.picked: dict[str, int] = {}                   # family -> accepted requests picked up
        self.stalled: OrderedDict[str, tuple] = OrderedDict()  # fired request id -> incident key

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
                self.actions[rid] = m.group(1)
                while len(self.actions) > self.max_recent:
                    self.actions.popitem(last=False)
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
            self.recent[i] = ts if ts is not None else (self.wm or 0.0)
            self.recent.move_to_end(i)
        while len(self.recent) > self.max_recent:
            self.recent.popitem(last=False)

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
        self.pending[rid] = [ts, family, operation, evidence_of(ev), resource, gid]
        if gid and gid != rid:
            self.alias[gid] = rid
        while len(self.pending) > self.max_pending:      # oldest first: never judged, no evidence
            self._drop(next(iter(self.pending)))

    def _drop(self, key: str) -> list:
        item = self.pending.pop(key)
        gid = item[5]
        if gid and self.alias.get(gid) == key:
            del self.alias[gid]
        return item

    def _judge(self, out: list[dict]) -> None:
        """Pending requests whose deadline the event watermark has passed."""
        wm = self.wm
        while self.pending:
            key, item = next(iter(self.pending.items()))
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
            probable_cause=STALL_CAUSE.format(api=api, workers=workers, timeout=self.timeout),
            remediation=STALL_FIX[family]), out)
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
        self.stalled[rid] = key
        if gid:
            self.stalled[gid] = key
        while len(self.stalled) > self.max_recent:
            self.stalled.popitem(last=False)
        out.append(inc.to_doc())

    # -- time --------------------------------------------------------------------
    def advance(self, now: float) -> list[dict]:
        """Resolve quiet incidents and expire small maps. Absence is never
        judged past the event watermark, whatever ``now`` says."""
        out = self.book.advance(now)
        limit = min(now, self.wm) if self.wm is not None else now
        while self.recent and next(iter(self.recent.values())) < limit - max(self.timeout, 60.0):
            self.recent.popitem(last=False)
        if out:
            open_keys = set(self.book.open)
            for r in [r for r, k in self.stalled.items() if k not in open_keys]:
                del self.stalled[r]
        return out

    def flush(self) -> list[dict]:
        """End of input: nothing is judged; pending requests are dropped."""
        self.pending.clear()
        self.alias.clear()
        return []

    # -- state -------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "incidents": self.book.snapshot(), "wm": self.wm,
            "pending": [[k, v] for k, v in self.pending.items()],
            "actions": list(self.actions.items()), "recent": list(self.recent.items()),
            "worker_seen": dict(self.worker_seen), "picked": dict(self.picked),
            "stalled": [[r, list(k)] for r, k in self.stalled.items()],
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.wm = state.get("wm")
        self.pending = OrderedDict((k, list(v)) for k, v in state.get("pending", []))
        self.alias = {v[5]: k for k, v in self.pending.items() if v[5] and v[5] != k}
        self.actions = OrderedDict((k, v) for k, v in state.get("actions", []))
        self.recent = OrderedDict((k, v) for k, v in state.get("recent", []))
        self.worker_seen = dict(state.get("worker_seen", {}))
        self.picked = dict(state.get("picked", {}))
        self.stalled = OrderedDict((r, tuple(k)) for r, k in state.get("stalled", []))


# -- silent services -------------------------------------------------------------
SILENT_CAUSE = (
    "{service} on {host} stopped writing to its log while the rest of the fleet kept logging: "
    "the process died or hangs (deadlock, blocked I/O, stuck eventlet hub, lost database or "
    "message-queue connection without reconnect), it writes to a log file that was rotated away "
    "or deleted, or the host itself is down. A silent nova-compute leaves the instances sent to "
    "it in task_state 'scheduling'/vm_state 'building' (S15)."
)
SILENT_FIX = (
    "On {host}: `systemctl status {service}` (or the container's state), the last lines of its "
    "log before the silence, `ps -o pid,stat,etime,cmd` of the process (D state = blocked I/O), "
    "free space under /var/log and whether the open log file still exists "
    "(`ls -l /proc/<pid>/fd | grep deleted`); `openstack compute service list` / `openstack "
    "volume service list` / `openstack network agent list` show whether the service still "
    "reports (State down); restart it if it hangs; if the host does not answer, check it "
    "(ping, IPMI/BMC console)."
)


class _Stream:
    __slots__ = ("last_ts", "last", "gaps", "n", "mark")

    def __init__(self, ts: float, ev) -> None:
        self.last_ts = ts
        self.last = ev               # Event (hot path) or its evidence dict (after restore)
        self.gaps: deque = deque(maxlen=32)
        self.n = 0                   # gaps recorded (history length)
        self.mark = ts               # when the last gap was recorded


def _evidence(last) -> dict:
    return last if isinstance(last, dict) else evidence_of(last)


class ServiceSilent(Detector):
    """service_silent: a steady (host, service) stream fell silent. See the
    module docstring for the absence rule (event watermark only; a
    fleet-wide gap restarts the clocks; nothing at end of input)."""

    name = "service_silent"
    quiet_period = float("inf")          # resolves when the stream speaks, not by time

    def __init__(self, factor: float = 5.0, floor: float = 300.0, *, min_history: int = 20,
                 burst_gap: float = 1.0, check_every: float = 10.0, forget_after: float = 7 * 86400.0,
                 max_streams: int = 20_000) -> None:
        super().__init__()
        self.factor = factor
        self.floor = floor
        self.min_history = min_history
        self.burst_gap = burst_gap
        self.check_every = check_every
        self.forget_after = forget_after
        self.max_streams = max_streams
        self.streams: OrderedDict[tuple, _Stream] = OrderedDict()
        self.wm: float | None = None
        self.wm_time: str | None = None
        self.resume_ts: float | None = None     # first event after a fleet-wide gap
        self.last_check: float | None = None

    def usual_gap(self, s: _Stream) -> float:
        if not s.gaps:
            return 0.0
        g = sorted(s.gaps)
        return g[int(0.9 * (len(g) - 1))]

    def threshold(self, s: _Stream) -> float:
        return max(self.factor * self.usual_gap(s), self.floor)

    # -- feeding ---------------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        ts = ev.ts
        if ev.kind == "unparsed" or ts is None:
            return []
        out: list[dict] = []
        key = (ev.host or "unknown", ev.service or "unknown")
        s = self.streams.get(key)
        if s is None:
            s = self.streams[key] = _Stream(ts, ev)
            while len(self.streams) > self.max_streams:
                self._forget(next(iter(self.streams)))
        else:
            self.streams.move_to_end(key)
            if ts > s.last_ts:
                gap = ts - s.last_ts
                inc = self.book.open.get(key)
                if inc is not None:
                    self._resolve(key, inc, ev, gap, out)
                elif gap >= self.burst_gap:
                    s.gaps.append(gap)
                    s.n += 1
                    s.mark = ts
                elif ts - s.mark >= 10 * self.burst_gap:     # logs without pause: that is its rhythm
                    s.gaps.append(self.burst_gap)
                    s.n += 1
                    s.mark = ts
                s.last_ts = ts
                s.last = ev
        if self.wm is None or ts > self.wm:
            if self.wm is not None and ts - self.wm > self.floor:
                self.resume_ts = ts          # the whole fleet was quiet: no evidence for that time
            self.wm, self.wm_time = ts, ev.timestamp
            if self.last_check is None or ts - self.last_check >= self.check_every:
                self._check(ts, out)
        return out

    def _check(self, now: float, out: list[dict]) -> None:
        self.last_check = now
        resume = self.resume_ts if self.resume_ts is not None else float("-inf")
        stale = []
        for key, s in self.streams.items():
            if now - s.last_ts > self.forget_after:
                stale.append(key)
                continue
            if s.n < self.min_history or key in self.book.open:
                continue
            silent = now - max(s.last_ts, resume)
            if silent > self.threshold(s):
                self._fire(key, s, now, out)
        for key in stale:
            self._forget(key)

    def _fire(self, key: tuple, s: _Stream, now: float, out: list[dict]) -> None:
        host, service = key
        item = _evidence(s.last)
        usual = self.usual_gap(s)
        inc = Incident(rule="service_silent.stream", type="service_silent", key=key,
                       window_start=s.last_ts, severity="error",
                       title=f"{service} on {host} fell silent while the fleet keeps logging",
                       probable_cause=SILENT_CAUSE.format(host=host, service=service),
                       remediation=SILENT_FIX.format(host=host, service=service))
        inc.add_item(item, s.last_ts)
        inc.details.update(
            last_record_at=item["@timestamp"], detected_at=self.wm_time,
            silent_seconds=round(now - s.last_ts, 3), threshold_seconds=round(self.threshold(s), 3),
            usual_gap_seconds=round(usual, 3), history_gaps=s.n)
        inc.summary = (f"no record from {service} on {host} since {item['@timestamp']} "
                       f"({now - s.last_ts:.0f} s; usual gap {usual:.0f} s, threshold "
                       f"{self.threshold(s):.0f} s) while other streams kept logging")
        self.book.open[key] = inc
        out.append(inc.to_doc())

    def _resolve(self, key: tuple, inc: Incident, ev: Event, gap: float, out: list[dict]) -> None:
        del self.book.open[key]
        inc.add(ev, count=False)
        inc.status = "resolved"
        inc.details["silent_seconds"] = round(gap, 3)
        inc.details["resumed_at"] = ev.timestamp
        inc.summary = (f"{inc.service} on {inc.host} was silent for {gap:.0f} s "
                       f"({inc.details['last_record_at']} .. {ev.timestamp}); it logs again")
        out.append(inc.to_doc())

    def _forget(self, key: tuple) -> None:
        """Drop a stream gone for ``forget_after`` (or the least recent one
        when too many): its open incident is dropped without a new version."""
        self.streams.pop(key, None)
        self.book.open.pop(key, None)

    # -- time --------------------------------------------------------------------
    def advance(self, now: float) -> list[dict]:
        """Checks up to the event watermark only: ``now`` beyond it is no
        evidence that the fleet kept logging."""
        out: list[dict] = []
        if self.wm is not None:
            self._check(min(now, self.wm), out)
        return out

    def flush(self) -> list[dict]:
        """End of input: no absence is judged."""
        return []

    # -- state -------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "incidents": self.book.snapshot(), "wm": self.wm, "wm_time": self.wm_time,
            "resume_ts": self.resume_ts, "last_check": self.last_check,
            "streams": [[list(k), s.last_ts, _evidence(s.last), list(s.gaps), s.n, s.mark]
                        for k, s in self.streams.items()],
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.wm, self.wm_time = state.get("wm"), state.get("wm_time")
        self.resume_ts, self.last_check = state.get("resume_ts"), state.get("last_check")
        self.streams = OrderedDict()
        for key, last_ts, last, gaps, n, mark in state.get("streams", []):
            s = _Stream(last_ts, last)
            s.gaps.extend(gaps)
            s.n, s.mark = n, mark
            self.streams[tuple(key)] = s
