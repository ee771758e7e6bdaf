"""Files osloscope ships beside its code: the JSON Schemas (``schemas/``),
the Kibana saved objects (``deploy/kibana/``) and the templates of the local
services (``deploy/local/``).

In a source checkout they are read where they are. A wheel carries them as
the data packages ``pipeline._data.*`` (``pyproject.toml`` maps those
directories there), read through ``importlib.resources``. A file found in
neither place is an error that names it: nothing is silently skipped.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent

# kind -> (directory in a source checkout, package in a wheel)
KINDS = {
    "schemas": ("schemas", "pipeline._data.schemas"),
    "kibana": ("deploy/kibana", "pipeline._data.kibana"),
    "services": ("deploy/local", "pipeline._data.services"),
}


class MissingResource(RuntimeError):
    """A file osloscope ships is not installed (a broken install or checkout)."""


def path(kind: str, name: str) -> Path:
    """The file ``name`` of ``kind`` (see KINDS)."""
    directory, package = KINDS[kind]
    candidate = _SOURCE_ROOT / directory / name
    if candidate.is_file():
        return candidate
    try:
        packaged = Path(str(files(package).joinpath(name)))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        packaged = None
    if packaged is not None and packaged.is_file():
        return packaged
    raise MissingResource(f"osloscope is installed without {directory}/{name} "
                          f"(looked in {candidate.parent} and in the package {package}); "
                          "reinstall osloscope")


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """The JSON Schema ``schemas/<name>.schema.json``, parsed."""
    return json.loads(path("schemas", f"{name}.schema.json").read_text("utf-8"))
