"""Worker self-metrics: counters per stage, consumer lag; Prometheus text
exposition and a one-line summary for the periodic log line."""
from __future__ import annotations

import time
from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], int] = defaultdict(int)
        self.last_offset: dict[tuple[str, int], int] = {}
        self.lag: dict[tuple[str, int], int] = {}
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.started = time.time()

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
        lines += ["# HELP osloscope_uptime_seconds Seconds since the worker started.",
                  "# TYPE osloscope_uptime_seconds gauge",
                  f"osloscope_uptime_seconds {time.time() - self.started:.1f}"]
        return "\n".join(lines) + "\n"
