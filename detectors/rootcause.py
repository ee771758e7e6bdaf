"""Where the chain ends: request summaries lend their root-cause candidate
and linked ids to the incidents whose evidence carries their request ids.

An incident names the request ids of its evidence; the request window of
such a request (detectors/request_windows.py) knows which services the
request went through, which downstream requests it started and where the
first error of the deepest service was raised. ``RootCauses`` joins the two:
``details.root_cause`` (component, service, host, exception, reason) and
``details.linked`` (downstream request ids, instance/volume/image ids).

The engine (``detectors.engine``) owns it: ``osloscope analyze``, ``watch``
and the worker's correlate stage get the same joins. An incident without a
cause yet (open or resolved) is remembered, and re-emitted with the cause
once a window that explains one of its requests closes. Bounded: at most
``max_requests`` request ids and ``max_incidents`` incident documents.
"""
from __future__ import annotations

from .store import KeyedStore, TrackedStore

RC_FIELDS = ("component", "service", "host", "exception_type", "exception_message", "raised_in", "reason")


class RootCauses:
    def __init__(self, max_requests: int = 20_000, max_incidents: int = 2_000) -> None:
        self.by_request: KeyedStore[str, dict] = KeyedStore(max_requests)
        self.incidents: KeyedStore[str, dict] = KeyedStore(max_incidents)   # id -> doc still without a cause

    def tracked_stores(self) -> dict[str, TrackedStore]:
        """Save the stores entry by entry from now on (they leave ``snapshot()``); by name."""
        self.by_request = TrackedStore.of(self.by_request)
        self.incidents = TrackedStore.of(self.incidents)
        return {"by_request": self.by_request, "incidents": self.incidents}

    def learn(self, summaries: list[dict]) -> list[dict]:
        """Remember the causes of closed windows; the incidents they complete."""
        changed: dict[str, dict] = {}
        for s in summaries:
            if not s.get("root_cause"):
                continue
            info = {"request": s.get("key"), "root_cause": s["root_cause"], "linked": s.get("linked") or {}}
            for rid in s.get("request_ids") or ():
                self.by_request.put(rid, info)
            ids = set(s.get("request_ids") or ())
            for iid, doc in list(self.incidents.items()):
                if ids.intersection(doc.get("request_ids") or ()):
                    changed[iid] = self.attach(doc)
                    del self.incidents[iid]
        return list(changed.values())

    def attach(self, doc: dict) -> dict:
        """``doc`` with details.root_cause/linked from its first explained request."""
        for rid in doc.get("request_ids") or ():
            info = self.by_request.get(rid)
            if info is not None:
                details = dict(doc.get("details") or {})
                rc = info["root_cause"]
                details["root_cause"] = {k: rc.get(k) for k in RC_FIELDS}
                details["root_cause"]["request_id"] = info["request"]
                details["linked"] = info["linked"]
                return {**doc, "details": details}
        return doc

    def track(self, docs: list[dict]) -> list[dict]:
        """Attach what is known; remember the incidents still without a cause."""
        out = []
        for doc in docs:
            doc = self.attach(doc)
            if "root_cause" in doc["details"]:
                self.incidents.pop(doc["id"], None)
            else:
                self.incidents.put(doc["id"], doc)
            out.append(doc)
        return out

    def snapshot(self) -> dict:
        return {"by_request": self.by_request.snapshot(), "incidents": self.incidents.snapshot()}

    def restore(self, state: dict) -> None:
        self.by_request.restore(state.get("by_request", []))
        self.incidents.restore(state.get("incidents", []))
