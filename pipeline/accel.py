"""The optional native core (``pipeline._native``, Rust, built from
``pipeline/rust`` when a Rust toolchain is present at install time).

It folds and extracts ASCII text exactly as ``pipeline.fold`` and
``pipeline.extract`` do (tests/test_native_*.py prove the events equal on
the corpus and on generated input); the parser sends everything else --
non-ASCII chunks, single lines, JSON envelopes -- down the Python path,
handing a stream's open records from one side to the other when it
switches. ``OSLOSCOPE_NATIVE=0`` turns it off.
"""
from __future__ import annotations

import os
from functools import lru_cache

try:
    from . import _native
except ImportError:          # no Rust toolchain at install time: pure Python
    _native = None
if _native is not None and not (hasattr(_native, "Stream") and hasattr(_native, "redact_text")):
    _native = None           # a stale build from before the glue (or its native redaction) existed

from .fold import Record

_new_record = object.__new__
RECORD_FIELDS = ("ts_text", "pid", "level", "logger", "rest", "lines", "cont", "tb", "offset", "orphan",
                 "host", "prog", "syslog_ts", "kind", "reason", "access", "tb_last")


def available() -> bool:
    return _native is not None


def enabled(requested: bool | None = None) -> bool:
    """Use the native core? ``requested`` None: yes when it is built and
    ``OSLOSCOPE_NATIVE`` is not ``0``."""
    if requested is None:
        requested = os.environ.get("OSLOSCOPE_NATIVE", "1") != "0"
    if requested and _native is None:
        if os.environ.get("OSLOSCOPE_NATIVE") == "1":
            raise RuntimeError("OSLOSCOPE_NATIVE=1 but pipeline._native is not built "
                               "(install with a Rust toolchain: `make install`)")
        return False
    return bool(requested)


@lru_cache(maxsize=16)
def keywords(words: tuple[str, ...]):
    """The native matcher of a vocabulary's words, built once per process."""
    return _native.Keywords(list(words))


def record_from_dict(d: dict) -> Record:
    """A Python Record from the native folder's record dict."""
    rec = _new_record(Record)
    vals = dict(d)
    if vals.get("syslog_ts") is not None:
        vals["syslog_ts"] = tuple(vals["syslog_ts"])
    if vals.get("access") is not None:        # open records are never access lines; re-match to be safe
        from .lineformat import APACHE
        vals["access"] = APACHE.match(vals["lines"][0])
    rec.__dict__ = vals
    return rec


def record_to_dict(rec: Record) -> dict:
    d = {name: getattr(rec, name) for name in RECORD_FIELDS}
    d["lines"], d["cont"], d["tb"] = list(rec.lines), list(rec.cont), list(rec.tb)
    if d["syslog_ts"] is not None:
        d["syslog_ts"] = list(d["syslog_ts"])
    if d["access"] is not None:
        d["access"] = list(d["access"].groups())
    return d
