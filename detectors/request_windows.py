"""Request windows: one summary per request, across services and hosts.

Events are grouped by ``global_request_id`` when present, else
``request_id``, into session windows: a window closes after ``gap``
seconds without an event of its request (event time), or when it would
grow longer than ``max_length`` (the next event then opens a new window).
A closed window yields a request summary (see
``schemas/request.schema.json``): the ids, first/last time, services and
hosts in order of first appearance, the API call, errors and exceptions,
the ids it mentions (downstream ``Request-ID: req-...``, instance, volume,
image), the outcome and the root-cause candidate.

The root-cause candidate is where the chain ends, as an operator finds it
(seed 001 "The method", seed 004): the deepest erroring service (API <
conductor/scheduler < compute/volume/agents) and the first exception it
logged (later errors of the same service are usually consequences: the
``BuildAbortException`` after ``VolumeNotCreated``). Then:

* if that exception was raised inside another project's library (the last
  traceback frame under ``site-packages/glanceclient``: seed 004), that
  library is the component;
* if a downstream window is linked -- the request id an error mentions
  (``Request-ID: req-...``), or a shared id of a kind the other project
  owns (a volume id in a cinder window, an image id in a glance window, a
  port id in a neutron window) -- and it has an error, that error is the
  root cause; if it has none but the exception blames its service
  (``VolumeNotCreated`` -> cinder-volume, seed 002), its last record is
  (the volume was still being created/downloaded);
* otherwise the exception's own component (``VolumeNotCreated`` ->
  cinder-volume, ``NoValidHost`` -> nova-scheduler, ...), else the service.

Memory is flat in the number of distinct request ids: windows close and are
freed, at most ``max_open`` stay open (the least recently active one is
evicted, its summary marked ``incomplete``), and the small indexes used for
linking (closed windows with errors or owned ids, owned id -> window) are
capped and expire. Pure: time only from the events and ``advance(now)``.
"""
from __future__ import annotations

import re

from .topology import (EXCEPTION_COMPONENT, GENERIC_PACKAGES, OWNER, PACKAGE_COMPONENT, WORKERS,
                       accepted_operation, depth, project_of)
from .incident import incident_id
from .model import Event
from .store import KeyedStore, TrackedStore

ERROR_LEVELS = frozenset(("ERROR", "CRITICAL", "FATAL", "TRACE"))
MAX_IDS = 20              # request ids, services, hosts, each kind of linked id
MAX_EXCEPTIONS = 10
MESSAGE_CHARS = 300
EXCEPTION_CHARS = 500
SWEEP_EVERY = 1.0         # seconds of event time between looks for idle windows in feed()
LINK_CACHE = 5_000        # closed windows remembered for linking
RES_INDEX = 20_000        # owned ids remembered for linking
SUMMARY_KINDS = ("instance", "volume", "image")

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_PKG = re.compile(r"(?:site|dist)-packages/([A-Za-z_]\w*)")
def raised_in(stack: str | None) -> tuple[str | None, str | None]:
    """(package, "path:line in func") of the frame that raised: the last
    traceback frame outside generic helper packages (six.reraise, excutils)."""
    if not stack or 'File "' not in stack:
        return None, None
    frames = _FRAME.findall(stack)
    if not frames:                                    # a truncated frame line: no place to name
        return None, None
    for path, line, func in reversed(frames):
        m = _PKG.search(path)
        pkg = m.group(1) if m else None
        if pkg in GENERIC_PACKAGES or (pkg is None and len(frames) > 1 and "/python" in path):
            continue                                  # helper or standard library frame
        short = path[m.start(1):] if m else path
        return pkg, f"{short}:{line} in {func}"
    path, line, func = frames[-1]
    return None, f"{path}:{line} in {func}"


