"""The signature library (``detectors/signatures/<id>.toml``, one signature each): load,
validate, count and try it. ``known_issue`` is the detector that matches it.

``load_signatures()`` reads every ``*.toml`` of the bundled
``detectors/signatures`` (or the given directories), validates each against
``schemas/signature.schema.json`` with a small built-in validator (the
keywords that schema uses; jsonschema is only a test dependency) plus the
checks a schema cannot express (regexes compile, fields are named groups,
file name = id, ``explains`` names existing signatures), and raises one
:class:`SignatureError` listing every problem of every file, each with its file
and field.

``count_by_service()`` is the summary of ``osloscope signatures list``;
``match_files()`` runs only the library over log files (``osloscope signatures test``).
"""
from __future__ import annotations

import importlib.resources
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, Iterator

from pipeline import resources

EVENT_FIELDS = ("host", "service", "logger", "instance", "request_id")
PLACEHOLDERS = ("host", "service", "logger")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class SignatureError(Exception):
    """Invalid signature files; ``errors`` holds one ``file: field: problem`` per line."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} problem(s) in the signature library:\n  "
                         + "\n  ".join(self.errors))


# -- a structural validator for the JSON Schema keywords signature.schema.json uses --
_TYPES = {"string": str, "array": list, "object": dict, "boolean": bool}


def _type_ok(value: Any, name: str) -> bool:
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "null":
        return value is None
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict, path: str = "") -> list[str]:
    """Problems of ``value`` against ``schema`` as ``field: message`` strings."""
    where = path or "(top level)"
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_type_ok(value, t) for t in names):
            return [f"{where}: expected {' or '.join(names)}, got {type(value).__name__} {value!r:.60}"]
    errs: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{where}: {value} is less than {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{where}: {value} must be greater than {schema['exclusiveMinimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if schema.get("uniqueItems"):
            seen: list = []
            for item in value:
                if item in seen:
                    errs.append(f"{where}: duplicate item {item!r:.60}")
                seen.append(item)
        if "items" in schema:
            for i, item in enumerate(value):
                errs.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                errs.append(f"{path + '.' if path else ''}{name}: required field missing")
        props = schema.get("properties", {})
        for name, item in value.items():
            sub = f"{path}.{name}" if path else name
            if name in props:
                errs.extend(schema_errors(item, props[name], sub))
            elif schema.get("additionalProperties") is False:
                errs.append(f"{sub}: unknown field (allowed: {', '.join(sorted(props))})")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs.extend(schema_errors(item, schema["additionalProperties"], sub))
    return errs


def signature_schema() -> dict:
    """The signature JSON Schema (a missing file raises resources.MissingResource)."""
    return resources.schema("signature")


# -- semantic checks -------------------------------------------------------------
def semantic_errors(doc: dict, stem: str) -> list[str]:
    errs: list[str] = []
    if doc.get("id") != stem:
        errs.append(f"id: {doc.get('id')!r} must equal the file name {stem!r}")
    groups: set[str] = set()
    for field in ("patterns", "exclude", "recovery"):
        items = doc.get(field)
        if not isinstance(items, list):
            continue
        for i, rx in enumerate(items):
            if not isinstance(rx, str):
                continue
            try:
                compiled = re.compile(rx)
            except re.error as exc:
                errs.append(f"{field}[{i}]: invalid regex: {exc}")
                continue
            if field != "exclude":
                groups.update(compiled.groupindex)
    fields = [f for f in doc.get("fields") or [] if isinstance(f, str)]
    for i, name in enumerate(fields):
        if name not in groups and name not in EVENT_FIELDS:
            errs.append(f"fields[{i}]: {name!r} is neither a named group of the patterns nor one of "
                        f"{', '.join(EVENT_FIELDS)}")
    for i, name in enumerate(doc.get("dedupe_key") or []):
        if isinstance(name, str) and name not in fields and name not in EVENT_FIELDS:
            errs.append(f"dedupe_key[{i}]: {name!r} is not in fields")
    for field in ("title", "probable_cause", "remediation"):
        text = doc.get(field)
        if isinstance(text, str):
            for name in _PLACEHOLDER.findall(text):
                if name not in fields and name not in PLACEHOLDERS:
                    errs.append(f"{field}: placeholder {{{name}}} is not an extracted field")
    if doc.get("recovery_examples") and not doc.get("recovery"):
        errs.append("recovery_examples: given without recovery patterns")
    if doc.get("persist_seconds") and not doc.get("recovery"):
        errs.append("persist_seconds: needs recovery patterns (what ends the condition)")
    return errs


# -- loading -----------------------------------------------------------------------
def bundled_dir():
    return importlib.resources.files("detectors").joinpath("signatures")


def _files(dirs: Iterable | None) -> list[tuple[str, str, str]]:
    """(display name, stem, text) of every signature file, in a stable order."""
    out = []
    if dirs is None:
        for entry in sorted(bundled_dir().iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                out.append((f"detectors/signatures/{entry.name}", entry.name[:-5], entry.read_text("utf-8")))
        return out
    for d in dirs:
        path = Path(d)
        if not path.is_dir():
            raise SignatureError([f"{d}: not a directory"])
        for f in sorted(path.glob("*.toml")):
            out.append((str(f), f.stem, f.read_text("utf-8")))
    return out


_bundled: list[dict] | None = None


def bundled() -> list[dict]:
    """The bundled signatures, loaded and validated once per process."""
    global _bundled
    if _bundled is None:
        _bundled = load_signatures()
    return _bundled


def engine(scope: str = "all", settings=None, *, windows: bool | None = None):
    """The detectors' engine for ``scope`` (detectors.registry) with the bundled
    signatures and the detector settings of ``settings`` (None: defaults)."""
    from detectors import registry

    config = settings.detectors.config() if settings is not None else None
    return registry.engine(scope, config, bundled(), windows=windows)


def load_signatures(dirs: Iterable | None = None) -> list[dict]:
    """Every signature, validated; raises SignatureError listing all problems."""
    schema = signature_schema()
    errors: list[str] = []
    docs: list[dict] = []
    parsed: list[tuple[str, dict]] = []
    origin: dict[str, str] = {}
    for name, stem, text in _files(dirs):
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"{name}: (TOML): {exc}")
            continue
        parsed.append((name, doc))
        problems = schema_errors(doc, schema) + semantic_errors(doc, stem)
        errors.extend(f"{name}: {p}" for p in problems)
        ident = doc.get("id")
        if isinstance(ident, str) and ident in origin:
            errors.append(f"{name}: id: {ident!r} already defined in {origin[ident]}")
            continue
        if isinstance(ident, str):
            origin[ident] = name
        if not problems:
            docs.append(doc)
    for name, doc in parsed:               # cross-file references, also of files with other problems
        explains = doc.get("explains")
        for i, other in enumerate(explains if isinstance(explains, list) else []):
            if isinstance(other, str) and other not in origin:
                errors.append(f"{name}: explains[{i}]: no signature {other!r}")
    if errors:
        raise SignatureError(errors)
    return sorted(docs, key=lambda d: d["id"])


def count_by_service(signatures: Iterable[dict]) -> dict[str, int]:
    """How many signatures apply to each service (as written: ``nova-*`` is one entry);
    those without ``services`` apply to any service and count under ``"any"``."""
    counts: dict[str, int] = {}
    for sig in signatures:
        for service in sig.get("services") or ["any"]:
            counts[service] = counts.get(service, 0) + 1
    return counts


def match_files(files, tz: str, signatures: list[dict], stats) -> Iterator[tuple]:
    """``(log file, event, signature, extracted fields)`` for every record of ``files`` (parsed as
    ``analyze`` does, counted in ``stats``) that a signature matches, in file order."""
    from detectors.known_issues import KnownIssues

    from pipeline.local.analyze import file_events

    library = KnownIssues(signatures)
    for lf in files:
        for ev in file_events(lf, tz, stats):
            for sig, fields in library.match(ev):
                yield lf, ev, sig, fields
