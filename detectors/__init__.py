"""osloscope detectors: pure domain code (events, incidents, detectors, engine).

Imports no streaming or storage library and never reads the wall clock;
time arrives with the events or as the argument of ``advance``.
"""
from .engine import Engine, default_detectors
from .model import Event, event_from_doc, event_to_doc

__all__ = ["Engine", "Event", "default_detectors", "event_from_doc", "event_to_doc"]
