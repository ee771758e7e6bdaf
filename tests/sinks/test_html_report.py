"""``osloscope analyze --html``: the self-contained report (pipeline/sinks/html_report.py).

The page is parsed with html.parser (what a browser builds from it is checked in
tests/integration/test_report_chromium.py): nothing external, the incidents with
evidence, cause and fix, a waterfall per errored request with the chain across
services and the root-cause candidate, the caps applied and said on the page,
hostile log text escaped, and memory and page size bounded for tens of thousands
of records.
"""
from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from detectors.engine import Engine
from detectors.model import Event
from detectors.request_windows import RequestWindows
from pipeline.local.analyze import analyze
from pipeline.signatures import engine as build_engine
from pipeline.sinks import html_report
from pipeline.sources.files import discover

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"
SEEDS = ROOT / "tests" / "fixtures" / "seeds"

USER = "c49d86f8a39148bb809d2da44811ca3b f19126d9035d4209b363386e8e267129 - - -"
NOVA_REQ = "req-5b2f6c1e-8d4a-4f3b-9e21-6a7c0d9e8f10"
CINDER_REQ = "req-9a0e4d7c-2b1f-4c83-a5d6-e7f8091a2b3c"
INSTANCE = "4d3c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
VOLUME = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a09"
T0 = datetime(2017, 6, 6, 7, 40, 0)


def _line(s: float, pid: int, level: str, logger: str, req: str, msg: str) -> str:
    t = T0 + timedelta(seconds=s)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {pid} {level} {logger} [{req} {USER}] {msg}\n"


def write_flow(root: Path) -> Path:
    """A boot from volume: nova-api -> nova-conductor -> nova-compute gives up on a
    volume that cinder-volume (another request id, linked by the volume id) could not create."""
    files = {
        "controller-1/nova/nova-api.log": [
            _line(0.843, 28356, "INFO", "nova.osapi_compute.wsgi.server", NOVA_REQ,
                  '10.12.27.40 "POST /v2.1/servers HTTP/1.1" status: 202 len: 830 time: 0.8312')],
        "controller-1/nova/nova-conductor.log": [
            _line(1.377, 3344, "INFO", "nova.conductor.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Selected host compute-1 (node compute-1)")],
        "compute-1/nova/nova-compute.log": [
            _line(1.651, 665097, "INFO", "nova.compute.claims", NOVA_REQ, f"[instance: {INSTANCE}] Claim successful"),
            _line(67.512, 665097, "ERROR", "nova.compute.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Instance failed block device setup: VolumeNotCreated: Volume {VOLUME} "
                  "did not finish being created even after we waited 65 seconds or 21 attempts. "
                  "And its status is error.")],
        "block-1/cinder/cinder-volume.log": [
            _line(2.603, 3012, "INFO", "cinder.volume.flows.manager.create_volume", CINDER_REQ,
                  f"Volume {VOLUME}: being created as image with specification: {{'status': u'creating', "
                  f"'volume_name': u'volume-{VOLUME}'}}"),
            _line(61.240, 3012, "ERROR", "cinder.image.image_utils", CINDER_REQ,
                  "Insufficient free space on /var/lib/cinder/conversion for image conversion.")],
    }
    for rel, lines in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))
    return root


def run(*paths, collector=None):
    """analyze ``paths`` in this process with a report collector: (incidents, collector, stats)."""
    collector = collector or html_report.Collector()
    result = analyze(discover([str(p) for p in paths]), engine=collector.wrap(build_engine("all")))
    return result.incidents, collector, result.stats


class Page(HTMLParser):
    """Tags, attributes, <style> text and the text per element id of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.style = ""
        self.text: list[str] = []
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    def all(self, tag: str | None = None, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if (tag is None or t == tag)
                and (cls is None or cls in (a.get("class") or "").split())]

    @property
    def body(self) -> str:
        return "".join(self.text)


def assert_self_contained(text: str) -> Page:
    page = Page(text)
    tags = {t for t, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source",
                       "base", "form", "svg", "use", "image", "frame"}, tags
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert name not in ("src", "srcset", "action", "poster", "background", "xlink:href"), (tag, name)
            assert not name.startswith("on"), (tag, name)
            if name == "href":
                assert value.startswith("#"), (tag, value)
            if name == "style":
                assert "url(" not in value and "@import" not in value
    assert "url(" not in page.style and "@import" not in page.style and "@font-face" not in page.style
    csp = [a["content"] for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "script-src 'none'" in csp[0]
    return page


# ============================================================ the page

@pytest.fixture(scope="module")
def samples_page(tmp_path_factory):
    """``osloscope analyze deploy/samples --html`` as a user runs it, and its incidents."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(SAMPLES), "--html", str(out),
                        "--format", "jsonl", "--dead-letter", "-", "--jobs", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert f"report written to {out}" in r.stderr
    return out.read_text(), [json.loads(line) for line in r.stdout.splitlines()]


