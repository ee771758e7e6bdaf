"""Record -> Event: context block, instance, access lines, errors, resources.

Field names follow ECS where ECS has the field (see detectors.model); the
OpenStack ids go under ``openstack.*``.
"""
from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from detectors.model import Event
from detectors.topology import service_from_logger

from pipeline.parsing.fold import Record
from pipeline.parsing.lineformat import ANSI, context_end
from pipeline.parsing.timefmt import InvalidTimestamp, TimeParser

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID_RE = re.compile(UUID)
_UUIDISH = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-")
# Resource ids in message text, in the forms nova, cinder, glance and neutron write
# them (the table with each template's source: tests/parsing/test_resource_ids.py):
#   noun [id|uuid] + separator + uuid: ``Instance X``, ``instance ID 'X'``,
#   ``volume: X``, ``'port_id': u'X'``, ``instance_uuid=X``, ``image "X"``,
#   ``instance (X)``, ``Network(X)`` (os-vif repr), ``/servers/X`` (URLs);
#   cinder's name templates ``volume-X`` / ``snapshot-X`` (LVM, RBD, iSCSI targets);
#   nova's external-event keys naming a port: ``network-vif-plugged-X``,
#   ``network-vif-plugged:X``, ``[('network-vif-plugged', u'X')]``;
#   the port id of an os-vif VIF repr: ``VIFBridge(active=True,...,id=X,...)``.
# A bare uuid (``Unable to migrate X: ...``), ids after other nouns (user,
# project, request, subnet, router, device_id, attachment, migration) and
# ``req-X`` never count as these resources.
# (No (?i): explicit first-letter classes and a one-character lookahead reject most word
# boundaries at once -- faster than the old case-insensitive two-branch pattern.)
RESOURCE = re.compile(
    r"\b(?=[iIsSvVpPnN_])(?:([Ii]nstance|[Ss]erver|[Vv]olume|[Vv]ol|[Ii]mage|[Pp]ort|[Nn]etwork|[Ss]napshot)s?"
    r"(?:[ _]?(?:[Uu][Uu])?[Ii][Dd])?['\"]?"
    r"(?:[:=] ?u?['\"]?| u?['\"]| ?\(|/| )"
    r"|_?([Vv]olume|[Ss]napshot)-"
    r"|network-(?:vif-(?:plugged|unplugged|deleted)|changed)(?:[-:]|['\"], u?['\"])"
    r"|VIF[A-Za-z]*\([^()]{0,160}?\bid=)(" + UUID + ")")
RESOURCE_KIND = {"server": "instance", "vol": "volume"}
# neutron's nova notifier logs the event dicts it sends: the tag of a network-* event is the port
# ("Nova event response: {'server_uuid': X, 'name': 'network-vif-plugged', 'status': ..., 'tag': P}")
EVENT_TAG = re.compile(
    r"'name': u?'network-[\w-]+',[^{}]*?'tag': u?'(" + UUID + r")'"
    r"|'tag': u?'(" + UUID + r")',[^{}]*?'name': u?'network-")
REQ_ID = re.compile(r"req-" + UUID)

# the client address of an access line: eventlet writes ``X-Forwarded-For,REMOTE_ADDR``
# and the forwarded list keeps the client's own ``, `` separators; the first is the client
_CLIENT = r'((?:[0-9A-Fa-f.:]+, ?)*[0-9A-Fa-f.:]+'
ACCESS_OSLO = re.compile(
    _CLIENT + r'|-) "([A-Z]+) (\S+)(?: HTTP/[\d.]+)?" status: ([1-5]\d\d)\s+len: (\d+)'
    r'(?: microversion: \S+)? time: (\d{1,9}(?:\.\d+)?)')
