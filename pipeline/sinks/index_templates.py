"""Elasticsearch index templates, derived from the JSON Schemas in ``schemas/``.

The schemas are the single description of an event and an incident; the
mappings follow from them so the two cannot drift apart:

- ``string`` with ``format: date-time`` -> ``date``; other strings ->
  ``keyword``, except the free-text fields in ``TEXT`` (``text``, with a
  ``keyword`` sub-field on the short ones so dashboards can aggregate them);
- ``integer`` -> ``long``, ``number`` -> ``double``, ``boolean`` -> ``boolean``;
- objects -> ``properties``; arrays -> the mapping of their items;
- free-form objects (``details``) are stored but not indexed, extra keys of
  ``openstack.resources``/``resources`` map to ``keyword`` dynamically;
- ``event.original`` (the raw record: header plus ``message`` and the stack
  trace, both indexed on their own) is kept in ``_source`` only, as ECS
  maps it (``index: false``): analysing it again would cost about a third
  of the indexing time and add nothing a search on ``message`` or
  ``error.stack_trace`` cannot find.

Unknown fields never break indexing: ``dynamic: true`` with every new string
mapped to ``keyword``.
"""
from __future__ import annotations

from typing import Any

from pipeline import resources


# fields holding prose: full-text searchable (dotted paths from the document root)
TEXT = {
    "message": 2048, "event.reason": 1024, "error.message": 2048,
    "error.stack_trace": None, "title": 1024, "summary": None, "probable_cause": None,
    "remediation": None, "evidence.message": None, "exceptions.message": 2048,
    "root_cause.message": 2048,
}
# fields stored in _source only (ECS: event.original is not indexed)
STORED_ONLY = {"event.original"}
DYNAMIC_STRINGS = {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 4096}}


def load_schema(name: str) -> dict:
    return resources.schema(name)


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"unsupported $ref {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _types(node: dict) -> list[str]:
    t = node.get("type")
    if t is None:
        if "enum" in node:
            kinds = {type(v).__name__ for v in node["enum"] if v is not None}
            return ["integer" if k == "int" else "string" if k == "str" else k for k in kinds]
        for key in ("anyOf", "oneOf"):
            if key in node:
                out: list[str] = []
                for alt in node[key]:
                    out.extend(_types(alt))
                return out
        return []
    return [t] if isinstance(t, str) else [x for x in t if x != "null"]


def _alternatives(node: dict, root: dict) -> list[dict]:
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [_resolve(alt, root) for alt in node[key]]
    return [node]


def _field(node: dict, root: dict, path: str) -> dict:
    node = _resolve(node, root)
    alts = _alternatives(node, root)
    for alt in alts:
        if "items" in alt or "array" in _types(alt):
            items = alt.get("items")
            if isinstance(items, dict):
                return _field(items, root, path)
    types = set()
    for alt in alts:
        types.update(_types(alt))
    if "object" in types or "properties" in node:
        props = node.get("properties")
        if not props:
            return {"type": "object", "enabled": False}
        return {"properties": _properties(props, root, path + ".")}
    if path in STORED_ONLY:
        return {"type": "keyword", "index": False, "doc_values": False}
    if path in TEXT:
        mapping: dict = {"type": "text"}
        if TEXT[path]:
            mapping["fields"] = {"keyword": {"type": "keyword", "ignore_above": TEXT[path]}}
        return mapping
    if "string" in types:
        if any(alt.get("format") == "date-time" for alt in alts):
            return {"type": "date"}
        return {"type": "keyword", "ignore_above": 4096}
    if "number" in types:
        return {"type": "double"}
    if "integer" in types:
        return {"type": "long"}
    if "boolean" in types:
        return {"type": "boolean"}
    return {"type": "keyword", "ignore_above": 4096}


def _properties(props: dict, root: dict, prefix: str = "") -> dict:
    return {name: _field(node, root, prefix + name) for name, node in props.items()}


def mappings(schema_name: str) -> dict:
    schema = load_schema(schema_name)
    props = _properties(schema.get("properties", {}), schema)
    return {"dynamic": True, "dynamic_templates": [{"strings_as_keywords": DYNAMIC_STRINGS}],
            "properties": props}


def _settings(shards: int = 1, replicas: int = 0) -> dict:
    return {"number_of_shards": shards, "number_of_replicas": replicas, "refresh_interval": "1s"}


def templates(es) -> dict[str, dict]:
    """{template name: body} for the indices named by ElasticsearchSettings ``es``."""
    meta = {"managed_by": "osloscope"}
    out = {
        "osloscope-events": {
            "index_patterns": [es.events_index_prefix + "*"],
            "priority": 200,
            "template": {"settings": _settings(), "mappings": mappings("event")},
            "_meta": {**meta, "schema": "event.schema.json"},
        },
        "osloscope-incidents": {
            "index_patterns": [es.incidents_index],
            "priority": 200,
            "template": {"settings": _settings(), "mappings": mappings("incident")},
            "_meta": {**meta, "schema": "incident.schema.json"},
        },
    }
    out["osloscope-requests"] = {
        "index_patterns": [es.requests_index],
        "priority": 200,
        "template": {"settings": _settings(), "mappings": mappings("request")},
        "_meta": {**meta, "schema": "request.schema.json"},
    }
    # templates for differently named (e.g. per-test) indices must not collide
    suffix = "" if es.events_index_prefix == "osloscope-events-" else "-" + _slug(es.events_index_prefix)
    return {name + suffix: body for name, body in out.items()}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