@pytest.fixture(scope="module")
def samples_errored_requests():
    """The request summaries of deploy/samples that ended in error (``analyze --requests``)."""
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(SAMPLES), "--requests",
                        "--format", "jsonl", "--dead-letter", "-", "--jobs", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    return [d for d in docs if d["outcome"] == "error"]


def test_the_page_is_self_contained(samples_page):
    text, _ = samples_page
    assert_self_contained(text)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)


def test_every_incident_has_its_evidence_cause_and_fix(samples_page):
    text, incidents = samples_page
    page = Page(text)
    assert len(incidents) >= 5
    cards = page.all("article", "inc")
    assert [c["id"] for c in cards] == [f"inc-{n}" for n in range(1, len(incidents) + 1)]
    body = page.body
    for inc in incidents:
        assert inc["title"] in body
        assert " ".join(inc["probable_cause"].replace("`", "").split()) in " ".join(body.split())
        assert " ".join(inc["remediation"].replace("`", "").split()) in " ".join(body.split())
        for ev in inc["evidence"]:
            assert ev["message"][:html_report.MESSAGE_CHARS] in body
    # where the detector kept the first and the last records only, the page says so between them
    cut = [n for n, inc in enumerate(incidents, 1) if inc["count"] > len(inc["evidence"]) == 10]
    assert cut and body.count("are counted, not kept") == len(cut)
    # the timeline: a bar per incident and host, linking to the incident
    bars = page.all("a", "tl-bar")
    assert sorted(b["href"] for b in bars) == sorted(f"#inc-{n}" for n, inc in enumerate(incidents, 1)
                                                     for _ in inc["hosts"])
    assert len(page.all("a", "open")) == sum(1 for i in incidents if i["status"] == "open") == 1


def test_each_errored_request_of_the_samples_has_a_waterfall_naming_its_root_cause(samples_page,
                                                                                    samples_errored_requests):
    text, incidents = samples_page
    page = Page(text)
    errored = samples_errored_requests
    assert len(errored) >= 5
    assert sorted(a["id"] for a in page.all("article", "req")) == sorted(f"wf-{i}" for i in range(1, len(errored) + 1))
    keys = re.findall(r'<article class="req" id="wf-\d+"><h3><span class="badge s-error">error</span> '
                      r'<span class="mono">([^<]+)</span>', text)
    assert sorted(keys) == sorted(d["key"] for d in errored)
    assert len(page.all("div", "waterfall")) == len(errored)
    assert len(page.all("span", "wf-rc")) == len(errored)
    assert "root cause: glanceclient" in page.body    # seed 004: the error is raised inside glanceclient
    assert "root cause: cinder-volume" in page.body   # seed 002: nova gave up waiting for cinder


def test_waterfall_rows_follow_the_chain_across_services_and_the_linked_request(tmp_path):
    incidents, collector, stats = run(write_flow(tmp_path / "flow"))
    nova = next(e for e in collector.requests if e["summary"]["key"] == NOVA_REQ)
    assert [(r["service"], r["host"]) for r in nova["rows"]] == [
        ("nova-api", "controller-1"), ("nova-conductor", "controller-1"), ("nova-compute", "compute-1")]
    compute = nova["rows"][2]
    assert compute["events"] == 2 and compute["errors"] == 1
    assert compute["last"] - compute["first"] == pytest.approx(65.861) and compute["marks"] == [compute["last"]]
    assert nova["linked"]["key"] == CINDER_REQ
    assert [(r["service"], r["errors"]) for r in nova["linked"]["rows"]] == [("cinder-volume", 1)]
    assert nova["summary"]["root_cause"]["service"] == "cinder-volume"

    page = Page(html_report.render(incidents, collector, stats=stats, sources=["flow"]))
    body = page.body
    assert "root cause: cinder-volume" in body and "linked request" in body
    # the nova request's waterfall: 4 rows, the last (cinder-volume, linked) is the root cause
    text = html_report.render(incidents, collector, stats=stats)
    art = text[text.index(f'<span class="mono">{NOVA_REQ}</span>') - 200:]
    art = art[:art.index("</article>")]
    rows = re.findall(r'<div class="row([^"]*)"><div class="who"[^>]*>([\w-]+)<small>', art)
    assert rows == [("", "nova-api"), ("", "nova-conductor"), ("", "nova-compute"), (" rc linked", "cinder-volume")]
    assert art.count('class="wf-err"') == 2 and art.count('class="wf-rc"') == 1
    lefts = [float(x) for x in re.findall(r'class="wf-bar[^"]*" style="left:([\d.]+)%', art)]
    assert lefts == sorted(lefts) and lefts[0] == 0.0


