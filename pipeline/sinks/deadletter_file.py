"""Dead letters of the local runs (``analyze``, ``watch``): one JSON object per line in a file,
the shape of ``codec.dead_letter``; ``-`` discards them. The file is opened (for appending) on
the first dead letter, so a run without one leaves no file."""
from __future__ import annotations

from pipeline import codec


class DeadLetterFile:
    """``count``: dead letters seen; ``written``: those written to ``path``. With ``flush``,
    every line reaches the file at once (``watch`` runs until it is stopped)."""

    def __init__(self, path: str | None, *, flush: bool = False) -> None:
        self.path = path or "-"
        self.flush = flush
        self.count = self.written = 0
        self._fh = None

    def write(self, ev) -> None:
        self.count += 1
        if self.path == "-":
            return
        if self._fh is None:
            self._fh = open(self.path, "ab")
        self._fh.write(codec.dumps(codec.dead_letter(ev)) + b"\n")
        self.written += 1
        if self.flush:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
