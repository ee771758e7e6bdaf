"""The built-in detectors' words: titles, probable causes and remediations,
one TOML file per detector (``<incident type>.toml``), kept as data beside
the signature library so that reviewing or correcting what an incident
tells an operator never means editing matching code."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=None)
def load(detector: str) -> dict:
    """The texts of ``detector`` (its incident type), parsed once."""
    return tomllib.loads(files(__package__).joinpath(f"{detector}.toml").read_text("utf-8"))