def test_a_downstream_request_closing_after_the_error_is_linked_too():
    """nova's window closes first; cinder's (still open then) is attached when it closes."""
    c = html_report.Collector()
    err = {"key": "req-a", "request_ids": ["req-a"], "outcome": "error",
           "root_cause": {"component": "cinder-volume", "request_id": "req-b", "service": "cinder-volume"}}
    c.event(Event(ts=10.0, request_id="req-b", service="cinder-volume", host="block-1", level="ERROR"))
    c.closed([err])
    assert c.requests[0]["linked"] is None
    c.closed([{"key": "req-b", "request_ids": ["req-b"], "outcome": "ok"}])
    assert c.requests[0]["linked"]["key"] == "req-b"
    assert c.requests[0]["linked"]["rows"][0]["marks"] == [10.0]


# ============================================================ caps

def _errored_stream(n: int, causes: int, base: float = 1_496_700_000.0):
    """n requests of 3 records over nova-api/nova-conductor/nova-compute; each 5th fails
    in nova-compute with one of ``causes`` exception types."""
    for i in range(n):
        req = f"req-00000000-0000-4000-8000-{i:012d}"
        ts = base + i * 0.05
        for k, svc in enumerate(("nova-api", "nova-conductor", "nova-compute")):
            t = ts + k
            fail = i % 5 == 0 and svc == "nova-compute"
            yield Event(ts=t, timestamp=datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds"),
                        request_id=req, service=svc, host="compute-1" if k == 2 else "controller-1",
                        level="ERROR" if fail else "INFO", message="boom <b>" if fail else "ok",
                        error_type=f"Error{(i // 5) % causes}" if fail else None,
                        error_message="it broke" if fail else None)


def _collect(n: int, causes: int, **caps) -> html_report.Collector:
    c = html_report.Collector(**caps)
    engine = c.wrap(Engine([], windows=RequestWindows()))
    for ev in _errored_stream(n, causes=causes):
        engine.feed(ev)
    engine.flush()
    return c


def test_requests_are_capped_per_page_and_the_page_says_so():
    c = _collect(100, causes=4, max_requests=5, max_per_cause=2)
    assert c.errored == 20 and len(c.requests) == 5 and c.omitted_cap == 15
    page = Page(html_report.render([], c))
    assert len(page.all("article", "req")) == 5
    body = " ".join(page.body.split())
    assert "20 ended in error, 5 shown with their waterfall (at most 5, at most 2 with the same root cause)" in body
    assert "15 not shown (15 over the limit, 0 repeating a root cause)" in body
    assert "20 request(s) ended in error; 5 have a waterfall, the others are left out" in body


def test_requests_with_the_same_root_cause_are_capped_and_the_page_says_so():
    c = _collect(100, causes=2, max_requests=5, max_per_cause=2)
    types = [e["summary"]["root_cause"]["exception_type"] for e in c.requests]
    assert sorted(types) == ["Error0", "Error0", "Error1", "Error1"]
    assert c.errored == 20 and c.omitted_same_cause == 16 and c.omitted_cap == 0
    body = " ".join(Page(html_report.render([], c)).body.split())
    assert "16 not shown (0 over the limit, 16 repeating a root cause)" in body


def test_incidents_are_capped_most_severe_first_and_the_page_says_so(monkeypatch):
    monkeypatch.setattr(html_report, "MAX_INCIDENTS", 3)

    def inc(n, sev):
        t = f"2017-06-06T09:{n:02d}:00.000+00:00"
        return {"id": f"{n:024x}", "type": "disk_full", "rule": "disk_full.enospc", "severity": sev,
                "status": "resolved", "title": f"incident {n}", "summary": "s", "host": "h", "hosts": ["h"],
                "service": "nova-compute", "services": ["nova-compute"], "first_seen": t, "last_seen": t,
                "count": 1, "resources": {}, "request_ids": [], "details": {}, "evidence": [],
                "probable_cause": "c", "remediation": "r"}

    incidents = [inc(1, "warning"), inc(2, "critical"), inc(3, "error"), inc(4, "warning"), inc(5, "error")]
    page = Page(html_report.render(incidents))
    assert [a["id"] for a in page.all("article", "inc")] == ["inc-2", "inc-3", "inc-5"]
    body = " ".join(page.body.split())
    assert "Incidents: 5 found, the 3 most severe (most recent first within a severity) are shown" in body
    assert "5 incident(s), 3 shown (the most severe" in body


