"""``osloscope analyze --html`` in a real headless Chromium.

Debian's ``chromium`` is installed by the module fixture when missing (root and
apt-get needed, as for rsyslog in test_shippers_rsyslog.py). The browser runs
headless with every way out closed (``--proxy-server`` on a closed port,
``MAP * ~NOTFOUND`` host resolution, background networking off) and is driven
through the DevTools protocol over a pipe (``--remote-debugging-pipe``: no
websocket client needed). The page is opened from its ``file://`` URL; every
network request the page makes (Network.requestWillBeSent), every console
message, log entry (CSP violations, failed loads) and uncaught exception is
recorded. The report must load with no request but its own file and no error,
its incidents (evidence, cause, fix), timeline and waterfalls must be in the
rendered DOM and laid out (non-empty boxes inside the page), and the screenshot
is written to tests/artifacts/ (report.png: the top of the page, as in the
README; report-full.png: the whole page; plus the DOM and Chromium's log).

A control page with an external image, a stylesheet and a console.error must be
caught by the same checks: they can fail.

The data: deploy/samples plus a boot-from-volume failure written here (nova-api
-> nova-conductor -> nova-compute gives up waiting for a volume that cinder-volume
on another host could not create: the image conversion directory is full),
linked from nova's request to cinder's by the volume id (seed 002's chain).
"""
from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"
ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTH = 1280
TOP = 1850              # report.png: the header, the timeline and the first two incidents with their waterfalls

USER = "c49d86f8a39148bb809d2da44811ca3b f19126d9035d4209b363386e8e267129 - - -"
NOVA_REQ = "req-5b2f6c1e-8d4a-4f3b-9e21-6a7c0d9e8f10"
CINDER_REQ = "req-9a0e4d7c-2b1f-4c83-a5d6-e7f8091a2b3c"
INSTANCE = "4d3c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
VOLUME = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a09"
IMAGE = "c9509d39-78b3-4509-94b5-8498e8e6acea"
T0 = datetime(2017, 6, 6, 7, 40, 0)        # before the samples' incidents: #1 and #2


def _line(s: float, pid: int, level: str, logger: str, req: str, msg: str) -> str:
    t = T0 + timedelta(seconds=s)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {pid} {level} {logger} [{req} {USER}] {msg}\n"


def write_boot_from_volume_failure(root: Path) -> None:
    """<root>/<host>/<project>/<service>.log of one failing boot from volume."""
    files = {
        "controller-1/nova/nova-api.log": [
            _line(0.012, 28356, "INFO", "nova.api.openstack.compute.servers", NOVA_REQ,
                  f"Creating server from block device mapping: volume {VOLUME} (source image {IMAGE})"),
            _line(0.843, 28356, "INFO", "nova.osapi_compute.wsgi.server", NOVA_REQ,
                  '10.12.27.40 "POST /v2.1/servers HTTP/1.1" status: 202 len: 830 time: 0.8312'),
        ],
        "controller-1/nova/nova-conductor.log": [
            _line(0.991, 3344, "INFO", "nova.conductor.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Scheduling the build of the instance"),
            _line(1.377, 3344, "INFO", "nova.conductor.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Selected host compute-1 (node compute-1)"),
        ],
        "compute-1/nova/nova-compute.log": [
            _line(1.650, 665097, "INFO", "nova.compute.claims", NOVA_REQ,
                  f"[instance: {INSTANCE}] Attempting claim: memory 2048 MB, disk 20 GB, vcpus 1 CPU"),
            _line(1.651, 665097, "INFO", "nova.compute.claims", NOVA_REQ, f"[instance: {INSTANCE}] Claim successful"),
            _line(2.104, 665097, "INFO", "nova.virt.block_device", NOVA_REQ,
                  f"[instance: {INSTANCE}] Booting with volume {VOLUME} at /dev/vda"),
            _line(67.512, 665097, "ERROR", "nova.compute.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Instance failed block device setup: VolumeNotCreated: Volume {VOLUME} "
                  "did not finish being created even after we waited 65 seconds or 21 attempts. "
                  "And its status is error."),
            _line(67.630, 665097, "ERROR", "nova.compute.manager", NOVA_REQ,
                  f"[instance: {INSTANCE}] Build of instance {INSTANCE} aborted: Block Device Mapping is Invalid."),
        ],
        "block-1/cinder/cinder-volume.log": [
            _line(2.603, 3012, "INFO", "cinder.volume.flows.manager.create_volume", CINDER_REQ,
                  f"Volume {VOLUME}: being created as image with specification: {{'status': u'creating', "
                  f"'image_id': '{IMAGE}', 'volume_name': u'volume-{VOLUME}'}}"),
            _line(3.118, 3012, "INFO", "cinder.image.image_utils", CINDER_REQ,
                  f"Image download 20480.00 MB for volume {VOLUME}"),
            _line(61.240, 3012, "ERROR", "cinder.image.image_utils", CINDER_REQ,
                  "Insufficient free space on /var/lib/cinder/conversion for image conversion."),
        ],
    }
    for rel, lines in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))


