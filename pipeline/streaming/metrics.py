"""Worker self-metrics: counters per stage, consumer lag, open incidents, the stages' timers
and the Elasticsearch sink's latency; Prometheus text exposition and a one-line summary for
the periodic log line."""
from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from typing import Iterable, Mapping

from pipeline.alerting.grouping import position as incident_position

MAX_TRACKED_INCIDENTS = 10000     # open incidents kept for the gauges (the oldest updated go first)
MAX_RESOLVED_REMEMBERED = 10000   # resolved ids kept so a late, older "open" version cannot reopen
MAX_INCIDENT_SERIES = 2000        # label sets kept at 0 after their incidents resolved
# osloscope_lines_total is per host: a fleet has hundreds to a few thousand hosts, a few series
# each; per file would be ten times that (`osloscope account` gives the per-file view). Past
# this many hosts the rest are counted together as host="_other" (garbage host names in
# shipper envelopes must not grow the series without bound).
MAX_LINE_HOSTS = 2000
OTHER_HOSTS = "_other"


def _label(value) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def consumer_lag(consumer) -> dict[tuple[str, int], int]:
    """Lag of every partition ``consumer`` is assigned *now*: its high watermark (from the
    last fetch) minus the group's committed offset (0 if the group never committed one).

    ``consumer`` is faust's consumer: ``assignment()``, ``highwater(tp)`` and the committed
    offsets it keeps per assigned partition (read from Kafka when the partition is assigned,
    updated after each commit, dropped when it is revoked). A partition not fetched yet has
    no high watermark and is left out rather than guessed; partitions revoked are not
    assigned, so they are not reported."""
    committed = getattr(consumer, "_committed_offset", None)
    lag: dict[tuple[str, int], int] = {}
    try:
        assigned = list(consumer.assignment())
    except Exception:          # not started, or stopping
        return lag
    for tp in assigned:
        if tp.topic.endswith("__assignor-__leader"):      # faust's own bookkeeping topic
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        if high is None:
            continue
        done = committed.get(tp) if committed is not None else None
        lag[(tp.topic, tp.partition)] = max(0, high - (done or 0))
    return lag


class LineCounts:
    """Input lines per (outcome, host), for ``osloscope_lines_total``; at most
    ``max_hosts`` distinct hosts (later ones count as OTHER_HOSTS)."""

    def __init__(self, max_hosts: int = MAX_LINE_HOSTS) -> None:
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.hosts: set[str] = set()
        self.max_hosts = max_hosts

    def add(self, outcome: str, host: str | None, n: int = 1) -> None:
        if not n:
            return
        h = host or ""
        if h not in self.hosts:
            if len(self.hosts) >= self.max_hosts:
                h = OTHER_HOSTS
            else:
                self.hosts.add(h)
        self.counts[(outcome, h)] += n

    def total(self, outcome: str) -> int:
        return sum(n for (o, _h), n in self.counts.items() if o == outcome)


