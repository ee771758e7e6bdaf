"""Worker self-metrics: counters per stage, consumer lag, open incidents; Prometheus text
exposition and a one-line summary for the periodic log line."""
from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from datetime import datetime, timezone
from typing import Iterable, Mapping

MAX_TRACKED_INCIDENTS = 10000     # open incidents kept for the gauges (the oldest updated go first)
MAX_RESOLVED_REMEMBERED = 10000   # resolved ids kept so a late, older "open" version cannot reopen
MAX_INCIDENT_SERIES = 2000        # label sets kept at 0 after their incidents resolved


def _label(value) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _incident_version(doc: Mapping) -> tuple:
    """Orders the versions of one incident (as the notifier does): later last_seen, then resolved
    after open, then a higher count."""
    try:
        dt = datetime.fromisoformat(doc["last_seen"])
        seen = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    except (KeyError, TypeError, ValueError):
        seen = 0.0
    count = doc.get("count") if isinstance(doc.get("count"), int) else 0
    return (seen, 1 if doc.get("status") == "resolved" else 0, count)


class Metrics:
    def __init__(self) -> None:
        self.event_time: dict[tuple[str, str], float] = {}
        self.counters: dict[tuple[str, str], int] = defaultdict(int)
        self.last_offset: dict[tuple[str, int], int] = {}
        self.lag: dict[tuple[str, int], int] = {}
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.started = time.time()
        # incident id -> (version, (type, severity, host)) of the open ones; resolved id -> version
        self.open_incidents: OrderedDict[str, tuple[tuple, tuple[str, str, str]]] = OrderedDict()
        self.resolved_incidents: OrderedDict[str, tuple] = OrderedDict()
        self.incident_series: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self.incidents_dropped = 0

    def incidents(self, docs: Iterable[Mapping]) -> None:
        """Take incident documents (upserts: the newest version of an id wins, an older one
        arriving later changes nothing) and keep the open ones for ``osloscope_open_incidents``.
        Bounded: past MAX_TRACKED_INCIDENTS open incidents the least recently updated is dropped
        (counted in ``osloscope_open_incidents_dropped_total``)."""
        for doc in docs:
            try:
                iid, status = doc["id"], doc["status"]
            except (KeyError, TypeError):
                continue
            v = _incident_version(doc)
            known = self.open_incidents.get(iid)
            old = known[0] if known else self.resolved_incidents.get(iid)
            if old is not None and v < old:
                continue
            if status == "resolved":
                self.open_incidents.pop(iid, None)
                self.resolved_incidents[iid] = v
                self.resolved_incidents.move_to_end(iid)
                while len(self.resolved_incidents) > MAX_RESOLVED_REMEMBERED:
                    self.resolved_incidents.popitem(last=False)
                continue
            hosts = doc.get("host") or ",".join(h for h in doc.get("hosts") or () if h)
            labels = (str(doc.get("type") or ""), str(doc.get("severity") or ""), str(hosts or ""))
            self.resolved_incidents.pop(iid, None)
            self.open_incidents[iid] = (v, labels)
            self.open_incidents.move_to_end(iid)
            self.incident_series[labels] = None
            self.incident_series.move_to_end(labels)
            while len(self.open_incidents) > MAX_TRACKED_INCIDENTS:
                self.open_incidents.popitem(last=False)
                self.incidents_dropped += 1
        if len(self.incident_series) > MAX_INCIDENT_SERIES:      # forget label sets now at 0
            live = {labels for _, labels in self.open_incidents.values()}
            for labels in [k for k in self.incident_series if k not in live]:
                if len(self.incident_series) <= MAX_INCIDENT_SERIES:
                    break
                del self.incident_series[labels]

    def observe_event_time(self, stage: str, stats: Mapping) -> None:
        """A stage's ``eventtime_stats()``: late, future, forced, held, late_max_seconds."""
        for name, value in stats.items():
            self.event_time[(stage, name)] = value

    def add(self, stage: str, name: str, n: int = 1) -> None:
        if n:
            self.counters[(stage, name)] += n

    def time(self, stage: str, phase: str, seconds: float) -> None:
        self.seconds[(stage, phase)] += seconds

    def observe_offsets(self, msgs) -> None:
        for m in msgs:
            key = (m.topic, m.partition)
            if m.offset > self.last_offset.get(key, -1):
                self.last_offset[key] = m.offset

    def update_lag(self, app) -> None:
        """Consumer lag = high watermark - (last processed offset + 1)."""
        try:
            consumer = app.consumer
        except Exception:
            return
        for tp in list(getattr(consumer, "assignment", lambda: set())()):
            try:
                high = consumer.highwater(tp)
            except Exception:
                continue
            if high is None:
                continue
            done = self.last_offset.get((tp.topic, tp.partition), -1) + 1
            self.lag[(tp.topic, tp.partition)] = max(0, high - done)

    def summary(self) -> str:
        parts = [f"{stage}.{name}={value}" for (stage, name), value in sorted(self.counters.items())]
        parts += [f"{stage}.{phase}_s={value:.1f}" for (stage, phase), value in sorted(self.seconds.items())]
        lag = sum(self.lag.values())
        parts.append(f"lag={lag}")
        return " ".join(parts)

    def prometheus(self) -> str:
        lines = ["# HELP osloscope_records_total Records counted per stage and kind.",
                 "# TYPE osloscope_records_total counter"]
        for (stage, name), value in sorted(self.counters.items()):
            lines.append(f'osloscope_records_total{{stage="{stage}",kind="{name}"}} {value}')
        lines += ["# HELP osloscope_consumer_lag Messages not yet processed per partition.",
                  "# TYPE osloscope_consumer_lag gauge"]
        for (topic, part), value in sorted(self.lag.items()):
            lines.append(f'osloscope_consumer_lag{{topic="{topic}",partition="{part}"}} {value}')
        lines += ["# HELP osloscope_stage_seconds_total Wall-clock seconds spent per stage and phase.",
                  "# TYPE osloscope_stage_seconds_total counter"]
        for (stage, phase), value in sorted(self.seconds.items()):
            lines.append(f'osloscope_stage_seconds_total{{stage="{stage}",phase="{phase}"}} {value:.3f}')
        lines += ["# HELP osloscope_open_incidents Open incidents by type, severity and host "
                  "(the incident's first host).",
                  "# TYPE osloscope_open_incidents gauge"]
        open_now = Counter(labels for _, labels in self.open_incidents.values())
        for labels in sorted(set(self.incident_series) | set(open_now)):
            type_, severity, host = (_label(x) for x in labels)
            lines.append(f'osloscope_open_incidents{{type="{type_}",severity="{severity}",'
                         f'host="{host}"}} {open_now.get(labels, 0)}')
        lines += ["# HELP osloscope_open_incidents_dropped_total Open incidents no longer tracked "
                  f"for osloscope_open_incidents (more than {MAX_TRACKED_INCIDENTS} open).",
                  "# TYPE osloscope_open_incidents_dropped_total counter",
                  f"osloscope_open_incidents_dropped_total {self.incidents_dropped}"]
        lines += ["# HELP osloscope_event_time Event time per stage (pipeline/streaming/eventtime.py): "
                  "late = events older than what was already released (counted, passed on), "
                  "future = timestamps beyond the wall clock plus worker.max_future, forced = released "
                  "early from a full buffer, held = waiting for their turn now, late_max_seconds = "
                  "the largest lateness seen.",
                  "# TYPE osloscope_event_time gauge"]
        for (stage, name), value in sorted(self.event_time.items()):
            lines.append(f'osloscope_event_time{{stage="{stage}",kind="{name}"}} {value}')
        lines += ["# HELP osloscope_uptime_seconds Seconds since the worker started.",
                  "# TYPE osloscope_uptime_seconds gauge",
                  f"osloscope_uptime_seconds {time.time() - self.started:.1f}"]
        return "\n".join(lines) + "\n"