# ============================================================ Chromium

def _chromium_binary() -> str | None:
    return next((b for b in (shutil.which("chromium"), "/usr/bin/chromium") if b and os.access(b, os.X_OK)),
                None)


def _version(binary: str | None) -> str | None:
    if binary is None:
        return None
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (needs root)."""
    binary = _chromium_binary()
    if _version(binary):
        return binary
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail("chromium is missing and cannot be installed here (needs root and apt-get: "
                    "apt-get install chromium)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            pytest.fail(f"installing chromium failed: {' '.join(cmd)} exited {r.returncode}:\n"
                        f"{(r.stdout + r.stderr)[-3000:]}")
    binary = _chromium_binary()
    if not _version(binary):
        pytest.fail(f"chromium installed but {binary} --version fails")
    return binary


FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--metrics-recording-only",
    "--mute-audio", "--font-render-hinting=none",
    # every way out closed: a request could only fail (and be seen failing)
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr", "--v=0",
)


class Browser:
    """Chromium driven by the DevTools protocol over ``--remote-debugging-pipe``
    (fd 3: commands in, fd 4: replies and events out, NUL-separated JSON)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # the child's ends out of the way of 3 and 4 before the child dup2()s them there
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 5)
        child_out = fcntl.fcntl(out_w, fcntl.F_DUPFD_CLOEXEC, 5)
        os.close(cmd_r)
        os.close(out_w)

        def fds() -> None:              # in the child: 3 and 4, inheritable (every other fd is CLOEXEC)
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log_path = workdir / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, "--remote-debugging-pipe",
                                      f"--user-data-dir={workdir / 'profile'}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=fds, close_fds=False)
        os.close(child_in)
        os.close(child_out)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(out_r, "rb", buffering=0)
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.session = None

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self._r.read(65536)
            if not chunk:
                for q in list(self._replies.values()):
                    q.put({"error": {"message": "chromium closed the pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self._replies:
                    self._replies[msg["id"]].put(msg)
                else:
                    with self._lock:
                        self.events.append(msg)

    def send(self, method: str, params: dict | None = None, *, session: bool = True, timeout: float = 60) -> dict:
        self._next += 1
        mid = self._next
        q: queue.Queue = queue.Queue()
        self._replies[mid] = q
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._w.write(json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply from chromium to {method} within {timeout} s") from None
        finally:
            del self._replies[mid]
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for ev in self.events:
                    if ev.get("method") == method:
                        return ev
            time.sleep(0.05)
        raise AssertionError(f"no {method} within {timeout} s")

    def open_page(self, url: str, height: int = 900) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
        with self._lock:
            self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        time.sleep(0.5)                     # anything late (a lazy image, a font) would show up now

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def screenshot(self, path: Path, *, full: bool, height: int = 900) -> None:
        import base64
        if full:
            h = int(self.send("Page.getLayoutMetrics")["cssContentSize"]["height"]) + 1
        else:
            h = height
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full,
                                                    "clip": {"x": 0, "y": 0, "width": WIDTH, "height": h,
                                                             "scale": 1}})["data"]
        path.write_bytes(base64.b64decode(data))

    def requests(self) -> list[str]:
        with self._lock:
            return [ev["params"]["request"]["url"] for ev in self.events
                    if ev.get("method") == "Network.requestWillBeSent"]

    def problems(self) -> list[str]:
        """Console messages of level warning/error, log entries, uncaught exceptions, failed loads."""
        out = []
        with self._lock:
            for ev in self.events:
                m, p = ev.get("method"), ev.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                    out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                   for a in p.get("args", [])))
                elif m == "Runtime.exceptionThrown":
                    out.append(f"exception: {p['exceptionDetails'].get('text')}")
                elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                    out.append(f"log {p['entry']['source']}/{p['entry']['level']}: {p['entry']['text']}")
                elif m == "Network.loadingFailed":
                    out.append(f"load failed: {p.get('errorText')}")
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._w.close()
        self._log.close()