def _flat(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def record_of(ev: Event, ts: float) -> dict:
    """The compact record a summary and a root cause are made of."""
    pkg = where = None
    if ev.stack_trace:
        pkg, where = raised_in(ev.stack_trace)
    return {
        "@timestamp": ev.timestamp, "ts": ts, "host": ev.host, "service": ev.service,
        "level": ev.level, "request_id": ev.request_id, "message": _flat(ev.message, MESSAGE_CHARS),
        "exception_type": ev.error_type,
        "exception_message": _flat(ev.error_message, EXCEPTION_CHARS) if ev.error_message else None,
        "raised_in": where, "package": pkg,
    }


def component_of(rec: dict) -> str:
    """The component a record's error points at (see the module docstring)."""
    pkg = rec.get("package")
    if pkg and pkg != project_of(rec.get("service")):
        return PACKAGE_COMPONENT.get(pkg, pkg)
    etype = (rec.get("exception_type") or "").rsplit(".", 1)[-1]
    return EXCEPTION_COMPONENT.get(etype) or rec.get("service") or "unknown"


def _add(lst: list, value, cap: int = MAX_IDS) -> None:
    if value and value not in lst and len(lst) < cap:
        lst.append(value)


class Window:
    """The open state of one request's session window (bounded)."""

    __slots__ = ("key", "first_ts", "first_time", "last_ts", "last_time", "request_ids", "global_id",
                 "services", "hosts", "api", "events", "errors", "exceptions", "linked", "errs", "last")

    def __init__(self, key: str, ts: float, stamp: str | None) -> None:
        self.key = key
        self.first_ts = self.last_ts = ts
        self.first_time = self.last_time = stamp
        self.request_ids: list[str] = []
        self.global_id: str | None = None
        self.services: list[str] = []
        self.hosts: list[str] = []
        self.api: dict | None = None
        self.events = 0
        self.errors = 0
        self.exceptions: list[dict] = []
        self.linked: dict[str, list] = {}
        self.errs: dict[str, dict] = {}      # service -> its first error record
        self.last = None                     # Event (hot path) or record (restored)

    def add(self, ev: Event, ts: float) -> None:
        self.events += 1
        if ts < self.first_ts:
            self.first_ts, self.first_time = ts, ev.timestamp
        if ts >= self.last_ts:
            self.last_ts, self.last_time, self.last = ts, ev.timestamp, ev
        elif self.last is None:
            self.last = ev
        rid = ev.request_id
        if rid and rid not in self.request_ids and len(self.request_ids) < MAX_IDS:
            self.request_ids.append(rid)
        if ev.global_request_id and self.global_id is None:
            self.global_id = ev.global_request_id
        svc = ev.service
        if svc and svc not in self.services and len(self.services) < MAX_IDS:
            self.services.append(svc)
        host = ev.host
        if host and host not in self.hosts and len(self.hosts) < MAX_IDS:
            self.hosts.append(host)
        status = ev.status_code
        if status is not None:
            self._api(ev)
        error = ev.level in ERROR_LEVELS or (status is not None and status >= 500)
        if error:
            self.errors += 1
            self._error(ev, ts)
        res = ev.resources
        if res:
            for kind, values in res.items():
                if kind in SUMMARY_KINDS or kind == "request" or kind in OWNER:
                    lst = self.linked.setdefault(kind, [])
                    for v in values:
                        _add(lst, v)
        if ev.instance_id:
            _add(self.linked.setdefault("instance", []), ev.instance_id)

    def _api(self, ev: Event) -> None:
        """The call that entered the chain: the first access line, replaced by
        one of the first service's (with global request ids a downstream
        service's access line can come before the entry API's own)."""
        api = self.api
        if api is None or (api["service"] != ev.service and ev.service == self.services[0]):
            self.api = {"method": ev.http_method, "path": ev.url_path, "status": ev.status_code,
                        "service": ev.service, "host": ev.host}
        elif api["method"] is None and ev.http_method and ev.url_path == api["path"]:
            api["method"] = ev.http_method

    def _error(self, ev: Event, ts: float) -> None:
        rec = None
        svc = ev.service or "unknown"
        if ev.error_type:
            rec = record_of(ev, ts)
            if len(self.exceptions) < MAX_EXCEPTIONS and not any(
                    x["type"] == rec["exception_type"] and x["message"] == rec["exception_message"]
                    for x in self.exceptions):
                self.exceptions.append({"type": rec["exception_type"], "message": rec["exception_message"],
                                        "service": ev.service, "host": ev.host, "@timestamp": ev.timestamp})
        have = self.errs.get(svc)
        if have is None and len(self.errs) < MAX_IDS:
            self.errs[svc] = rec or record_of(ev, ts)
        elif have is not None and have["exception_type"] is None and ev.error_type:
            self.errs[svc] = rec

    # -- conclusions --------------------------------------------------------------
    def candidate(self) -> dict | None:
        """The deepest erroring service's first error (one with an exception
        preferred); ties go to the service that erred last."""
        recs = list(self.errs.values())
        if not recs:
            return None
        typed = [r for r in recs if r["exception_type"]]
        recs = typed or recs
        return max(recs, key=lambda r: (depth(r["service"]), r["ts"]))

    def accepted(self) -> str | None:
        """The family whose workers this request's accepted API call waits for."""
        api = self.api
        if api is None:
            return None
        op = accepted_operation(api["method"], api["path"], api["status"])
        return op[0] if op else None

    def last_record(self) -> dict:
        last = self.last
        return last if isinstance(last, dict) or last is None else record_of(last, self.last_ts)

    def family(self) -> str | None:
        return project_of(self.services[0]) if self.services else None

    # -- state ----------------------------------------------------------------------
    def to_state(self) -> dict:
        return {"key": self.key, "first_ts": self.first_ts, "first_time": self.first_time,
                "last_ts": self.last_ts, "last_time": self.last_time, "request_ids": self.request_ids,
                "global_id": self.global_id, "services": self.services, "hosts": self.hosts,
                "api": self.api, "events": self.events, "errors": self.errors,
                "exceptions": self.exceptions, "linked": self.linked, "errs": self.errs,
                "last": self.last_record()}

    @classmethod
    def from_state(cls, st: dict) -> "Window":
        w = cls(st["key"], st["first_ts"], st["first_time"])
        for name in ("last_ts", "last_time", "global_id", "api", "events", "errors", "last"):
            setattr(w, name, st[name])
        w.request_ids, w.services, w.hosts = list(st["request_ids"]), list(st["services"]), list(st["hosts"])
        w.exceptions = list(st["exceptions"])
        w.linked = {k: list(v) for k, v in st["linked"].items()}
        w.errs = dict(st["errs"])
        return w


def _link_info(w: Window) -> dict:
    return {"key": w.key, "first_ts": w.first_ts, "last_ts": w.last_ts, "services": list(w.services),
            "family": w.family(), "err": w.candidate(), "last": w.last_record()}


def _short(rec: dict) -> str:
    if rec.get("exception_type"):
        return f"{rec['exception_type']}: {_flat(rec.get('exception_message'), 200)}"
    return _flat(rec.get("message"), 200)


def _cause(rec: dict, *, component: str | None = None, via: str | None = None,
           reason: str | None = None) -> dict:
    comp = component or component_of(rec)
    if reason is None:
        reason = f"{rec['service']} on {rec['host']}: {_short(rec)}"
        pkg = rec.get("package")
        if pkg and pkg != project_of(rec.get("service")):
            reason += f" -- raised inside {pkg} ({rec['raised_in']})"
        elif comp != rec.get("service"):
            reason += f" -- points at {comp}"
        if via:
            reason += f" (linked by {via})"
    return {"component": comp, "service": rec.get("service"), "host": rec.get("host"),
            "@timestamp": rec.get("@timestamp"), "request_id": rec.get("request_id"),
            "level": rec.get("level"), "message": rec.get("message") or "",
            "exception_type": rec.get("exception_type"), "exception_message": rec.get("exception_message"),
            "raised_in": rec.get("raised_in"), "via": via, "reason": reason}


class RequestWindows:
    """Session windows per request id; see the module docstring.

    ``feed(ev)``, ``advance(now)`` and ``flush()`` return the summaries of the
    windows they closed; ``snapshot()``/``restore()`` carry the open windows
    and the link indexes (JSON-safe).
    """

    def __init__(self, gap: float = 120.0, max_length: float = 3600.0, max_open: int = 100_000) -> None:
        self.gap = gap
        self.max_length = max_length
        self.max_open = max_open
        self.open: KeyedStore[str, Window] = KeyedStore(max_open)     # least recently active first
        self.closed: KeyedStore[str, dict] = KeyedStore(LINK_CACHE)   # key -> link info (expiring)
        self.owned: KeyedStore[str, list] = KeyedStore(RES_INDEX)     # owned id -> window keys
        self.wm: float | None = None
        self._sweep_at = float("-inf")      # next watermark at which idle windows are looked for

    def tracked_stores(self) -> dict[str, TrackedStore]:
        """Save the windows and link indexes entry by entry from now on: they leave
        ``snapshot()``; the stores, by name, for the caller to save."""
        self.open = TrackedStore.of(self.open, Window.to_state, Window.from_state)
        self.closed = TrackedStore.of(self.closed)
        self.owned = TrackedStore.of(self.owned, decode=list)
        return {"open": self.open, "closed": self.closed, "owned": self.owned}

    # -- feeding --------------------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        out: list[dict] = []
        ts = ev.ts
        if ts is not None and (self.wm is None or ts > self.wm):
            self.wm = ts
        key = ev.global_request_id or ev.request_id
        if key is not None and ev.kind != "unparsed":
            if ts is None:
                ts = self.wm if self.wm is not None else 0.0
            w = self.open.get(key)
            if w is not None:
                if ts - w.last_ts > self.gap:
                    out.append(self._close(key, "gap"))
                    w = None
                elif ts - w.first_ts > self.max_length:
                    out.append(self._close(key, "max_length"))
                    w = None
                else:
                    self.open.touch(key)
            if w is None:
                w = Window(key, ts, ev.timestamp)
                for old_key, old in self.open.put(key, w):
                    out.append(self._summary(old_key, old, "evicted"))
            w.add(ev, ts)
            if ev.resources:
                self._own(ev, key)
        if self.wm is not None and self.wm >= self._sweep_at:
            self._sweep(self.wm, out)
        return out

    def _own(self, ev: Event, key: str) -> None:
        project = project_of(ev.service)
        for kind, owner in OWNER.items():
            if owner != project:
                continue
            for rid in ev.resources.get(kind, ())[:5]:
                keys = self.owned.get(rid)
                if keys is None:
                    self.owned.put(rid, [key])
                else:
                    self.owned.touch(rid)
                    if key not in keys:
                        keys.append(key)
                        del keys[:-4]

    def _sweep(self, now: float, out: list[dict]) -> None:
        """Close the windows idle for longer than ``gap`` (the least recently
        active come first); from ``feed`` at most once per second of event time."""
        self._sweep_at = now + SWEEP_EVERY
        limit = now - self.gap
        while self.open:
            key, w = self.open.oldest()
            if w.last_ts >= limit:
                break
            out.append(self._close(key, "gap"))

    def advance(self, now: float) -> list[dict]:
        """Close the windows idle for ``gap`` at ``now``; expire link info."""
        out: list[dict] = []
        self._sweep(now, out)
        limit = now - self.max_length
        while self.closed and self.closed.oldest()[1]["last_ts"] < limit:
            self.closed.pop_oldest()
        return out

    def flush(self) -> list[dict]:
        """End of input: close every open window."""
        out: list[dict] = []
        while self.open:
            out.append(self._close(self.open.oldest()[0], "end_of_input"))
        return out

    # -- closing ----------------------------------------------------------------------
    def _close(self, key: str, closed_by: str) -> dict:
        return self._summary(key, self.open.pop(key), closed_by)

    def _summary(self, key: str, w: Window, closed_by: str) -> dict:
        accepted = w.accepted()
        waiting = accepted is not None and not (WORKERS[accepted] & set(w.services))
        if w.errors:
            outcome = "error"
        elif closed_by in ("evicted", "max_length") or waiting:
            outcome = "incomplete"
        else:
            outcome = "ok"
        root = None
        if outcome == "error":
            root = self._root_cause(w)
        elif waiting and w.api is not None:
            workers = "/".join(sorted(WORKERS[accepted]))
            rec = w.last_record()
            root = _cause(rec, component=rec.get("service"), reason=(
                f"{w.api['service']} accepted {w.api['method']} {w.api['path']} ({w.api['status']}) but no "
                f"record of the request from {workers} followed: the chain ends at {rec.get('service')}"))
        linked = {"request_ids": list(w.linked.get("request", ()))}
        for kind in SUMMARY_KINDS:
            linked[kind] = list(w.linked.get(kind, ()))
        doc = {
            "id": incident_id("request", (key,), w.first_ts),
            "key": key,
            "request_ids": w.request_ids,
            "global_request_id": w.global_id,
            "first_seen": w.first_time,
            "last_seen": w.last_time,
            "duration_seconds": round(w.last_ts - w.first_ts, 3),
            "services": w.services,
            "hosts": w.hosts,
            "api": w.api,
            "events": w.events,
            "errors": w.errors,
            "exceptions": w.exceptions,
            "linked": linked,
            "outcome": outcome,
            "closed_by": closed_by,
            "root_cause": root,
        }
        if w.errors or any(k in w.linked for k in OWNER):
            self.closed.put(key, _link_info(w))
        return doc

    def _info(self, key: str) -> dict | None:
        w = self.open.get(key)
        if w is not None:
            return _link_info(w)
        return self.closed.get(key)

    def _links(self, w: Window) -> list[tuple[str, dict]]:
        """Downstream windows: named by request id, or sharing an id their project owns."""
        out: list[tuple[str, dict]] = []
        seen = {w.key}
        for rid in w.linked.get("request", ()):
            info = self._info(rid) if rid not in seen else None
            if info is not None:
                seen.add(rid)
                out.append((f"request_id {rid}", info))
        family = w.family()
        for kind, owner in OWNER.items():
            if owner == family:
                continue
            for rid in w.linked.get(kind, ())[:5]:
                for k in self.owned.get(rid, ()):
                    info = self._info(k) if k not in seen else None
                    if info is not None and info["family"] == owner:
                        seen.add(k)
                        out.append((f"{kind} {rid}", info))
        return out

    def _root_cause(self, w: Window) -> dict | None:
        own = w.candidate()
        links = self._links(w)
        for via, info in links:
            if info["err"] is not None:
                return _cause(info["err"], via=via)
        if own is None:
            return None
        comp = component_of(own)
        if comp != own.get("service"):
            for via, info in links:
                if comp in info["services"]:
                    last = info["last"]
                    reason = (f"{own['service']} on {own['host']}: {_short(own)}; {comp}'s last record "
                              f"for it, at {last.get('@timestamp')}, shows no error: "
                              f"\"{_flat(last.get('message'), 160)}\" (linked by {via})")
                    return _cause(last, component=comp, via=via, reason=reason)
        return _cause(own, component=comp)

    # -- state ----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The state as JSON (tracked stores snapshot as empty: their entries are saved apart)."""
        return {"wm": self.wm, "open": [st for _k, st in self.open.snapshot(Window.to_state)],
                "closed": self.closed.snapshot(), "owned": self.owned.snapshot(),
                "sweep_at": None if self._sweep_at == float("-inf") else self._sweep_at}

    def restore(self, state: dict) -> None:
        self.wm = state.get("wm")
        sweep_at = state.get("sweep_at")
        self._sweep_at = float("-inf") if sweep_at is None else sweep_at
        self.open.restore([(st["key"], st) for st in state.get("open", [])], Window.from_state)
        self.closed.restore(state.get("closed", []))
        self.owned.restore(state.get("owned", []), list)