def test_evidence_messages_are_cut_and_the_page_says_so():
    incident = {"id": "0" * 24, "type": "known_issue", "rule": "x", "severity": "error", "status": "open",
                "title": "t", "summary": "s", "host": "h", "hosts": ["h"], "service": "s", "services": ["s"],
                "first_seen": "2017-06-06T09:00:00+00:00", "last_seen": "2017-06-06T09:00:00+00:00",
                "count": 1, "resources": {}, "request_ids": [], "details": {}, "probable_cause": "c",
                "remediation": "r", "evidence": [{"@timestamp": "2017-06-06T09:00:00+00:00", "host": "h",
                                                  "service": "s", "level": "ERROR", "message": "x" * 1900 + "END"}]}
    body = Page(html_report.render([incident])).body
    assert "x" * html_report.MESSAGE_CHARS + " [...]" in body and "END" not in body
    assert f"messages cut at {html_report.MESSAGE_CHARS:,} characters" in body


def test_tens_of_thousands_of_records_keep_memory_and_the_page_small():
    c = html_report.Collector()
    engine = c.wrap(Engine([], windows=RequestWindows()))
    peak = 0
    started = time.monotonic()
    for i, ev in enumerate(_errored_stream(20_000, causes=15)):        # 60,000 records
        engine.feed(ev)
        if i % 1000 == 0:
            peak = max(peak, len(c._open))
    engine.flush()
    assert peak < 3_000                      # only the windows open within the gap are followed
    assert len(c._open) == 0 and not c._wanted
    assert c.errored == 4_000 and len(c.requests) == html_report.MAX_REQUESTS
    page = html_report.render([], c)
    assert len(page.encode()) < 1_500_000
    assert time.monotonic() - started < 60


# ============================================================ hostile input

def test_text_from_the_logs_is_escaped(tmp_path):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    host = 'c"><i>7'
    log = tmp_path / "logs" / host / "nova" / "nova-compute.log"
    log.parent.mkdir(parents=True)
    log.write_text(_line(5, 4242, "ERROR", "nova.compute.manager", "req-0c0c0c0c-1111-4222-8333-444444444444",
                         f"[Errno 28] No space left on device: '/var/lib/nova/instances/{evil}'")
                   + _line(6, 4242, "ERROR", "nova.compute.manager", "req-0c0c0c0c-1111-4222-8333-444444444444",
                           f"Build failed: ValueError: {evil}"))
    incidents, collector, stats = run(tmp_path / "logs")
    assert incidents and collector.requests
    text = html_report.render(incidents, collector, stats=stats, sources=[f"logs/{evil}"])
    page = assert_self_contained(text)
    assert "<script" not in text and "<img" not in text and "<i>" not in text
    assert html.escape(evil) in text
    assert evil in page.body and host in page.body
    assert all(a.get("style", "").startswith("left:") for a in page.all("i"))    # grid lines only


# ============================================================ command line

def test_html_with_requests_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(SEEDS / "S20"), "--requests",
                        "--html", str(tmp_path / "r.html")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--html goes with the incident analysis" in r.stderr
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_report_path_fails_before_the_analysis(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(SEEDS / "S20"),
                        "--html", str(tmp_path / "missing" / "r.html")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "incident" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(SEEDS / "S20"),
                        "--html", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_the_seeds_report(tmp_path):
    """All seed cases together: every incident and errored request on one page."""
    incidents, collector, stats = run(*sorted(p for p in SEEDS.iterdir() if p.is_dir()))
    out = tmp_path / "seeds.html"
    html_report.write(str(out), html_report.render(incidents, collector, stats=stats))
    page = assert_self_contained(out.read_text())
    assert len(page.all("article", "inc")) == len(incidents) > 5
    assert len(page.all("article", "req")) == collector.errored == len(collector.requests) >= 5
    assert not list(tmp_path.glob(".osloscope-report-*"))        # the temporary file is gone
