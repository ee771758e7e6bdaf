"""``osloscope analyze --html FILE``: one self-contained HTML page.

The page has no script, no external reference (stylesheet, font, image, link
to a server) and a Content-Security-Policy that forbids any load, so it opens
from a file, an e-mail attachment or a ticket without network access. It shows:

* a timeline of the incidents per host (when each was open: first to last
  record; an open incident runs to the end of the logs);
* every incident with its evidence, the request chain's root-cause candidate,
  the probable cause and the fix;
* for each request that ended in error, its chain as a waterfall: one row per
  service (and host), time across, error records marked, the root-cause
  candidate named (a linked downstream request -- cinder's for nova's volume --
  gets rows of its own).

Everything taken from the logs is escaped (log lines are hostile input).

Memory stays flat in the size of the logs: ``Collector`` wraps the engine of
``pipeline.local.analyze.analyze`` and keeps, per request window still open,
the first/last time, record and error counts of each (service, host) -- the
windows themselves are bounded by ``detectors.request_windows`` -- and keeps
at most ``max_requests`` of the requests that ended in error (at most
``max_per_cause`` with the same root cause). The page embeds at most
``MAX_INCIDENTS`` incidents and cuts evidence messages at ``MESSAGE_CHARS``; it
says so wherever something was left out.
"""
from __future__ import annotations

import html
import math
import os
import re
import tempfile
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

from detectors.incident import EVIDENCE_HEAD, EVIDENCE_TAIL
from detectors.request_windows import ERROR_LEVELS

MAX_REQUESTS = 200          # requests that ended in error, kept with their waterfall
MAX_PER_CAUSE = 20          # of those, with the same (component, exception type)
MAX_INCIDENTS = 200         # incidents on the page (the most severe, then the most recent)
MESSAGE_CHARS = 1000        # evidence message characters shown
MAX_ROWS = 20               # (service, host) rows per request window
MAX_MARKS = 10              # error marks per row
MAX_OPEN = 110_000          # open request windows followed (RequestWindows keeps 100,000)
LINK_CACHE = 2_000          # closed windows remembered for linking a later error to them

SEVERITY_RANK = {"critical": 3, "error": 2, "warning": 1}


# ============================================================ collecting

class _Tap:
    """The engine, seen through a collector: same contract (feed/advance/flush)."""

    def __init__(self, engine, collector: "Collector") -> None:
        self._engine = engine
        self._collector = collector

    def feed(self, ev):
        out = self._engine.feed(ev)
        if out.requests:                    # windows closed before this event joins a new one
            self._collector.closed(out.requests)
        self._collector.event(ev)
        return out

    def advance(self, now: float):
        out = self._engine.advance(now)
        if out.requests:
            self._collector.closed(out.requests)
        return out

    def flush(self):
        out = self._engine.flush()
        if out.requests:
            self._collector.closed(out.requests)
        return out

    def __getattr__(self, name):
        return getattr(self._engine, name)


