"""Graceful stop for long-running commands (ship, watch): the first SIGINT or
SIGTERM asks the loop to finish its work and return, a second one interrupts."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def stop_on_signals(on_stop: Callable[[str], None] | None = None) -> Iterator[threading.Event]:
    """Yield an Event that SIGINT/SIGTERM set (``on_stop`` gets the signal's
    name); a second signal raises KeyboardInterrupt. The previous handlers
    are back on exit."""
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        if on_stop is not None:
            on_stop(signal.Signals(signum).name)
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