@pytest.fixture
def browser(chromium, tmp_path):
    b = Browser(chromium, tmp_path)
    yield b
    b.close()


def analyze_html(cwd: Path, *paths: str) -> tuple[Path, subprocess.CompletedProcess]:
    """``osloscope analyze PATHS --html report.html`` in ``cwd``."""
    out = cwd / "report.html"
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", *paths, "--html", "report.html",
                        "--dead-letter", "-", "--jobs", "1"], cwd=cwd, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    return out, r


# ============================================================ tests

LAYOUT = """JSON.stringify((() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const page = document.documentElement.scrollWidth;
  return {
    page,
    scripts: document.scripts.length,
    incidents: [...document.querySelectorAll('article.inc')].map(a => ({
      id: a.id, title: a.querySelector('h3').textContent,
      cause: a.querySelector('p.cause').textContent, fix: a.querySelector('p.fix').textContent,
      evidence: a.querySelectorAll('table.ev tbody tr:not(.gap)').length, box: box(a)})),
    bars: [...document.querySelectorAll('#timeline a.tl-bar')].map(a => ({href: a.getAttribute('href'),
      box: box(a)})),
    hosts: [...document.querySelectorAll('#timeline .row .who')].map(e => e.firstChild.textContent),
    waterfalls: [...document.querySelectorAll('article.req')].map(a => ({
      id: a.id, key: a.querySelector('h3 .mono').textContent,
      rows: [...a.querySelectorAll('.row')].map(r => ({
        service: r.querySelector('.who').firstChild.textContent, rc: r.classList.contains('rc'),
        linked: r.classList.contains('linked'),
        bars: [...r.querySelectorAll('.wf-bar')].map(box), errors: r.querySelectorAll('.wf-err').length})),
      rc: (a.querySelector('.rc') || {}).textContent || '',
      rcLabel: (a.querySelector('.wf-rclbl') || {}).textContent || '', box: box(a)})),
    limits: document.querySelector('#limits').textContent,
  };
})())"""


