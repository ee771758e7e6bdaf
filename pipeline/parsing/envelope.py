"""JSON lines: oslo.log's own JSON records and shippers' envelopes.

* oslo.log ``JSONFormatter`` records (``levelname``, ``name``, ``message``,
  ``created``, ``process``, ``traceback`` as a list before oslo.log 8.0 and a
  string since, ``context``, ``extra``, ``hostname``) and the
  ``FluentFormatter`` dict (``level``, ``time``) become events directly;
* envelopes that carry one log line (or a multiline-merged record) in
  ``message`` (Filebeat, Vector, rsyslog omkafka JSON templates), ``log``
  (Fluent Bit tail) or ``@message`` (logstash ``oslofmt``), with host and
  file fields, are unwrapped and the line is parsed as if read from that
  host's file.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from detectors.model import Event
from detectors.topology import service_from_logger

from pipeline.parsing.extract import UUID_RE, access_fields, exception_of, is_request_id, parse_context, resources_of
from pipeline.parsing.timefmt import InvalidTimestamp, TimeParser


class Unwrapped(NamedTuple):
    message: str
    host: str | None
    path: str | None
    offset: int | None
    service: str | None
    header: str | None     # synthesized oslo prefix (logstash oslofmt), else None


def load(line: str) -> dict | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _get(obj: dict, *paths: str) -> Any:
    for path in paths:
        node: Any = obj
        for part in path.split("."):
            if not isinstance(node, dict):
                node = None
                break
            node = node.get(part)
        if node not in (None, ""):
            return node
    return None


def is_oslo_record(obj: dict) -> bool:
    return ("levelname" in obj or "level" in obj) and "name" in obj and "message" in obj \
        and ("created" in obj or "asctime" in obj or "time" in obj)


def unwrap(obj: dict) -> Unwrapped | None:
    """The log line inside a shipper envelope, with its host and file."""
    msg = obj.get("message")
    if not isinstance(msg, str):
        msg = obj.get("log") if isinstance(obj.get("log"), str) else None
    header = None
    if msg is None and isinstance(obj.get("@message"), str):
        msg = obj["@message"]
        header = _logstash_header(obj, msg)
    if msg is None:
        return None
    host = _get(obj, "host.name", "host.hostname", "agent.hostname", "hostname", "kubernetes.host")
    if host is None and isinstance(obj.get("host"), str):
        host = obj["host"]
    path = _get(obj, "log.file.path", "file", "filename", "filepath", "path", "log_file", "source")
    if not isinstance(path, str):
        path = None
    offset = _get(obj, "log.offset", "offset")
    service = _get(obj, "service.name", "programname", "app_name")
    return Unwrapped(msg, host if isinstance(host, str) else None, path,
                     offset if type(offset) is int and offset >= 0 else None,
                     service if isinstance(service, str) else None, header)


def _logstash_header(obj: dict, msg: str) -> str | None:
    """logstash ``oslofmt`` kept ``@message`` without ``ts pid LEVEL logger``."""
    level, module, pid = obj.get("loglevel"), obj.get("module"), obj.get("pid")
    if not (level and module and pid):
        return None
    nl = msg.find("\n")
    following = msg[nl + 1:nl + 24] if nl >= 0 else ""
    if following[:4].isdigit() and following[4:5] == "-":
        ts = following                       # the traceback lines' own asctime
    else:
        stamp = str(obj.get("@timestamp", ""))
        ts = stamp[:10] + " " + stamp[11:23]
    return f"{ts} {pid} {level} {module} "


# the host of a local file whose host nobody named (no --host, outside a
# <root>/<host>/... layout): sources.discover and the tailer's default; a
# record's own ``hostname`` replaces it
PLACEHOLDER_HOST = "unknown"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def oslo_event(obj: dict, tp: TimeParser, host: str | None, service: str | None,
               path: str | None, offset: int | None) -> Event:
    """An event from an oslo.log JSONFormatter / FluentFormatter record.

    ``host`` (given by the user, the directory layout or an envelope) wins
    over the record's ``hostname``, except the placeholder ``unknown``."""
    if not host or host == PLACEHOLDER_HOST:
        host = _str(obj.get("hostname")) or host
    created = obj.get("created", obj.get("time"))
    if isinstance(created, (int, float)):
        ts, stamp = tp.from_epoch(float(created))
    elif isinstance(obj.get("asctime"), str):
        text = obj["asctime"]
        if isinstance(obj.get("msecs"), (int, float)) and len(text) == 19:
            text = f"{text}.{int(obj['msecs']):03d}"
        ts, stamp = tp.parse(text.replace(",", "."))
    else:
        raise InvalidTimestamp("JSON record without created/asctime/time")
    logger = _str(obj.get("name"))
    ev = Event(ts=ts, timestamp=stamp, level=str(obj.get("levelname") or obj.get("level") or ""),
               logger=logger, message=str(obj.get("message", "")),
               host=host, file_path=path, offset=offset,
               pid=obj.get("process") if type(obj.get("process")) is int else None,
               origin_function=_str(obj.get("funcname") or obj.get("funcName")),
               origin_file=_str(obj.get("pathname")),
               origin_line=obj.get("lineno") if type(obj.get("lineno")) is int else None)
    ev.service = service or service_from_logger(logger, None)
    ev.original = orjson.dumps(obj).decode()
    ctx = obj.get("context") or {}
    extra = obj.get("extra") or {}
    if not isinstance(ctx, dict):
        ctx = {}
    if not isinstance(extra, dict):
        extra = {}
    merged = {**extra, **ctx}
    rid, gid = _str(merged.get("request_id")), _str(merged.get("global_request_id"))
    ev.request_id = rid if rid and is_request_id(rid) else None
    ev.global_request_id = gid if gid and is_request_id(gid) else None
    ev.user_id = _str(merged.get("user_id")) or _str(merged.get("user"))
    ev.project_id = _str(merged.get("project_id")) or _str(merged.get("project")) or _str(merged.get("tenant"))
    ev.user_name = _str(merged.get("user_name"))
    ev.project_name = _str(merged.get("project_name"))
    inst = merged.get("instance_uuid") or merged.get("resource_uuid") or merged.get("instance")
    if isinstance(inst, dict):
        inst = inst.get("uuid")
    if isinstance(inst, str) and UUID_RE.fullmatch(inst):
        ev.instance_id = inst.lower()
    if ev.request_id is None and isinstance(merged.get("user_identity"), str):
        parse_context(merged["user_identity"], ev)
    tb = obj.get("traceback")
    lines = tb if isinstance(tb, list) else (tb.split("\n") if isinstance(tb, str) else None)
    if lines:
        lines = [str(x).rstrip("\n") for x in lines]
        ev.stack_trace = "\n".join(lines).rstrip()
        ev.error_type, ev.error_message = exception_of(lines)
    elif isinstance(obj.get("error_summary"), str) and obj["error_summary"]:
        et, _, em = obj["error_summary"].partition(": ")
        ev.error_type, ev.error_message = et.strip(), em.strip() or None
    access_fields(ev, ev.message, logger)
    text = ev.message if not ev.error_message else f"{ev.message}\n{ev.error_message}"
    ev.resources = resources_of(text, (ev.request_id, ev.global_request_id))
    return ev
