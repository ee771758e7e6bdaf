"""Line shapes of every oslo.log era (see ../shared/reference/OSLO_LOG_FORMATS.md).

* the oslo.log record line: ``asctime.msecs pid LEVEL logger rest``;
* the same behind a syslog/journald prefix (``Mon DD HH:MM:SS host prog[pid]:``
  or an RFC 5424 ISO instant), either with the full oslo prefix inside or,
  as devstack writes to journald, only ``LEVEL logger rest``;
* standalone access lines (Apache ``combined`` as keystone/neutron under
  mod_wsgi write them);
* anything else is a continuation of the previous record of the stream.
"""
from __future__ import annotations

import re

LEVELS = "TRACE|DEBUG|INFO|AUDIT|WARNING|WARN|ERROR|CRITICAL|FATAL"

# asctime.msecs pid LEVEL logger [rest]
HEADER = re.compile(
    r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?) (\d+) (" + LEVELS + r") (\S+)(?: (.*))?", re.S)

# Mon DD HH:MM:SS[.ffffff] host prog[pid]: rest
SYSLOG = re.compile(
    r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?(.*)", re.S)
# 2017-05-25T11:01:29.577+00:00 host prog[pid]: rest   (RFC 3339 / RFC 5424-ish)
SYSLOG_ISO = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?(.*)",
    re.S)
# devstack journald body: LEVEL logger rest
SHORT = re.compile(r"(" + LEVELS + r") ([\w.\-]+)(?: (.*))?", re.S)

# Apache combined (+ optional %D / %D(us)), standalone access-log line
APACHE = re.compile(
    r'([0-9A-Fa-f.:]+|-) \S+ (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"([A-Z]+) (\S+)[^"]*" ([1-5]\d\d) (\d+|-)(?: "[^"]*" "([^"]*)")?(?: (\d+)(\(us\))?)?')

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# A record header buried inside another line (two processes' writes racing).
EMBEDDED_HEADER = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,9} \d+ (?:" + LEVELS + r") \S)")


NIL_CONTEXT = re.compile(r"\[(?:None|-)(?: -){2,7}\] ?")


def context_end(rest: str) -> int:
    """Index just past a request-context block ``[...] `` at the start of
    ``rest``, or 0 when ``rest`` does not start with one.

    Accepted: ``[-]``, ``[req-X ...]``, ``[None req-X ...]``,
    ``[req-G req-X ...]`` (any era; identity fields vary), and a context whose
    fields are all empty (``[- - - - - -]``, ``[None - - - - -]``).
    """
    if not rest or rest[0] != "[":
        return 0
    if rest.startswith("[-]"):
        return 4 if rest[3:4] == " " else 3
    m = NIL_CONTEXT.match(rest)
    if m:                      # a context with every field empty: [- - - - - -], [None - - - - -]
        return m.end()
    if not (rest.startswith("[req-") or rest.startswith("[None req-") or rest.startswith("[- req-")):
        return 0
    end = rest.find("]")
    if end < 0:
        return 0
    return end + 2 if rest[end + 1:end + 2] == " " else end + 1