def test_report_loads_offline_without_errors_and_shows_incidents_and_waterfalls(browser, tmp_path):
    shutil.copytree(SAMPLES, tmp_path / "deploy" / "samples")      # relative paths: the page names them
    flow = tmp_path / "flow"
    write_boot_from_volume_failure(flow)
    report, run = analyze_html(tmp_path, "deploy/samples", "flow")
    text = report.read_text()
    assert "report written to report.html" in run.stderr

    url = report.resolve().as_uri()
    browser.open_page(url, height=TOP)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report.png", full=False, height=TOP)
    browser.screenshot(ARTIFACTS / "report-full.png", full=True)
    dom = browser.js("document.documentElement.outerHTML")
    (ARTIFACTS / "report.dom.html").write_text(dom)
    shutil.copy(browser.log_path, ARTIFACTS / "report.chromium.log")

    assert browser.requests() == [url], "the page loaded something besides itself"
    assert browser.problems() == []
    assert "ERR_PROXY" not in browser.log_path.read_text(errors="replace")
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000

    got = json.loads(browser.js(LAYOUT))
    assert got["scripts"] == 0
    assert got["page"] <= WIDTH, "the page is wider than the window"
    # every incident of the analysis, with evidence, cause and fix, laid out
    jsonl = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", "deploy/samples", "flow",
                            "--format", "jsonl", "--dead-letter", "-", "--jobs", "1"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300).stdout
    incidents = [json.loads(line) for line in jsonl.splitlines()]
    assert len(got["incidents"]) == len(incidents) >= 9
    for inc, shown in zip(incidents, got["incidents"]):
        assert inc["title"] in shown["title"]
        assert shown["cause"].strip() and shown["fix"].strip()
        assert shown["evidence"] == len(inc["evidence"]) >= 1
        assert shown["box"][2] > 600 and shown["box"][3] > 100
    types = {i["type"] for i in incidents}
    assert {"disk_full", "retry_exhausted"} <= types
    # the timeline: one row per host, a visible bar per incident and host
    assert got["hosts"] == sorted({h for i in incidents for h in i["hosts"]})
    assert len(got["bars"]) == sum(len(i["hosts"]) for i in incidents)
    for bar in got["bars"]:
        left, _top, width, height = bar["box"]
        assert width >= 6 and height >= 10 and 0 <= left and left + width <= WIDTH
    # the boot from volume: nova-api -> nova-conductor -> nova-compute, cinder-volume linked, named
    wf = next(w for w in got["waterfalls"] if w["key"] == NOVA_REQ)
    services = [r["service"] for r in wf["rows"]]
    assert services == ["nova-api", "nova-conductor", "nova-compute", "cinder-volume"]
    assert all(r["bars"] and r["bars"][0][2] >= 3 for r in wf["rows"])
    compute, cinder = wf["rows"][2], wf["rows"][3]
    assert compute["errors"] == 2 and cinder["errors"] == 1
    assert cinder["rc"] and cinder["linked"] and not any(r["rc"] for r in wf["rows"][:3])
    assert "cinder-volume" in wf["rc"] and "Insufficient free space" in wf["rc"]
    assert wf["rcLabel"] == "root cause: cinder-volume"
    # bars go forward in time: nova-api starts first, the compute error comes after cinder's
    starts = [r["bars"][0][0] for r in wf["rows"]]
    assert starts == sorted(starts)
    assert "<script" not in text.lower()


def test_hostile_log_text_stays_text_in_the_browser(browser, tmp_path):
    evil = '<script>console.error("xss")</script><img src="http://203.0.113.9/x.png" onerror="alert(1)">'
    log = tmp_path / "logs" / "compute-9" / "nova" / "nova-compute.log"
    log.parent.mkdir(parents=True)
    log.write_text(_line(5, 4242, "ERROR", "nova.compute.manager", "req-0c0c0c0c-1111-4222-8333-444444444444",
                         f"[Errno 28] No space left on device: '/var/lib/nova/instances/{evil}'"))
    report, _ = analyze_html(tmp_path, "logs")
    url = report.resolve().as_uri()
    browser.open_page(url)
    assert browser.requests() == [url]
    assert browser.problems() == []
    got = browser.js("JSON.stringify({scripts: document.scripts.length, imgs: document.images.length, "
                     "text: document.body.innerText})")
    got = json.loads(got)
    assert got["scripts"] == 0 and got["imgs"] == 0
    assert evil in got["text"]


def test_the_checks_catch_a_page_that_reaches_out(browser, tmp_path):
    """The control: what the report must not do is seen by the same checks."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
                   '</head><body><img src="http://203.0.113.9/x.png"><script>console.error("boom")</script>'
                   "</body></html>")
    url = bad.resolve().as_uri()
    browser.open_page(url)
    reached = browser.requests()
    assert url in reached and any(u.startswith("http") for u in reached), reached
    problems = browser.problems()
    assert any("boom" in p for p in problems), problems
    assert any(p.startswith("load failed") for p in problems), problems
