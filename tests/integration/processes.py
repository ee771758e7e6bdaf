"""The processes the integration tests run (osloscope commands, rsyslogd):
started with their output in a log file, stopped with SIGTERM (SIGKILL after
a timeout), killed on purpose, and their log's tail for failure messages."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OSLOSCOPE = [sys.executable, "-m", "pipeline.cli"]


class Process:
    def __init__(self, argv: list[str], log_path: Path, *, env: dict | None = None,
                 cwd: Path = ROOT, stop_timeout: float = 60.0, name: str | None = None) -> None:
        self.argv = argv
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.name = name or Path(argv[0]).name

    def start(self) -> "Process":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")


def worker(env: dict, log_path: Path) -> Process:
    """``osloscope worker`` with one test's settings (not started yet)."""
    return Process(OSLOSCOPE + ["worker"], log_path, env=env, name="osloscope worker")


def wait_for(pred, timeout: float, what: str, *procs: Process, every: float = 0.5):
    """Poll ``pred`` until it returns something true (returned); fail after
    ``timeout`` seconds, or at once when one of ``procs`` has exited, with its log."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        for p in procs:
            if p.exited():
                raise AssertionError(f"{p.name} exited ({p.proc.returncode}) waiting for {what}:\n{p.tail()}")
        time.sleep(every)
    logs = "".join(f"\n--- {p.name}:\n{p.tail()}" for p in procs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}){logs}")