class Metrics:
    def __init__(self) -> None:
        self.event_time: dict[tuple[str, str], float] = {}
        self.counters: dict[tuple[str, str], int] = defaultdict(int)
        self.lag: dict[tuple[str, int], int] = {}
        self.ticks: dict[str, int] = defaultdict(int)            # timer -> runs completed
        self.tick_done: dict[str, float] = {}                     # timer -> monotonic end of the last run
        self.sink: dict = {}                                      # ElasticsearchSink.latency()
        # input lines: stage -> LineCounts (the parse stage's own, "correlate": indexing), and
        # stage -> {host: lines read but in no event or dead letter yet}
        self.lines: dict[str, LineCounts] = {}
        self.pending_lines: dict[str, dict[str, int]] = {}
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
            v = incident_position(doc)
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

    def update_lag(self, app) -> None:
        """The consumer lag of the partitions assigned now (``consumer_lag``); the
        partitions of an earlier assignment are forgotten."""
        try:
            consumer = app.consumer
        except Exception:
            self.lag = {}
            return
        self.lag = consumer_lag(consumer)

    def tick(self, timer: str, now: float) -> None:
        """Timer ``timer`` completed a run at monotonic time ``now``."""
        self.ticks[timer] += 1
        self.tick_done[timer] = now

    def observe_sink(self, latency: Mapping) -> None:
        """The sink's ``latency()``: requests by outcome, seconds histogram, in flight."""
        self.sink = dict(latency)

    def observe_lines(self, stage: str, counts: LineCounts, pending: Mapping[str, int] | None = None) -> None:
        """A stage's line counts (kept by reference) and, if given, its pending lines per host."""
        self.lines[stage] = counts
        if pending is not None:
            self.pending_lines[stage] = dict(pending)

    def indexed_lines(self, stage: str, actions: list[dict], rejected) -> None:
        """The input lines of the event documents in a bulk request: ``indexed`` when
        Elasticsearch acknowledged them, ``dead_letter`` when it refused them (``rejected``:
        the sink's Rejected items, dead-lettered by the caller). Incidents and request
        summaries carry no lines and are not counted."""
        counts = self.lines.get(stage)
        if counts is None:
            counts = self.lines[stage] = LineCounts()
        refused = {id(r.action) for r in rejected}
        for action in actions:
            src = action.get("_source")
            log_ = src.get("log") if isinstance(src, dict) else None
            n = log_.get("lines") if isinstance(log_, dict) else None
            if not isinstance(n, int) or not n:
                continue
            host = src.get("host")
            counts.add("dead_letter" if id(action) in refused else "indexed",
                       host.get("name") if isinstance(host, dict) else None, n)

    def summary(self) -> str:
        parts = [f"{stage}.{name}={value}" for (stage, name), value in sorted(self.counters.items())]
        parts += [f"{stage}.{phase}_s={value:.1f}" for (stage, phase), value in sorted(self.seconds.items())]
        lag = sum(self.lag.values())
        parts.append(f"lag={lag}")
        if self.sink:
            parts.append(f"es_inflight_s={self.sink.get('inflight_seconds', 0.0):.1f}")
        for stage, counts in sorted(self.lines.items()):
            outcomes = sorted({o for o, _h in counts.counts})
            parts += [f"{stage}.lines_{o}={counts.total(o)}" for o in outcomes]
        for stage, pending in sorted(self.pending_lines.items()):
            parts.append(f"{stage}.lines_pending={sum(pending.values())}")
        return " ".join(parts)

    def prometheus(self) -> str:
        lines = ["# HELP osloscope_records_total Records counted per stage and kind.",
                 "# TYPE osloscope_records_total counter"]
        for (stage, name), value in sorted(self.counters.items()):
            lines.append(f'osloscope_records_total{{stage="{stage}",kind="{name}"}} {value}')
        lines += ["# HELP osloscope_consumer_lag Messages after the group's committed offset, per "
                  "partition assigned to this worker now.",
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
        now = time.monotonic()
        lines += ["# HELP osloscope_timer_runs_total Runs completed per worker timer (each stage's "
                  "tick: idle flush, release of held events, incident resolution).",
                  "# TYPE osloscope_timer_runs_total counter"]
        for timer, n in sorted(self.ticks.items()):
            lines.append(f'osloscope_timer_runs_total{{timer="{_label(timer)}"}} {n}')
        lines += ["# HELP osloscope_timer_age_seconds Seconds since each timer last completed a run "
                  "(about its interval when healthy; growing: the timer is stuck).",
                  "# TYPE osloscope_timer_age_seconds gauge"]
        for timer, done in sorted(self.tick_done.items()):
            lines.append(f'osloscope_timer_age_seconds{{timer="{_label(timer)}"}} {now - done:.3f}')
        lines += self._sink_lines()
        lines += self._line_lines()
        lines += ["# HELP osloscope_uptime_seconds Seconds since the worker started.",
                  "# TYPE osloscope_uptime_seconds gauge",
                  f"osloscope_uptime_seconds {time.time() - self.started:.1f}"]
        return "\n".join(lines) + "\n"

    def _line_lines(self) -> list[str]:
        out = ["# HELP osloscope_lines_total Input lines by stage, outcome and host. parse: in = raw "
               "records read (a line, or a piece of a line over 1 MB), event = lines folded into the "
               "events passed on, dead_letter = lines in dead letters; correlate: indexed = lines of "
               "the events Elasticsearch acknowledged, dead_letter = lines of events it refused. Each "
               "line counts once, in the record that took its first byte. With nothing pending, "
               "parse in = event + dead_letter. Hosts past " + str(MAX_LINE_HOSTS) + " are counted "
               'as host="' + OTHER_HOSTS + '".',
               "# TYPE osloscope_lines_total counter"]
        for stage, counts in sorted(self.lines.items()):
            for (outcome, host), n in sorted(counts.counts.items()):
                out.append(f'osloscope_lines_total{{stage="{_label(stage)}",outcome="{_label(outcome)}",'
                           f'host="{_label(host)}"}} {n}')
        out += ["# HELP osloscope_lines_pending Lines a stage read that are in no event or dead letter "
                "yet (open records, events held for their turn), per host.",
                "# TYPE osloscope_lines_pending gauge"]
        for stage, pending in sorted(self.pending_lines.items()):
            for host, n in sorted(pending.items()):
                out.append(f'osloscope_lines_pending{{stage="{_label(stage)}",host="{_label(host)}"}} {n}')
        return out

    def _sink_lines(self) -> list[str]:
        s = self.sink
        if not s:
            return []
        sink = _label(s.get("sink", "elasticsearch"))
        lines = ["# HELP osloscope_sink_inflight_seconds Age of the oldest request in flight to the "
                 "sink (0: none); grows while the sink is frozen or overloaded.",
                 "# TYPE osloscope_sink_inflight_seconds gauge",
                 f'osloscope_sink_inflight_seconds{{sink="{sink}"}} {s.get("inflight_seconds", 0.0):.3f}',
                 "# HELP osloscope_sink_inflight_requests Requests in flight to the sink now.",
                 "# TYPE osloscope_sink_inflight_requests gauge",
                 f'osloscope_sink_inflight_requests{{sink="{sink}"}} {s.get("inflight", 0)}',
                 "# HELP osloscope_sink_requests_total Bulk requests to the sink by outcome (ok, error: "
                 "refused or unreachable, timeout: no answer within elasticsearch.request_timeout).",
                 "# TYPE osloscope_sink_requests_total counter"]
        for outcome, n in sorted((s.get("outcomes") or {}).items()):
            lines.append(f'osloscope_sink_requests_total{{sink="{sink}",outcome="{_label(outcome)}"}} {n}')
        lines += ["# HELP osloscope_sink_slow_requests_total Bulk requests that were in flight longer "
                  "than elasticsearch.slow_request seconds.",
                  "# TYPE osloscope_sink_slow_requests_total counter",
                  f'osloscope_sink_slow_requests_total{{sink="{sink}"}} {s.get("slow", 0)}',
                  "# HELP osloscope_sink_request_seconds Duration of the bulk requests to the sink.",
                  "# TYPE osloscope_sink_request_seconds histogram"]
        for bound, n in s.get("buckets") or ():          # (upper bound, cumulative count)
            lines.append(f'osloscope_sink_request_seconds_bucket{{sink="{sink}",le="{bound}"}} {n}')
        lines += [f'osloscope_sink_request_seconds_bucket{{sink="{sink}",le="+Inf"}} {s.get("count", 0)}',
                  f'osloscope_sink_request_seconds_sum{{sink="{sink}"}} {s.get("seconds", 0.0):.3f}',
                  f'osloscope_sink_request_seconds_count{{sink="{sink}"}} {s.get("count", 0)}']
        return lines