ACCESS_EVENTLET = re.compile(_CLIENT + r') - - \[[^\]]+\] "([A-Z]+) (\S+)[^"]*" ([1-5]\d\d) (\d+|-) (\d{1,9}(?:\.\d+)?)')
# uWSGI's request log (devstack runs the APIs under uWSGI and journald keeps these lines):
# "[pid: %d|app: %d|req: %d/%llu] %s (%s) {%d vars in %llu bytes} [%s] %s %s => generated
# %llu bytes in %llu msecs|micros[ via ...](%s %d) ..." (unbit/uwsgi core/logging.c)
ACCESS_UWSGI = re.compile(
    r'\[pid: \d+\|app: -?\d+\|req: -?\d+/\d+\] ([0-9A-Fa-f.:]+) \([^)]*\) \{\d+ vars in \d+ bytes\} '
    r'\[[^\]]*\] ([A-Z]+) (\S+) => generated (\d+) bytes in (\d+) (msecs|micros)[^(]*\(\S+ ([1-5]\d\d)\)')
# keystone: "Authorization failed. %(exception)s from %(remote_addr)s" (keystone/server/flask/
# application.py; keystone/common/wsgi.py before Rocky); the exception text varies (insecure_debug
# details, "(Disable debug mode to suppress these details.)"), the address is the last word
KEYSTONE_AUTHZ = re.compile(r"Authorization failed\. .* from (\S+?)\s*$", re.S)
# nova-api metadata: "Failed to get metadata for IP %s" (nova/api/metadata/handler.py), and
# "... requester %(requester)s. Error: ..." (the instance's address asking for metadata)
METADATA_CLIENT = re.compile(r"Failed to get metadata for IP (\S+?)(?=:? |:?$)|\brequester ([0-9A-Fa-f.:]+?)\.? ")
FAULT_LINE = re.compile(r"(\S+) returned with HTTP ([1-5]\d\d)")
METHOD_URL = re.compile(r"(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) (\S+)$")

EXC_LINE = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?:: (.*))?$", re.S)
ERR_SUFFIX = re.compile(
    r"(?:^|: )((?:[a-z_]\w*\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception|Failure|Timeout|Refused|Forced"
    r"|NotFound|NotCreated|NotAuthorized|Invalid|Unavailable|Denied)\w*): (.+)$")
# Python 2 era (Pike-Stein) bare exception classes whose names carry none of
# ERR_SUFFIX's words: NoValidHost, InvalidBDM, StorageFull,
# GlanceConnectionFailed, MaxRetriesExceeded. Tried only when ERR_SUFFIX finds
# nothing, so every line ERR_SUFFIX parses keeps its fields. A CamelCase word
# is required (``Failed: text``, ``Invalid: text``, ``Note: text`` stay prose).
ERR_SUFFIX_BARE = re.compile(
    r"(?:^|: )([A-Z]\w*(?:Failed|Exceeded|Full)|No[A-Z][a-z]\w*|Invalid[A-Z]\w*): (.+)$")
_BARE_HINTS = ("Failed: ", "Exceeded: ", "Full: ", "No", "Invalid")
ERRNO = re.compile(r"\[Errno (\d+)\]")
INSTANCE_PREFIX = "[instance: "
RESOURCE_SCAN = 4096

class Source(NamedTuple):
    """Where a stream's lines come from. ``service`` None: infer per record."""
    host: str | None
    service: str | None
    path: str | None


def parse_context(ctx: str, ev: Event) -> None:
    """``[...]`` contents of every era into request/global ids and identity."""
    d: dict = {}
    _context_fields(ctx, d)
    for name, value in d.items():
        setattr(ev, name, value)


_REQ_CHARS = frozenset("0123456789abcdefABCDEF-")
_new_event = object.__new__


def _context_fields(ctx: str, d: dict) -> None:
    """The ids and identity found in a context block, into a field dict
    (only what is present is set)."""
    tokens = ctx.split()
    if not tokens or tokens[0] == "-" and len(tokens) == 1:
        return
    i = 0
    if len(tokens) > 1 and is_request_id(tokens[1]):
        if is_request_id(tokens[0]):
            d["global_request_id"] = tokens[0]
        d["request_id"] = tokens[1]
        i = 2
    elif is_request_id(tokens[0]):
        d["request_id"] = tokens[0]
        i = 1
    n = len(tokens) - i
    if n <= 0:
        return
    u = tokens[i]
    if u == "-" or u == "None":
        u = None
    p = tokens[i + 1] if n > 1 else None
    if p == "-" or p == "None":
        p = None
    if u is None and p is None:
        return
    if (u and _hexish(u)) or (p and _hexish(p)):
        names = ("user_id", "project_id")
    elif u and p:                     # devstack: %(project_name)s %(user_name)s
        names = ("project_name", "user_name")
    else:
        names = ("user_name", "project_name")
    if u is not None:
        d[names[0]] = u
    if p is not None:
        d[names[1]] = p


