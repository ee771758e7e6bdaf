"""Where the chain ends: request summaries lend their root-cause candidate
and linked ids to the incidents whose evidence carries their request ids.

An incident names the request ids of its evidence; the request window of
such a request (detectors/request_windows.py) knows which services the
request went through, which downstream requests it started and where the
first error of the deepest service was raised. ``RootCauses`` joins the two:
``details.root_cause`` (component, service, host, exception, reason) and
``details.linked`` (downstream request ids, instance/volume/image ids).

Used the same way by ``osloscope analyze`` (one pass: the engine and the
request windows see the same events) and by the worker's correlate stage
(incidents re-emitted with the cause once the window has closed).
Bounded: at most ``max_requests`` request ids and ``max_incidents``
incident documents are remembered.
"""
from __future__ import annotations

from collections import OrderedDict

from detectors.request_windows import RequestWindows


class RootCauses:
    def __init__(self, max_requests: int = 20_000, max_incidents: int = 2_000) -> None:
        self.by_request: OrderedDict[str, dict] = OrderedDict()
        self.incidents: OrderedDict[str, dict] = OrderedDict()
        self.max_requests = max_requests
        self.max_incidents = max_incidents

    def learn(self, summaries: list[dict]) -> list[dict]:
        """Remember the causes of closed windows; the incidents they complete."""
        changed: dict[str, dict] = {}
        for s in summaries:
            if not s.get("root_cause"):
                continue
            info = {"request": s.get("key"), "root_cause": s["root_cause"], "linked": s.get("linked") or {}}
            for rid in s.get("request_ids") or ():
                self.by_request[rid] = info
                self.by_request.move_to_end(rid)
            while len(self.by_request) > self.max_requests:
                self.by_request.popitem(last=False)
            ids = set(s.get("request_ids") or ())
            for iid, doc in self.incidents.items():
                if ids.intersection(doc.get("request_ids") or ()) and "root_cause" not in doc["details"]:
                    self.incidents[iid] = changed[iid] = self.attach(doc)
        return list(changed.values())

    def attach(self, doc: dict) -> dict:
        """``doc`` with details.root_cause/linked from its first explained request."""
        for rid in doc.get("request_ids") or ():
            info = self.by_request.get(rid)
            if info is not None:
                details = dict(doc.get("details") or {})
                rc = info["root_cause"]
                details["root_cause"] = {k: rc.get(k) for k in ("component", "service", "host", "exception_type",
                                                                "exception_message", "raised_in", "reason")}
                details["root_cause"]["request_id"] = info["request"]
                details["linked"] = info["linked"]
                doc = {**doc, "details": details}
                break
        return doc

    def track(self, docs: list[dict]) -> list[dict]:
        """Attach what is known, remember open incidents for later causes."""
        out = []
        for doc in docs:
            doc = self.attach(doc)
            if doc.get("status") == "open":
                self.incidents[doc["id"]] = doc
                self.incidents.move_to_end(doc["id"])
                while len(self.incidents) > self.max_incidents:
                    self.incidents.popitem(last=False)
            else:
                self.incidents.pop(doc["id"], None)
            out.append(doc)
        return out


class EngineWithRequests:
    """An Engine stand-in for ``pipeline.local.analyze.analyze``: feeds the request
    windows with the same events and joins their causes into the incidents."""

    def __init__(self, engine, windows: RequestWindows | None = None) -> None:
        self.engine = engine
        self.windows = windows or RequestWindows()
        self.causes = RootCauses()
        self.summaries: list[dict] = []

    @property
    def detectors(self) -> list:
        return self.engine.detectors

    def feed(self, ev) -> list[dict]:
        docs = self.engine.feed(ev)
        closed = self.windows.feed(ev)
        out = self.causes.track(docs) if docs else []
        if closed:
            self.summaries.extend(closed)
            out.extend(self.causes.learn(closed))
        return out

    def finish(self, incidents: list[dict]) -> list[dict]:
        """End of input: close every window and complete the incidents."""
        closed = self.windows.flush()
        self.summaries.extend(closed)
        self.causes.learn(closed)
        return [self.causes.attach(doc) for doc in incidents]
