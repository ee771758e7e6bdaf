"""A progress bar on stderr for long runs (only when stderr is a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "reading", enabled: bool | None = None,
                 stream=None) -> None:
        self.stream = stream or sys.stderr
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._shown = 0.0
        self._start = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown >= 0.2:
            self._shown = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.done / max(now - self._start, 1e-6) / 1e6
        self.stream.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}%  {rate:6.1f} MB/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
