"""osloscope detectors: pure domain code (events, incidents, detectors, engine).

Imports no streaming or storage library and never reads the wall clock;
time arrives with the events or as the argument of ``advance``. The
detectors are listed in ``registry``; ``topology`` holds what is known of
how the OpenStack services fit together.
"""
from .engine import Emitted, Engine
from .model import Event

__all__ = ["Emitted", "Engine", "Event"]