def is_request_id(token: str) -> bool:
    return token.startswith("req-") and len(token) > 12 and _REQ_CHARS.issuperset(token[4:])


def _hexish(s: str) -> bool:
    return len(s) >= 32 and _REQ_CHARS.issuperset(s)


def strip_instance(body: str) -> str:
    if body.startswith(INSTANCE_PREFIX) and body[47:48] == "]":
        return body[49:] if body[48:49] == " " else body[48:]
    return body


def exception_of(lines: list[str]) -> tuple[str | None, str | None]:
    """(type, message) of the last exception in traceback body lines."""
    i = len(lines) - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0:
        return None, None
    j = i
    while j > 0 and lines[j - 1].strip() and not lines[j - 1].startswith((" ", "\t", "Traceback")):
        j -= 1
    first = lines[j]
    if first.startswith((" ", "Traceback")):
        return None, None
    m = EXC_LINE.match(first)
    if m is None:
        return None, "\n".join(lines[j:i + 1])
    rest = [m.group(2)] if m.group(2) is not None else []
    msg = "\n".join(rest + lines[j + 1:i + 1])
    return m.group(1), msg or None


def _strip_debug_suffix(ev: Event, msg: str) -> str:
    """Remove (and keep as log.origin) oslo.log's DEBUG ``func path:line``."""
    if msg.endswith("}}"):           # devstack: {{(pid=N) func path:line}}
        start = msg.rfind(" {{(pid=")
        if start >= 0:
            parts = msg[start + 3:-2].split()
            if len(parts) == 3 and ":" in parts[2]:
                ev.origin_function = parts[1]
                path, _, line = parts[2].rpartition(":")
                ev.origin_file, ev.origin_line = path, int(line) if line.isdigit() else None
                return msg[:start]
        return msg
    i = msg.rfind(" ")
    if i < 0:
        return msg
    path, _, line = msg[i + 1:].rpartition(":")
    if not (line.isdigit() and path.endswith(".py")):
        return msg
    j = msg.rfind(" ", 0, i)
    nl = msg.rfind("\n", 0, i)
    j = max(j, nl)
    ev.origin_function = msg[j + 1:i]
    ev.origin_file = path
    ev.origin_line = int(line)
    return msg[:max(j, 0)].rstrip()