class Collector:
    """What the page needs besides the incidents, gathered while analyze runs."""

    def __init__(self, max_requests: int = MAX_REQUESTS, max_per_cause: int = MAX_PER_CAUSE) -> None:
        self.max_requests = max_requests
        self.max_per_cause = max_per_cause
        self.first_ts: float | None = None      # time range of the records analysed
        self.last_ts: float | None = None
        self.errored = 0                        # requests that ended in error
        self.omitted_cap = 0                    # ... not kept: max_requests reached
        self.omitted_same_cause = 0             # ... not kept: max_per_cause reached
        self.requests: list[dict] = []          # {"summary", "rows", "linked"}
        self._per_cause: dict[tuple, int] = {}
        self._open: dict[str, dict] = {}        # window key -> {(service, host): row}
        self._recent: OrderedDict[str, list] = OrderedDict()   # closed window key -> rows
        self._alias: OrderedDict[str, str] = OrderedDict()     # request id -> closed window key
        self._wanted: dict[str, list[dict]] = {}               # downstream request id -> entries

    def wrap(self, engine):
        """``engine`` for ``analyze(engine=...)``, feeding this collector."""
        return _Tap(engine, self)

    # -- events ---------------------------------------------------------------------
    def event(self, ev) -> None:
        ts = ev.ts
        if ts is None:
            ts = self.last_ts
            if ts is None:
                return
        else:
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        key = ev.global_request_id or ev.request_id
        if key is None or ev.kind == "unparsed":
            return
        spans = self._open.get(key)
        if spans is None:
            spans = self._open[key] = {}
            if len(self._open) > MAX_OPEN:
                del self._open[next(iter(self._open))]
        where = (ev.service or "unknown", ev.host or "")
        row = spans.get(where)
        if row is None:
            if len(spans) >= MAX_ROWS:
                return
            row = spans[where] = [ts, ts, 0, 0, []]
        if ts < row[0]:
            row[0] = ts
        if ts > row[1]:
            row[1] = ts
        row[2] += 1
        status = ev.status_code
        if ev.level in ERROR_LEVELS or (status is not None and status >= 500):
            row[3] += 1
            if len(row[4]) < MAX_MARKS:
                row[4].append(ts)

    # -- closed request windows -----------------------------------------------------
    def closed(self, docs: list[dict]) -> None:
        for doc in docs:
            key = doc["key"]
            spans = self._open.pop(key, None) or {}
            rows = sorted(({"service": s, "host": h, "first": r[0], "last": r[1], "events": r[2],
                            "errors": r[3], "marks": list(r[4])} for (s, h), r in spans.items()),
                          key=lambda r: (r["first"], r["service"], r["host"]))
            ids = [key, *doc.get("request_ids", ())]
            for rid in ids:                                # errors that waited for this window
                for entry in self._wanted.pop(rid, ()):
                    entry["linked"] = {"key": key, "rows": rows}
            self._remember(key, ids, rows)
            if doc.get("outcome") == "error":
                self._keep(doc, rows)

    def _remember(self, key: str, ids: list[str], rows: list[dict]) -> None:
        self._recent[key] = rows
        self._recent.move_to_end(key)
        if len(self._recent) > LINK_CACHE:
            self._recent.popitem(last=False)
        for rid in ids[1:6]:
            if rid != key:
                self._alias[rid] = key
                self._alias.move_to_end(rid)
                if len(self._alias) > LINK_CACHE:
                    self._alias.popitem(last=False)

    def _keep(self, doc: dict, rows: list[dict]) -> None:
        self.errored += 1
        rc = doc.get("root_cause") or {}
        cause = (rc.get("component"), rc.get("exception_type"))
        if len(self.requests) >= self.max_requests:
            self.omitted_cap += 1
            return
        if self._per_cause.get(cause, 0) >= self.max_per_cause:
            self.omitted_same_cause += 1
            return
        self._per_cause[cause] = self._per_cause.get(cause, 0) + 1
        entry = {"summary": doc, "rows": rows, "linked": None}
        self.requests.append(entry)
        down = rc.get("request_id")
        if down and down != doc["key"] and down not in doc.get("request_ids", ()):
            key = down if down in self._recent else self._alias.get(down)
            if key is not None and key in self._recent:
                entry["linked"] = {"key": key, "rows": self._recent[key]}
            else:                                          # the downstream window is still open
                self._wanted.setdefault(down, []).append(entry)


# ============================================================ helpers

def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")


def prose(text) -> str:
    """Escaped text with `backquoted` parts as <code> (cause and fix texts)."""
    return _CODE.sub(r"<code>\1</code>", esc(text))


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        d = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _epoch(stamp: str | None) -> float | None:
    d = _parse(stamp)
    return d.timestamp() if d else None


def _when(stamp: str | None) -> str:
    return (stamp or "")[:23].replace("T", " ")


def _pct(x: float, start: float, span: float) -> float:
    return max(0.0, min(100.0, (x - start) / span * 100.0))


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
          900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000)


def _step(span: float, ticks: int = 8) -> float:
    for s in _STEPS:
        if span / s <= ticks:
            return s
    return span / ticks


def _rel(seconds: float, step: float) -> str:
    if step < 1:
        return f"+{seconds * 1000:.0f} ms"
    if step < 60:
        return f"+{seconds:g} s"
    if step < 3600:
        return f"+{seconds / 60:g} min"
    return f"+{seconds / 3600:g} h"


# ============================================================ page

CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--bg:#ffffff;--panel:#f6f7f9;
--critical:#c62828;--error:#e8710a;--warning:#d9a400;--ok:#2e7d32;--bar:#4f6fb0;--label:190px}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
header,main>section,footer{padding:0 28px}
header{background:#17202f;color:#fff;padding-top:14px;padding-bottom:14px}
header h1{margin:0;font-size:21px;letter-spacing:.2px}
header .meta{margin:4px 0 0;color:#c4cad6;font-size:13px}
header .counts{margin:8px 0 0;padding:0;list-style:none;display:flex;gap:8px;flex-wrap:wrap}
header .counts li{padding:2px 10px;border-radius:11px;font-size:12.5px;font-weight:600;color:#fff}
nav{padding:8px 28px;border-bottom:1px solid var(--line);background:var(--panel);font-size:13px}
nav a{margin-right:18px}
a{color:#1f5fbf;text-decoration:none}
a:hover{text-decoration:underline}
h2{font-size:17px;margin:22px 0 4px}
h3{font-size:15px;margin:0}
h4{font-size:12px;margin:10px 0 2px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted)}
p.note{margin:2px 0 10px;color:var(--muted);font-size:12.5px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono","Liberation Mono",
monospace;font-size:12px}
code{background:#eef0f4;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
.s-critical{background:var(--critical)}.s-error{background:var(--error)}.s-warning{background:var(--warning)}
.badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:11.5px;font-weight:600;
vertical-align:1px}
.status{font-size:11.5px;border:1px solid var(--line);border-radius:9px;padding:0 6px;color:var(--muted);
font-weight:normal;vertical-align:1px}
.status.open{border-color:var(--critical);color:var(--critical)}
/* timeline */
.chart{position:relative;margin:6px 0 4px;border:1px solid var(--line);border-radius:6px;background:#fff;
padding:0 10px 4px 0}
.grid{position:absolute;left:var(--label);right:10px;top:0;bottom:0;pointer-events:none}
.grid i{position:absolute;top:0;bottom:0;border-left:1px dashed #e4e7ed}
.axis{position:relative;height:24px;margin-left:var(--label);border-bottom:1px solid var(--line)}
.axis span{position:absolute;top:4px;transform:translateX(-50%);font-size:11px;color:var(--muted);
white-space:nowrap}
.axis span.first{transform:none}
.row{display:flex;align-items:stretch;border-bottom:1px solid #eef0f3}
.row:last-child{border-bottom:0}
.row .who{width:var(--label);flex:none;padding:5px 10px;font-weight:600;font-size:13px;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
.row .who small{display:block;font-weight:normal;color:var(--muted);font-size:11px}
.track{position:relative;flex:1;min-height:30px}
.tl-bar{position:absolute;height:16px;min-width:7px;border-radius:3px;opacity:.92;display:block}
.tl-bar.open{background-image:repeating-linear-gradient(45deg,rgba(255,255,255,.45) 0 4px,transparent 4px 8px)}
.tl-lbl{position:absolute;font-size:11px;line-height:16px;white-space:nowrap;color:var(--fg)}
.legend{font-size:12px;color:var(--muted);margin:2px 0 0}
.legend .badge{margin:0 2px 0 8px}
/* incidents */
.inc{border:1px solid var(--line);border-left:6px solid var(--line);border-radius:6px;margin:12px 0;
padding:10px 14px;background:#fff}
.inc.s-critical{border-left-color:var(--critical);background:#fff}
.inc.s-error{border-left-color:var(--error);background:#fff}
.inc.s-warning{border-left-color:var(--warning);background:#fff}
.inc .num{color:var(--muted);font-weight:normal;margin-right:4px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:1px 12px;margin:8px 0 4px;font-size:13px}
.facts dt{color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
.inc p{margin:4px 0}
.chain{background:#f3f6fc;border-radius:4px;padding:4px 8px}
table.ev{border-collapse:collapse;width:100%;font-size:12px;margin-top:4px}
table.ev th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:2px 6px}
table.ev td{vertical-align:top;border-bottom:1px solid #f0f1f4;padding:3px 6px;white-space:nowrap}
table.ev td.msg{white-space:normal;width:100%}
table.ev pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
table.ev tr.gap td{color:var(--muted);font-style:italic;text-align:center;background:#fafbfc}
details summary{cursor:pointer;color:var(--muted);font-size:12px;margin-top:8px}
.lv-ERROR,.lv-CRITICAL,.lv-TRACE,.lv-FATAL{color:var(--critical);font-weight:600}
.lv-WARNING{color:#9a6a00;font-weight:600}
/* waterfalls */
.req{border:1px solid var(--line);border-radius:6px;margin:12px 0;padding:10px 14px;background:#fff}
.inc .req{border:0;padding:0;margin:4px 0 8px}
.req .rc{margin:6px 0;padding:4px 8px;background:#fdf0ef;border-radius:4px}
.req .chart{margin-top:8px}
.wf-bar{position:absolute;top:8px;height:14px;min-width:4px;border-radius:3px;background:var(--bar)}
.wf-bar.err{background:#d9822b}
.row.linked .wf-bar{background:#8a7fc7}
.row.rc{background:#fff4f2}
.row.rc .who{color:var(--critical)}
.wf-err{position:absolute;top:10px;width:10px;height:10px;margin-left:-5px;background:var(--critical);
transform:rotate(45deg);border:1px solid #fff}
.wf-rc{position:absolute;top:4px;width:22px;height:22px;margin-left:-11px;border:3px solid var(--critical);
border-radius:50%}
.wf-rclbl{position:absolute;top:6px;font-size:11px;font-weight:700;color:var(--critical);white-space:nowrap;
background:rgba(255,255,255,.88);padding:0 4px;border-radius:3px;line-height:16px}
.wf-rclbl.left{transform:translateX(-100%)}
.exc{font-size:12.5px;margin:4px 0 0;padding-left:18px}
.req .legend{margin:3px 0 0}
footer{margin:26px 0 30px;border-top:1px solid var(--line);padding-top:6px;color:var(--muted);font-size:12.5px}
footer ul{padding-left:18px;margin:4px 0}
"""

WATERFALL_LEGEND = ("bars: first to last record of each service in the request (orange: it logged errors; "
                    "violet: a linked downstream request) &middot; <b style=\"color:var(--critical)\">&#9670;</b> "
                    "error record &middot; <b style=\"color:var(--critical)\">&#9711;</b> root-cause candidate")
WATERFALL_KEY = ("Waterfall rows: the services of the request and of a linked downstream request, "
                 "time across; &#9670; error records, &#9711; the root-cause candidate.")

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; "
       "base-uri 'none'; form-action 'none'")


class _Axis:
    """Absolute time axis (the logs' own UTC offset)."""

    def __init__(self, start: float, end: float, offset: timedelta) -> None:
        self.start = start
        self.span = max(end - start, 1.0)
        self.offset = offset

    def x(self, t: float) -> float:
        return _pct(t, self.start, self.span)

    def ticks(self) -> list[tuple[float, str]]:
        step = _step(self.span)
        off = self.offset.total_seconds()
        local0 = self.start + off
        first = math.ceil(local0 / step) * step
        out = []
        multi_day = self.span >= 86400 or (
            int(local0 // 86400) != int((local0 + self.span) // 86400))
        fmt = "%m-%d %H:%M" if multi_day else ("%H:%M:%S" if step < 60 else "%H:%M")
        t = first
        while t <= local0 + self.span + 1e-9 and len(out) < 40:
            label = datetime.fromtimestamp(t - off, timezone(self.offset)).strftime(fmt)
            out.append((self.x(t - off), label))
            t += step
        return out


FIRST = ' class="first"'


def _axis_html(ticks: list[tuple[float, str]]) -> tuple[str, str]:
    """(the labels row, the grid lines) of a chart."""
    labels = "".join(f'<span style="left:{x:.3f}%"{FIRST if x < 2 else ""}>{esc(t)}</span>'
                     for x, t in ticks if x <= 97 or len(ticks) == 1)
    lines = "".join(f'<i style="left:{x:.3f}%"></i>' for x, _ in ticks)
    return f'<div class="axis">{labels}</div>', f'<div class="grid">{lines}</div>'


def _select_incidents(incidents: list[dict]) -> list[tuple[int, dict]]:
    """(number, incident) of the incidents on the page, in the analysis's order."""
    numbered = list(enumerate(incidents, 1))
    if len(numbered) <= MAX_INCIDENTS:
        return numbered
    keep = sorted(numbered, key=lambda p: (-SEVERITY_RANK.get(p[1].get("severity"), 0),
                                           _neg(p[1].get("last_seen"))))[:MAX_INCIDENTS]
    return sorted(keep, key=lambda p: p[0])


def _neg(stamp: str | None) -> float:
    t = _epoch(stamp)
    return -t if t is not None else 0.0


def _timeline(shown: list[tuple[int, dict]], start: float, end: float, offset: timedelta) -> str:
    axis = _Axis(start, end, offset)
    by_host: dict[str, list] = {}
    for n, inc in shown:
        first = _epoch(inc.get("first_seen"))
        last = _epoch(inc.get("last_seen"))
        if first is None:
            continue
        last = first if last is None else last
        if inc.get("status") == "open":
            last = max(last, end)
        for host in (inc.get("hosts") or [inc.get("host") or "unknown"]):
            by_host.setdefault(host, []).append((first, last, n, inc))
    label_axis, grid = _axis_html(axis.ticks())
    rows = []
    for host in sorted(by_host):
        placed = []
        for first, last, n, inc in by_host[host]:
            left = axis.x(first)
            width = max(axis.x(last) - left, 0.0)
            label = f"{n} {inc.get('type', '')}"
            text = 1.2 + 0.62 * len(label)              # the label's width, in percent of the track
            flip = left + max(width, 0.8) + text > 99   # then the label goes on the left of the bar
            lo, hi = (left - text, left + max(width, 0.8)) if flip else (left, left + max(width, 0.8) + text)
            placed.append((lo, hi, left, width, flip, label, n, inc))
        placed.sort(key=lambda p: (p[0], p[6]))
        lanes: list[float] = []            # where each lane is taken up to (percent, labels included)
        bars = []
        for lo, hi, left, width, flip, label, n, inc in placed:
            lane = next((i for i, e in enumerate(lanes) if e <= lo), None)
            if lane is None:
                lane = len(lanes)
                lanes.append(hi)
            else:
                lanes[lane] = hi
            top = 7 + lane * 22
            sev = inc.get("severity", "")
            open_ = inc.get("status") == "open"
            tip = (f"#{n} {sev} {inc.get('type', '')}: {inc.get('title', '')}\n"
                   f"{_when(inc.get('first_seen'))} .. {_when(inc.get('last_seen'))}"
                   f" ({inc.get('status', '')}, {inc.get('count', '')} record(s))")
            lbl_pos = (f"right:{100 - left:.3f}%;padding-right:4px" if flip
                       else f"left:calc({left + width:.3f}% + 9px)")
            bars.append(f'<a class="tl-bar s-{esc(sev)}{" open" if open_ else ""}" href="#inc-{n}" '
                        f'style="left:{left:.3f}%;width:{width:.3f}%;top:{top}px" title="{esc(tip)}"></a>'
                        f'<span class="tl-lbl" style="{lbl_pos};top:{top}px">{esc(label)}</span>')
        height = 14 + len(lanes) * 22
        rows.append(f'<div class="row"><div class="who" title="{esc(host)}">{esc(host)}'
                    f'<small>{len(placed)} incident(s)</small></div>'
                    f'<div class="track" style="height:{height}px">{"".join(bars)}</div></div>')
    if not rows:
        return '<p class="note">No incidents: nothing to draw.</p>'
    return f'<div class="chart">{grid}{label_axis}{"".join(rows)}</div>'


def _evidence(inc: dict) -> str:
    ev = inc.get("evidence") or []
    if not ev:
        return ""
    rows = []
    cut = False
    for e in ev:
        msg = e.get("message") or ""
        if len(msg) > MESSAGE_CHARS:
            msg, cut = msg[:MESSAGE_CHARS] + " [...]", True
        level = e.get("level") or ""
        rows.append(f'<tr><td class="mono">{esc(_when(e.get("@timestamp")))}</td><td>{esc(e.get("host"))}</td>'
                    f'<td>{esc(e.get("service"))}</td><td class="lv-{esc(level)}">{esc(level)}</td>'
                    f'<td class="msg" title="{esc(e.get("file"))}"><pre>{esc(msg)}</pre>'
                    + (f'<div class="mono" style="color:var(--muted)">{esc(e["request_id"])}</div>'
                       if e.get("request_id") else "") + "</td></tr>")
    count = inc.get("count") or len(ev)
    if count > len(ev) and len(ev) == EVIDENCE_HEAD + EVIDENCE_TAIL:
        rows.insert(EVIDENCE_HEAD, f'<tr class="gap"><td colspan="5">&#8942; the records between the first '
                                   f'{EVIDENCE_HEAD} and the last {EVIDENCE_TAIL} are counted, not kept</td></tr>')
    head = (f"Evidence: {len(ev)} record(s)" if count <= len(ev) else
            f"Evidence: {len(ev)} of {count} records (the first and the most recent, as the detector keeps them)")
    if cut:
        head += f"; messages cut at {MESSAGE_CHARS:,} characters"
    return (f'<details class="evidence" open><summary>{esc(head)}</summary><table class="ev"><thead><tr>'
            '<th>time</th><th>host</th><th>service</th><th>level</th><th>message</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></details>')


def _incident(n: int, inc: dict, req_anchor: dict[str, str], waterfalls: str = "") -> str:
    sev = inc.get("severity", "")
    status = inc.get("status", "")
    first, last = inc.get("first_seen"), inc.get("last_seen")
    t0, t1 = _epoch(first), _epoch(last)
    took = f" ({_duration(t1 - t0)})" if t0 is not None and t1 is not None and t1 > t0 else ""
    facts = [("type", f'{esc(inc.get("type"))} <span class="mono">({esc(inc.get("rule"))})</span>'),
             ("where", f'{esc(", ".join(inc.get("hosts") or []))} &middot; '
                       f'{esc(", ".join(inc.get("services") or []))}'),
             ("when", f'{esc(_when(first))} .. {esc(_when(last))}{esc(took)} &middot; '
                      f'{esc(inc.get("count"))} record(s)')]
    res = [f'{esc(k)}: ' + ", ".join(f'<span class="mono">{esc(v)}</span>' for v in vals[:6])
           + (f" (+{len(vals) - 6})" if len(vals) > 6 else "")
           for k, vals in (inc.get("resources") or {}).items() if vals]
    if res:
        facts.append(("ids", "; ".join(res)))
    rids = inc.get("request_ids") or []
    if rids:
        links = []
        for rid in rids[:6]:
            anchor = req_anchor.get(rid)
            links.append(f'<a class="mono" href="#{anchor}">{esc(rid)} &#8600; waterfall</a>' if anchor
                         else f'<span class="mono">{esc(rid)}</span>')
        facts.append(("requests", ", ".join(links) + (f" (+{len(rids) - 6})" if len(rids) > 6 else "")))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    rc = ((inc.get("details") or {}).get("root_cause") or {})
    if waterfalls:
        chain = f'<h4>Request chain</h4>{waterfalls}'
    elif rc.get("reason"):
        chain = (f'<h4>Request chain: root-cause candidate</h4><p class="chain"><b>{esc(rc.get("component"))}</b>'
                 f' &mdash; {esc(rc.get("reason"))}</p>')
    else:
        chain = ""
    return (f'<article class="inc s-{esc(sev)}" id="inc-{n}"><h3><span class="num">#{n}</span>'
            f'<span class="badge s-{esc(sev)}">{esc(sev)}</span> {esc(inc.get("title"))} '
            f'<span class="status {esc(status)}">{esc(status)}</span></h3>'
            f'<dl class="facts">{dl}</dl><p>{esc(inc.get("summary"))}</p>{chain}'
            f'<h4>Probable cause</h4><p class="cause">{prose(inc.get("probable_cause"))}</p>'
            f'<h4>Fix</h4><p class="fix">{prose(inc.get("remediation"))}</p>'
            f'{_evidence(inc)}</article>')


def _fallback_rows(doc: dict) -> list[dict]:
    """Rows from the summary alone (no timings were collected): one per service."""
    rows = []
    for svc in doc.get("services") or []:
        marks = [t for x in doc.get("exceptions") or [] if x.get("service") == svc
                 for t in [_epoch(x.get("@timestamp"))] if t is not None]
        rows.append({"service": svc, "host": "", "first": None, "last": None, "events": None,
                     "errors": len(marks), "marks": marks})
    return rows


def _waterfall(i: int, entry: dict, incidents_of: dict[str, list[int]]) -> str:
    doc = entry["summary"]
    rc = doc.get("root_cause") or {}
    rows = [dict(r, linked=False) for r in (entry.get("rows") or _fallback_rows(doc))]
    linked = entry.get("linked")
    if linked:
        rows += [dict(r, linked=True) for r in linked["rows"]]
    rc_ts = _epoch(rc.get("@timestamp"))
    times = [t for r in rows for t in (r["first"], r["last"], *r["marks"]) if t is not None]
    times += [t for t in (_epoch(doc.get("first_seen")), _epoch(doc.get("last_seen")), rc_ts) if t is not None]
    start, end = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(end - start, 0.001)
    # the row the candidate is in: its service and host, in the linked window if it came from there
    rc_row = None
    if rc.get("service"):
        cands = [r for r in rows if r["service"] == rc.get("service")
                 and (not r["host"] or not rc.get("host") or r["host"] == rc.get("host"))]
        if rc.get("via"):
            cands.sort(key=lambda r: not r["linked"])
        rc_row = cands[0] if cands else None
    if rc.get("service") and rc_row is None:            # e.g. a downstream window that was not kept
        rc_row = {"service": rc["service"], "host": rc.get("host") or "", "first": None, "last": None,
                  "events": None, "errors": 0, "marks": [], "linked": True}
        rows.append(rc_row)
    step = _step(span, 6)
    ticks = []
    k = 0
    while k * step <= span + 1e-9 and k < 40:
        ticks.append((k * step / span * 100.0, _rel(k * step, step)))
        k += 1
    label_axis, grid = _axis_html(ticks)
    out_rows = []
    for r in rows:
        bits = []
        if r["first"] is not None:
            left = _pct(r["first"], start, span)
            width = _pct(r["last"], start, span) - left
            tip = (f'{r["service"]} on {r["host"]}: {r["events"]} record(s), {r["errors"]} error(s), '
                   f'+{r["first"] - start:.3f} s .. +{r["last"] - start:.3f} s')
            bits.append(f'<span class="wf-bar{" err" if r["errors"] else ""}" '
                        f'style="left:{left:.3f}%;width:{width:.3f}%" title="{esc(tip)}"></span>')
        for t in r["marks"]:
            bits.append(f'<span class="wf-err" style="left:{_pct(t, start, span):.3f}%" '
                        f'title="error at +{t - start:.3f} s"></span>')
        is_rc = r is rc_row
        if is_rc and rc_ts is not None:
            x = _pct(rc_ts, start, span)
            name = rc.get("component") or r["service"]
            side = "left" if x > 70 else ""
            pos = f"left:calc({x:.3f}% - 16px)" if side else f"left:calc({x:.3f}% + 16px)"
            bits.append(f'<span class="wf-rc" style="left:{x:.3f}%" title="root-cause candidate"></span>'
                        f'<span class="wf-rclbl {side}" style="{pos}">root cause: {esc(name)}</span>')
        sub_html = esc(r["host"])
        if r["linked"]:
            sub_html += (" &middot; " if r["host"] else "") + "linked request"
        events = "" if r["events"] is None else f' &middot; {r["events"]} rec'
        out_rows.append(f'<div class="row{" rc" if is_rc else ""}{" linked" if r["linked"] else ""}">'
                        f'<div class="who" title="{esc(r["service"])} {esc(r["host"])}">{esc(r["service"])}'
                        f'<small>{sub_html}{events}</small></div>'
                        f'<div class="track">{"".join(bits)}</div></div>')
    api = doc.get("api") or {}
    api_text = " ".join(str(x) for x in (api.get("method"), api.get("path"), api.get("status")) if x is not None)
    what = (f'{rc.get("exception_type")}: {rc.get("exception_message") or ""}' if rc.get("exception_type")
            else rc.get("message") or "")
    where = " on ".join(x for x in (rc.get("service"), rc.get("host")) if x)
    rc_html = ""
    if rc:
        rc_html = (f'<p class="rc">Root-cause candidate: <b>{esc(rc.get("component"))}</b>'
                   + (f" ({esc(where)})" if where and where != rc.get("component") else "")
                   + f" &mdash; {esc(' '.join(what.split())[:400])}"
                   + (f'<br><span class="mono">raised in {esc(rc["raised_in"])}</span>'
                      if rc.get("raised_in") else "")
                   + (f"<br>linked by {esc(rc['via'])}" if rc.get("via") else "") + "</p>")
    ids = [doc["key"], *(doc.get("request_ids") or [])]
    incs = sorted({n for rid in ids for n in incidents_of.get(rid, ())})
    inc_html = (" &middot; incident " + ", ".join(f'<a href="#inc-{n}">#{n}</a>' for n in incs)) if incs else ""
    exc = doc.get("exceptions") or []
    exc_html = ("<ul class=\"exc\">" + "".join(
        f'<li><span class="mono">{esc(_when(x.get("@timestamp")))}</span> {esc(x.get("service"))} '
        f'{esc(x.get("host"))}: <b>{esc(x.get("type"))}</b> '
        f'{esc(" ".join((x.get("message") or "").split())[:300])}</li>'
        for x in exc) + "</ul>") if exc else ""
    return (f'<article class="req" id="wf-{i}"><h3><span class="badge s-error">{esc(doc.get("outcome"))}</span> '
            f'<span class="mono">{esc(doc["key"])}</span> {esc(api_text)}</h3>'
            f'<p class="note">{esc(_when(doc.get("first_seen")))} &middot; '
            f'{esc(_duration(doc.get("duration_seconds") or 0))}'
            f' &middot; {esc(" > ".join(doc.get("services") or []))} &middot; {esc(doc.get("events"))} record(s), '
            f'{esc(doc.get("errors"))} error(s){inc_html}</p>{rc_html}'
            f'<div class="chart waterfall">{grid}{label_axis}{"".join(out_rows)}</div>'
            f'<p class="legend">{WATERFALL_LEGEND}</p>{exc_html}</article>')


def render(incidents: list[dict], collector: Collector | None = None, *, stats=None,
           sources: list[str] | tuple = (), generated: datetime | None = None) -> str:
    """The page for ``incidents`` (analyze's result) and what ``collector`` gathered."""
    generated = generated or datetime.now(timezone.utc)
    shown = _select_incidents(incidents)
    requests = sorted((collector.requests if collector else []),
                      key=lambda e: (e["summary"].get("first_seen") or "", e["summary"]["key"]))
    # the logs' time range and UTC offset
    offset = timedelta(0)
    for _, inc in shown:
        d = _parse(inc.get("first_seen"))
        if d is not None:
            offset = d.utcoffset() or timedelta(0)
            break
    # the timeline spans the incidents (old records far before them would squeeze them into a corner);
    # open incidents run to the end of the logs
    stamps = [t for _, inc in shown for t in (_epoch(inc.get("first_seen")), _epoch(inc.get("last_seen")))
              if t is not None]
    data = ((collector.first_ts, collector.last_ts) if collector and collector.first_ts is not None
            else None)
    if data and any(inc.get("status") == "open" for _, inc in shown):
        stamps.append(data[1])
    if stamps:
        lo, hi = min(stamps), max(stamps)
        pad = max((hi - lo) * 0.03, 1.0)
        start, end = lo - pad, hi + pad
        if data:
            start, end = max(start, min(data[0], lo)), min(end, max(data[1], hi))
    else:
        start, end = data or (0.0, 1.0)
    zone = "UTC" if not offset else str(timezone(offset))          # "UTC+02:00"

    req_anchor: dict[str, str] = {}
    for i, entry in enumerate(requests, 1):
        doc = entry["summary"]
        for rid in [doc["key"], *(doc.get("request_ids") or [])]:
            req_anchor.setdefault(rid, f"wf-{i}")
    incidents_of: dict[str, list[int]] = {}
    for n, inc in shown:
        for rid in inc.get("request_ids") or []:
            incidents_of.setdefault(rid, []).append(n)
    # each request's waterfall goes into the first incident that names it; the rest get a section
    placed: dict[int, list[int]] = {}
    in_cards: set[int] = set()
    for n, inc in shown:
        for rid in inc.get("request_ids") or []:
            anchor = req_anchor.get(rid)
            i = int(anchor[3:]) if anchor else None
            if i is not None and i not in in_cards:
                in_cards.add(i)
                placed.setdefault(n, []).append(i)

    counts: dict[str, int] = {}
    for inc in incidents:
        counts[inc.get("severity", "")] = counts.get(inc.get("severity", ""), 0) + 1
    count_html = "".join(f'<li class="s-{esc(s)}">{counts[s]} {esc(s)}</li>'
                         for s in ("critical", "error", "warning") if counts.get(s))
    open_n = sum(1 for inc in incidents if inc.get("status") == "open")
    if open_n:
        count_html += f'<li style="background:#44516a">{open_n} open</li>'
    meta = []
    if sources:
        meta.append("logs: " + ", ".join(esc(s) for s in list(sources)[:10])
                    + (f" (+{len(sources) - 10})" if len(sources) > 10 else ""))
    if stats is not None:
        meta.append(f"{stats.files:,} file(s), {stats.lines:,} lines, {stats.events:,} records"
                    + (f", {stats.unparsed:,} unparsed" if getattr(stats, "unparsed", 0) else ""))
    if data:
        meta.append(f"records from {esc(_fmt(data[0], offset))} to {esc(_fmt(data[1], offset))} ({esc(zone)})")
    meta.append(f"generated {generated.strftime('%Y-%m-%d %H:%M UTC')}")

    limits = []
    if len(shown) < len(incidents):
        limits.append(f"Incidents: {len(incidents):,} found, the {len(shown):,} most severe (most recent first "
                      f"within a severity) are shown; <code>osloscope analyze --format jsonl</code> lists all.")
    else:
        limits.append(f"Incidents: all {len(incidents):,} shown (at most {MAX_INCIDENTS:,} are embedded).")
    limits.append(f"Evidence: as the detectors keep it (the first and the most recent records of each incident); "
                  f"messages cut at {MESSAGE_CHARS:,} characters.")
    if collector is not None:
        left_out = collector.omitted_cap + collector.omitted_same_cause
        text = (f"Requests: {collector.errored:,} ended in error, {len(requests):,} shown with their waterfall "
                f"(at most {collector.max_requests:,}, at most {collector.max_per_cause:,} with the same root cause)")
        if left_out:
            text += (f"; {left_out:,} not shown ({collector.omitted_cap:,} over the limit, "
                     f"{collector.omitted_same_cause:,} repeating a root cause)")
        limits.append(text + "; <code>osloscope analyze --requests</code> lists every request.")
        limits.append(f"Waterfall rows: at most {MAX_ROWS} (service, host) rows per request and "
                      f"{MAX_MARKS} error marks per row.")

    req_note = ""
    if collector is not None:
        req_note = (f"{collector.errored:,} request(s) ended in error; "
                    + (f"{len(requests):,} have a waterfall, the others are left out to keep the page "
                       f"light (see <a href=\"#limits\">limits</a>)." if len(requests) < collector.errored
                       else "all have a waterfall.")
                    + ((" They are shown with the incidents that name them." if len(in_cards) == len(requests)
                        else f" {len(in_cards):,} of them are shown with the incident that names them, the "
                             "others here.") if in_cards else "")
                    + " " + WATERFALL_KEY)
    inc_note = f"{len(incidents):,} incident(s)"
    if len(shown) < len(incidents):
        inc_note += f', {len(shown):,} shown (the most severe; see <a href="#limits">limits</a>)'
    legend = ('<p class="legend">bars: first to last record of each incident (hatched: still open, drawn to '
              'the end of the logs)<span class="badge s-critical">critical</span>'
              '<span class="badge s-error">error</span><span class="badge s-warning">warning</span></p>')
    title = f"osloscope report: {len(incidents)} incident(s)"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="osloscope"><title>{esc(title)}</title>',
        f"<style>{CSS}</style></head><body>",
        f'<header><h1>osloscope: {len(incidents)} incident(s)</h1><p class="meta">{" &middot; ".join(meta)}</p>'
        f'<ul class="counts">{count_html}</ul></header>',
        '<nav><a href="#timeline">Timeline</a><a href="#incidents">Incidents</a>'
        + ('<a href="#requests">Requests with errors</a>' if collector is not None else "")
        + '<a href="#limits">Limits</a></nav><main>',
        f'<section id="timeline"><h2>Incidents per host</h2><p class="note">When each incident was open, '
        f'{esc(_fmt(start, offset))} .. {esc(_fmt(end, offset))} ({esc(zone)}). Click a bar for the incident.'
        f'</p>{_timeline(shown, start, end, offset)}{legend}</section>',
        f'<section id="incidents"><h2>Incidents</h2><p class="note">{inc_note}</p>'
        + ("".join(_incident(n, inc, req_anchor, "".join(
            _waterfall(i, requests[i - 1], incidents_of) for i in placed.get(n, ())))
            for n, inc in shown) or '<p>No incidents found.</p>')
        + "</section>",
    ]
    if collector is not None:
        rest = [i for i in range(1, len(requests) + 1) if i not in in_cards]
        parts.append(f'<section id="requests"><h2>Requests that ended in error</h2><p class="note">{req_note}</p>'
                     + ("".join(_waterfall(i, requests[i - 1], incidents_of) for i in rest)
                        or "<p>None besides those shown with their incidents.</p>" if requests
                        else "<p>No request ended in error.</p>") + "</section>")
    parts.append('</main><footer id="limits"><b>Limits of this page</b><ul>'
                 + "".join(f"<li>{x}</li>" for x in limits) + "</ul>"
                 "Made by osloscope; self-contained (no script, no network).</footer></body></html>\n")
    return "".join(parts)


def _fmt(t: float, offset: timedelta) -> str:
    return datetime.fromtimestamp(t, timezone(offset)).strftime("%Y-%m-%d %H:%M:%S")


# ============================================================ writing

def problem_with(path: str) -> str | None:
    """Why the report cannot be written to ``path`` (checked before the analysis), or None."""
    if os.path.isdir(path):
        return f"--html {path!r} is a directory"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--html {path!r}: directory {folder!r} does not exist"
    if not os.access(folder, os.W_OK):
        return f"--html {path!r}: directory {folder!r} is not writable"
    return None


def write(path: str, page: str) -> None:
    """Write ``page`` to ``path`` (replaced whole: readers never see half a page)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".osloscope-report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