def _ip(text: str) -> str | None:
    """``text`` when it is an IP address (v4, v6, v6 with zone), else None."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def access_fields(ev: Event, msg: str, logger: str | None) -> None:
    """HTTP fields of an access line, and the client address of the records
    that name one (keystone's rejected authentications, nova's metadata)."""
    if '" status: ' in msg:
        m = ACCESS_OSLO.search(msg)
        if m:
            ip, ev.http_method, url, status, size, secs = m.groups()
            ev.source_ip = ip.split(",")[0] if ip != "-" else None
            ev.url_path = url.split("?", 1)[0]
            ev.status_code, ev.body_bytes = int(status), int(size)
            ev.duration_ns = int(float(secs) * 1e9)
        return
    if '] "' in msg:
        m = ACCESS_EVENTLET.search(msg)
        if m:
            ip, ev.http_method, url, status, size, secs = m.groups()
            ev.source_ip = ip.split(",")[0]
            ev.url_path = url.split("?", 1)[0]
            ev.status_code = int(status)
            ev.body_bytes = int(size) if size != "-" else None
            ev.duration_ns = int(float(secs) * 1e9)
        return
    if msg.startswith("[pid: "):
        m = ACCESS_UWSGI.match(msg)
        if m:
            ip, ev.http_method, url, size, took, unit, status = m.groups()
            ev.source_ip = _ip(ip)
            ev.url_path = url.split("?", 1)[0]
            ev.status_code, ev.body_bytes = int(status), int(size)
            ev.duration_ns = int(took) * (1_000_000 if unit == "msecs" else 1000)
        return
    if "returned with HTTP" in msg:
        m = FAULT_LINE.search(msg)
        if m:
            ev.url_path = _url_path(m.group(1))
            ev.status_code = int(m.group(2))
        return
    if logger and logger.endswith("wsgi") and msg[:1].isupper():
        m = METHOD_URL.match(msg)
        if m:
            ev.http_method, ev.url_path = m.group(1), _url_path(m.group(2))
            return
    if not logger:
        return
    # the loggers that write these (keystone.common.wsgi, keystone.server.flask.application;
    # nova.api.metadata.handler): checked first, so other records cost no scan of their text
    if logger.startswith("keystone"):
        if "Authorization failed. " in msg:
            m = KEYSTONE_AUTHZ.search(msg)
            if m:
                ev.source_ip = _ip(m.group(1))
    elif logger.startswith("nova.api.metadata"):
        m = METADATA_CLIENT.search(msg)
        if m:
            ev.source_ip = _ip(m.group(1) or m.group(2))


def _url_path(url: str) -> str:
    if "://" in url:
        slash = url.find("/", url.find("://") + 3)
        url = url[slash:] if slash >= 0 else "/"
    return url.split("?", 1)[0]



def _traceback(body: list[str], d: dict) -> tuple[list[str], str | None, str | None]:
    """Set ``d["stack_trace"]`` from traceback lines; (lines, error type, message)."""
    text = "\n".join(body)
    if INSTANCE_PREFIX in text:
        body = [strip_instance(b) for b in body]
        text = "\n".join(body)
    d["stack_trace"] = text.rstrip() or None
    error_type, error_message = exception_of(body)
    return body, error_type, error_message

def _add(res: dict | None, kind: str, rid: str) -> dict:
    if res is None:
        res = {}
    lst = res.setdefault(kind, [])
    if rid not in lst and len(lst) < 20:
        lst.append(rid)
    return res


def resources_of(text: str, own: tuple) -> dict | None:
    """The resource ids ``text`` names (``RESOURCE``), by kind, and the
    request ids it mentions other than the record's own ``own``."""
    res: dict[str, list] | None = None
    if _UUIDISH.search(text):
        for m in RESOURCE.finditer(text):
            kind = m.group(1) or m.group(2)
            if kind is None:
                kind = "port"                 # an event key or a VIF's id
            else:
                kind = kind.lower()
                kind = RESOURCE_KIND.get(kind, kind)
            res = _add(res, kind, m.group(3).lower())
        if "'tag': " in text:
            for m in EVENT_TAG.finditer(text):
                res = _add(res, "port", (m.group(1) or m.group(2)).lower())
    if "req-" in text:
        for rid in REQ_ID.findall(text):
            if rid not in own:
                res = _add(res, "request", rid)
    return res


class Extractor:
    """Turns folded records of one parser into events."""

    def __init__(self, tp: TimeParser, syslog_year: int) -> None:
        self.tp = tp
        self.syslog_year = syslog_year
        self._services: dict[tuple, str | None] = {}     # (logger, prog) -> service

    def _time(self, rec: Record) -> tuple[float, str]:
        if rec.ts_text is not None:
            t = rec.ts_text
            if t[10] == "T" or t[19:20] == ",":
                t = f"{t[:10]} {t[11:19]}.{t[20:]}" if len(t) > 19 else f"{t[:10]} {t[11:19]}"
            return self.tp.parse(t)
        stamp, iso = rec.syslog_ts
        return self.tp.parse_iso(stamp) if iso else self.tp.parse_syslog(stamp, self.syslog_year)

    def _service(self, logger: str | None, prog: str | None) -> str | None:
        key = (logger, prog)
        try:
            return self._services[key]
        except KeyError:
            pass
        if len(self._services) >= 4096:
            self._services.clear()
        svc = self._services[key] = service_from_logger(logger, prog)
        return svc

    def unparsed(self, rec: Record, src: Source, reason: str, ts: float | None, stamp: str | None) -> Event:
        return Event(kind="unparsed", reason=reason, message=rec.original, original=rec.original,
                     host=rec.host or src.host, service=src.service, file_path=src.path,
                     offset=rec.offset, ts=ts, timestamp=stamp)

    def build(self, rec: Record, src: Source, last: tuple[float | None, str | None]) -> Event:
        if rec.kind != "log":
            if rec.kind == "unparsed":
                return self.unparsed(rec, src, rec.reason or "unparseable", *last)
            return self._apache(rec, src, last)
        try:
            t = rec.ts_text
            if t is not None and t[10] != "T" and t[19:20] != ",":
                ts, stamp = self.tp.parse(t)
            else:
                ts, stamp = self._time(rec)
        except InvalidTimestamp as exc:
            return self.unparsed(rec, src, str(exc), *last)
        level = rec.level
        pid = rec.pid
        lines = rec.lines
        # the event's fields, straight into its __dict__ (Event(**kw) checks
        # every name; these are known): unset fields read as None
        d = {"ts": ts, "timestamp": stamp, "level": level, "logger": rec.logger,
             "pid": int(pid) if pid and pid.isdigit() else None, "host": rec.host or src.host,
             "file_path": src.path, "offset": rec.offset,
             "service": src.service or self._service(rec.logger, rec.prog),
             "original": lines[0] if len(lines) == 1 else "\n".join(lines)}
        ev = _new_event(Event)
        ev.__dict__ = d
        rest = rec.rest
        if "\x1b[" in rest:
            rest = ANSI.sub("", rest)
        if rest[:1] == "[":
            n = context_end(rest)
            if n:
                _context_fields(rest[1:rest.find("]")], d)
                rest = rest[n:]
            if rest.startswith(INSTANCE_PREFIX) and rest[47:48] == "]" and UUID_RE.fullmatch(rest, 11, 47):
                d["instance_id"] = rest[11:47].lower()
                rest = rest[49:] if rest[48:49] == " " else rest[48:]
        error_type = error_message = None
        if rec.orphan:
            body, error_type, error_message = _traceback(rec.tb, d)
            msg = f"{error_type}: {error_message}" if error_type else (body[0] if body else "")
        else:
            msg = rest
            if rec.cont:
                msg = msg + "\n" + "\n".join(rec.cont)
            if level == "DEBUG":
                msg = _strip_debug_suffix(ev, msg)
            if rec.tb:
                _body, error_type, error_message = _traceback(rec.tb, d)
            if error_type is None and level != "DEBUG" and level != "INFO" and ": " in msg:
                first = msg.split("\n", 1)[0]
                m = ERR_SUFFIX.search(first)
                if m is None and any(h in first for h in _BARE_HINTS):
                    m = ERR_SUFFIX_BARE.search(first)
                if m:
                    error_type, error_message = m.group(1), m.group(2)
        if error_type is not None:
            d["error_type"] = error_type
        if error_message is not None:
            d["error_message"] = error_message
        d["message"] = msg
        access_fields(ev, msg, rec.logger)
        # ids are named near the start of a message: scan a bounded prefix, so
        # a 20 kB DEBUG response body costs no more than a short line
        text = msg[:RESOURCE_SCAN] if error_message is None else f"{msg[:RESOURCE_SCAN]}\n{error_message[:RESOURCE_SCAN]}"
        res = resources_of(text, (d.get("request_id"), d.get("global_request_id")))
        if res is not None:
            d["resources"] = res
        if "Errno" in text:
            m = ERRNO.search(text)
            if m:
                d["errno"] = m.group(1)
        return ev

    def _apache(self, rec: Record, src: Source, last) -> Event:
        ip, user, stamp, method, url, status, size, agent, dur, us = rec.access.groups()
        try:
            ts, iso = self.tp.parse_apache(stamp)
        except InvalidTimestamp as exc:
            return self.unparsed(rec, src, str(exc), *last)
        ev = Event(kind="access", ts=ts, timestamp=iso, level="INFO", message=rec.rest,
                   original=rec.original, host=src.host, service=src.service, file_path=src.path,
                   offset=rec.offset, http_method=method, url_path=_url_path(url),
                   status_code=int(status), body_bytes=int(size) if size != "-" else None,
                   source_ip=ip if ip != "-" else None)
        if user and user != "-":
            ev.user_name = user
        if dur:
            # %D is microseconds; a bare trailing number is %D as well
            ev.duration_ns = int(dur) * 1000
        return ev
