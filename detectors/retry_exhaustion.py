"""retry_exhausted: a retry budget ran out.

Fires on the message that says the budget is spent, never on a retry alone:
a retry followed by success (``Took N seconds to build instance``,
``Connected to AMQP server``, the next successful call) is no incident.

* nova VolumeNotCreated (seed S20): ``did not finish being created even
  after we waited N seconds or M attempts`` (with or without the Liberty+
  ``And its status is X`` suffix);
* nova scheduling: ``Exceeded maximum number of retries`` / ``Exceeded max
  scheduling attempts|retries`` -- the ``was re-scheduled`` attempts on the
  other hosts become evidence;
* cinder ``Exceeded max scheduling attempts N for resource|volume X``;
* oslo.db ``DB exceeded retry limit``, or DBConnectionError within minutes
  of the last finite ``SQL connection failed. N attempts left`` warning
  (N = max_retries - attempt, so oslo.db gives up after ``1 attempts left``;
  a larger N means it was still retrying; ``-1 attempts left`` means
  max_retries=-1: retry forever, so it never exhausts);
* nova/cinder glance client ``Error contacting glance server ... done trying``;
* keystoneauth ``Retrying in Xs. N retries left`` followed by a connection
  error of the same API call (host, service and request id); an INFO/DEBUG
  record of that request after the retry means the call went on: no incident;
* a few more explicit give-ups (network setup, placement client, swift,
  libvirt device detach).

The words never claim more than the records show (``assess`` picks the text
variant): one attempt is no exhausted retry budget -- nova's network setup
``after 1 attempt(s)``, a glance ``done trying`` without an earlier
``retrying``, a Swift read with no re-read, one scheduled host -- and is worded
as the single failure it is; a volume cinder put in ``error`` is cinder's
failure, not nova's wait running out; a number the record does not give is
left out, never printed as "?"; the remedy names the service the evidence
points at (nova-network or neutron, live-migration or scheduler retries,
oslo.db's connect retries or its deadlock retries).

Records of the same request (warnings and errors just before and after) are
attached as evidence, so the incident shows the whole failing operation.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from . import texts
from .base import Detector
from .incident import Incident, evidence_of
from .model import UUID, Event
from .store import KeyedStore, TrackedStore

WARN_UP = frozenset(("WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "TRACE"))


TEXTS = texts.load("retry_exhausted")    # title, probable_cause, remediation per rule name


TEXT_FIELDS = ("title", "probable_cause", "remediation")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Rule(NamedTuple):
    name: str
    pattern: re.Pattern
    key: tuple[str, ...]      # group names (or "host"/"service") forming the key
    severity: str

    # texts (detectors/texts/retry_exhausted.toml): a table per rule, a sub-table per
    # variant (what the evidence shows) overriding some fields; each field is a text or
    # a list of alternatives, the first whose {placeholders} are all known is used
    def texts(self, variant: str | None = None) -> dict:
        base = TEXTS[self.name]
        out = {k: base[k] for k in TEXT_FIELDS}
        if variant:
            out.update((k, v) for k, v in base[variant].items() if k in TEXT_FIELDS)
        return out


def _alternatives(text: str | list[str]) -> list[str]:
    return [text] if isinstance(text, str) else list(text)


def render(text: str | list[str], ctx: dict) -> str:
    """The first alternative of ``text`` whose placeholders ``ctx`` all knows
    (None counts as unknown), filled in; a value is never shown as "?"."""
    alts = _alternatives(text)
    for alt in alts:
        if all(ctx.get(name) is not None for name in _PLACEHOLDER.findall(alt)):
            return alt.format_map(ctx)
    # every rule's last alternative uses only what its pattern always gives (tests run every
    # variant); should one not, the unknown placeholder is left out rather than printed as "?"
    filled = _PLACEHOLDER.sub(lambda m: str(ctx[m.group(1)]) if ctx.get(m.group(1)) is not None else "",
                              alts[-1])
    return re.sub(r"  +", " ", filled)


RULES: tuple[Rule, ...] = (
    Rule("volume_not_created",
         re.compile(r"Volume (?P<volume>" + UUID + r") did not finish being created even after we "
                    r"waited (?P<seconds>\d+)\s+seconds or (?P<attempts>\d+)\s+attempts\.?"
                    r"(?:\s*And its status is (?P<status>\w+))?"),
         ("volume",), "error"),
    Rule("max_scheduling_retries",
         # nova's three wordings: "... retries. Exhausted all hosts available for retrying
         # build failures for instance X", the Queens-era conductor "... retries. Exceeded
         # max scheduling attempts N for instance X. Last exception: ..." and live migration
         # "... retries. Exceeded max scheduling retries N for instance X during live
         # migration"; the bare "Exceeded maximum number of retries." comes last so it never
         # hides an instance that is in the text.
         re.compile(r"Exceeded maximum number of retries\.\s*Exhausted all hosts available for "
                    r"retrying build failures for instance (?P<instance>" + UUID + r")"
                    r"|(?:Exceeded maximum number of retries\.\s*)?Exceeded max scheduling "
                    r"(?:attempts|retries) (?P<attempts>\d+) for instance (?P<instance2>" + UUID + r")"
                    r"|Exceeded maximum number of retries\."),
         ("instance",), "error"),
    Rule("cinder_max_scheduling",
         re.compile(r"Exceeded max scheduling attempts (?P<attempts>\d+) for (?:resource|volume) "
                    r"(?P<volume>" + UUID + ")"),
         ("volume",), "error"),
    Rule("db_retry_limit",
         re.compile(r"DB exceeded retry limit"),
         ("host", "service"), "critical"),
    Rule("glance_done_trying",
         re.compile(r"Error contacting glance server '(?P<server>[^']+)' for '(?P<method>\w+)',"
                    r"?\s*(?:attempt (?P<attempt>\d+)/\d+,?\s*)?done trying"),
         ("host", "service", "server"), "error"),
    Rule("network_setup",
         re.compile(r"Instance failed network setup after (?P<attempts>\d+) attempt"),
         ("host", "instance"), "error"),
    Rule("placement_out_of_retries",
         re.compile(r"Failed scheduler client operation (?P<op>\S+): out of retries"),
         ("host", "service"), "error"),
    Rule("swift_retries",
         # glance_store logs its retry count here ("after 0 attempts": no retry configured)
         re.compile(r"Stopping Swift retries after (?P<retries>\d+) attempts"),
         ("host", "service"), "error"),
    Rule("device_detach",
         re.compile(r"Run out of retry while detaching device (?P<device>\S+) with device alias "
                    r"(?P<alias>\S+) from instance (?P<instance>" + UUID + ")"),
         ("instance", "device"), "error"),
)
KSA_RULE = Rule("keystoneauth_retries", re.compile("(?!)"), ("host", "service", "url"), "error")
# "one of the rules' phrases occurs": the prefilter of RULES
RETRY_PHRASES = (
    "did not finish being created", "Exceeded max", "DB exceeded retry", "done trying",
    "failed network setup after", "out of retries", "Stopping Swift retries", "Run out of retry",
)
_PREFILTER = re.compile("|".join(map(re.escape, RETRY_PHRASES)))

# Attempts that become evidence when the budget later runs out.
RESCHEDULED = re.compile(r"Build of instance (" + UUID + r") was re-scheduled: (.*)", re.S)
LAST_HOST = re.compile(r"Error from last host: (\S+) \(node (\S+)\)")
SQL_ATTEMPT = re.compile(r"SQL connection failed\. (-?\d+) attempts left")
DB_CONN_ERROR = re.compile(r"DBConnectionError|Can't connect to MySQL server|Lost connection to MySQL")
GLANCE_RETRY = re.compile(r"Error contacting glance server '([^']+)' for '\w+',?\s*(?:attempt \d+/\d+,?\s*)?retrying")
KSA_RETRY = re.compile(r"(?:Failure: (.*?)\. Retrying in [\d.]+s\.|Retriable status code (\d+)\. "
                       r"Retrying in [\d.]+s\.) (\d+) retries left", re.S)
KSA_TARGET = re.compile(r"Unable to establish connection to (\S+?):? |Request to (\S+) timed out")
KSA_FAIL = re.compile(r"Unable to establish connection to|ConnectFailure|ConnectTimeout|timed out"
                      r"|Service Unavailable|Gateway Timeout|ServiceUnavailable|EndpointNotFound")

# Loggers whose INFO/DEBUG records are part of the retrying call itself (the
# request/response log of every attempt), not a sign that the call went on.
KSA_OWN_LOGGERS = ("keystoneauth", "urllib3", "requests")


# What the evidence says about a matched give-up (``assess``).
STILL_CREATING = frozenset(("creating", "downloading"))
# nova-network (Juno-Newton; removed in Rocky): its API/RPC client and manager frames or loggers, its
# service name, or a floating IP pool running out -- nova allocates floating IPs while setting up an
# instance's network only with nova-network's auto_assign_floating_ip, never with neutron
NOVA_NETWORK = re.compile(
    r"nova[/.]network[/.](?:manager|floating_ips|api|rpcapi|linux_net|l3|minidns|ldapdns)\b|\bnova-network\b"
    r"|(?i:no more floating ips|zero floating ips available|NoMoreFloatingIps|FloatingIpPoolNotFound"
    r"|floating ip pool not found)")
NEUTRON = re.compile(r"(?i)neutron")
FLOATING_EMPTY = re.compile(r"(?i)NoMoreFloatingIps|zero floating ips available|no more floating ips")
DB_DEADLOCK = re.compile(r"DBDeadlock|Deadlock found|\(1213,")
DB_DISCONNECT = re.compile(r"DBConnectionError|Can't connect to MySQL|Lost connection to MySQL"
                           r"|MySQL server has gone away|\(200[236],|\(2013,")


def assess(rule: str, groups: dict, text: str) -> str | None:
    """The text variant for what the record shows (None: the rule's plain
    words). Adjusts ``groups``: a number that counts retries becomes
    ``retries``, network setup gets its ``tries`` phrase."""
    attempts = int(groups["attempts"]) if groups.get("attempts") else None
    if rule == "volume_not_created":
        status = groups.get("status")
        if status and status not in STILL_CREATING:
            return "volume_failed"      # cinder ended the creation; nova stopped waiting early
        return "one_check" if attempts == 1 else None
    if rule == "max_scheduling_retries":
        if "during live migration" in text and attempts is not None:
            groups["retries"] = groups.pop("attempts")     # "retries N" counts retries, not hosts
            return "live_migration"
        return "one_host" if attempts == 1 else None
    if rule == "cinder_max_scheduling":
        return "one_backend" if attempts == 1 else None
    if rule == "network_setup":
        # "after 1 attempt(s)": nova did not retry (a single failure, worded as one)
        once = not (attempts and attempts > 1)
        groups["tries"] = "on its only attempt (nova did not retry)" if once else f"after {attempts} attempts"
        groups["tries_short"] = "(no retry)" if once else f"after {attempts} attempts"
        if NOVA_NETWORK.search(text):
            return "nova_network_floating" if FLOATING_EMPTY.search(text) else "nova_network"
        return "neutron" if NEUTRON.search(text) else None
    if rule == "db_retry_limit":
        if DB_DEADLOCK.search(text):
            return "deadlock"
        return "disconnect" if DB_DISCONNECT.search(text) else None
    if rule == "swift_retries":
        return "no_retry" if groups.get("retries") == "0" else None
    return None


def _sql_attempts_left(item: dict) -> int | None:
    m = SQL_ATTEMPT.search(item.get("message") or "")
    return int(m.group(1)) if m else None


def _queue(q: deque) -> list:
    return [list(x) for x in q]


@dataclass(frozen=True)
class RetryExhaustionConfig:
    quiet_period: float = 1800.0     # seconds without a give-up before the incident resolves
    attempt_ttl: float = 3600.0      # an earlier attempt (re-scheduled, SQL retry) counts this long
    # oslo.db raises DBConnectionError retry_interval (default 10 s) after its last
    # "1 attempts left" warning; keystoneauth's retries of one call span seconds
    db_give_up_window: float = 300.0
    ksa_window: float = 300.0
    related_ttl: float = 600.0       # records of the same request kept as evidence this long
    max_keys: int = 20_000           # attempts, requests and references followed at once


class RetryExhaustion(Detector):
    name = "retry_exhausted"

    def __init__(self, config: RetryExhaustionConfig = RetryExhaustionConfig()) -> None:
        self.config = config
        self.quiet_period = config.quiet_period
        super().__init__()
        n = config.max_keys
        self.attempts: KeyedStore[tuple, deque] = KeyedStore(n)   # key -> (ts, evidence, host)
        self.related: KeyedStore[str, deque] = KeyedStore(n)      # request id -> (ts, evidence)
        self.refs: KeyedStore[str, tuple] = KeyedStore(n)         # request/instance -> incident key
        # keystoneauth retries pending per API call: (host, service, correlation id or None)
        self.ksa: KeyedStore[tuple, deque] = KeyedStore(n)        # -> (ts, evidence, host)

    # -- helpers -------------------------------------------------------------
    def _remember_attempt(self, key: tuple, ev: Event) -> None:
        self.attempts.append(key, (ev.ts or 0.0, evidence_of(ev), ev.host), 10)

    def _open(self, rule: Rule, groups: dict, ev: Event, out: list[dict],
              attempts: tuple = (), variant: str | None = None) -> Incident:
        ctx = {"host": ev.host or "unknown", "service": ev.service or "unknown", **groups}
        # the key only names the incident (never printed): a missing part is "?"
        key = (rule.name,) + tuple(ctx.get(k) or "?" for k in rule.key)
        ts = ev.ts or 0.0
        words = rule.texts(variant)
        inc = self.book.touch(key, ts, lambda: Incident(
            rule=f"retry_exhausted.{rule.name}", type="retry_exhausted", key=key,
            window_start=ts, severity=rule.severity, title=render(words["title"], ctx),
            probable_cause=render(words["probable_cause"], ctx),
            remediation=render(words["remediation"], ctx),
        ), out)
        fresh = inc.count == 0
        if fresh:
            rid = ev.correlation_id
            own = evidence_of(ev)
            # one record is one piece of evidence (same @timestamp and message),
            # even when it is both a same-request record and an attempt
            seen = {(own["@timestamp"], own["message"])}
            for _ts, item in (self.related.get(rid) or ()) if rid else ():
                if (item["@timestamp"], item["message"]) not in seen:
                    seen.add((item["@timestamp"], item["message"]))
                    inc.add_evidence(item)
            for _ts, item, host in attempts:
                if (item["@timestamp"], item["message"]) not in seen:
                    seen.add((item["@timestamp"], item["message"]))
                    inc.add_evidence(item)
                if host and host not in inc.hosts:
                    inc.hosts.append(host)
        res = {"volume": [v for v in (groups.get("volume"),) if v],
               "instance": [v for v in (groups.get("instance"),) if v]}
        inc.add(ev, resources=res)
        for name in ("attempts", "retries", "seconds"):
            if groups.get(name):
                inc.details[name] = int(groups[name])
        for name in ("status", "server", "method", "op", "device"):
            if groups.get(name):
                inc.details[name if name != "status" else "volume_status"] = groups[name]
        if attempts:
            inc.details["attempts_seen"] = len(attempts)
        for ref in (ev.request_id, ev.global_request_id, ev.instance_id, groups.get("instance"),
                    groups.get("volume")):
            if ref:
                self.refs.put(ref, key)
        inc.summary = self._summary(inc)
        out.append(inc.to_doc())
        return inc

    @staticmethod
    def _summary(inc: Incident) -> str:
        d = inc.details
        parts = [inc.title]
        # only what the records say: no number is guessed or shown as "?"
        took = []
        if "seconds" in d:
            took.append(f"{d['seconds']} s")
        if "attempts" in d:
            took.append(f"{d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}")
        elif "retries" in d:
            took.append(f"{d['retries']} retr{'ies' if d['retries'] != 1 else 'y'}")
        if took and "attempt" not in inc.title:
            parts.append("after " + " and ".join(took))
        if "volume_status" in d:
            parts.append(f"volume status {d['volume_status']}")
        if len(inc.hosts) > 1:
            parts.append(f"hosts tried: {', '.join(inc.hosts[:6])}")
        if inc.count > 1:
            parts.append(f"{inc.count} occurrences")
        return "; ".join(parts)

    def _followup(self, ev: Event, out: list[dict]) -> None:
        """Attach later warnings/errors of an incident's request or instance."""
        for ref in (ev.request_id, ev.instance_id):
            key = self.refs.get(ref) if ref else None
            if key is None:
                continue
            inc = self.book.get(key, ev.ts)
            if inc is not None and inc.evidence and ev.timestamp >= (inc.first_seen or ""):
                inc.add(ev, count=False)
                out.append(inc.to_doc())
            return

    # -- the contract --------------------------------------------------------
    def feed(self, ev: Event) -> list[dict]:
        if ev.kind == "unparsed" or ev.level not in WARN_UP and ev.level != "DEBUG" and ev.level != "INFO":
            return []
        out: list[dict] = []
        if ev.level == "DEBUG" or ev.level == "INFO":
            msg = ev.message or ""
            if "re-scheduled" in msg:
                m = RESCHEDULED.search(msg)
                if m:
                    self._remember_attempt(("instance", m.group(1)), ev)
            if self.ksa:
                rid = ev.correlation_id
                if rid and not (ev.logger or "").startswith(KSA_OWN_LOGGERS):
                    # the same API call went on after its retries: no exhaustion
                    self.ksa.pop((ev.host or "unknown", ev.service or "unknown", rid), None)
            return out
        text = ev.text()
        host, service = ev.host or "unknown", ev.service or "unknown"
        fired = False
        # every rule, attempt and reschedule pattern contains one of these
        # substrings: without one, only the state-driven checks can fire
        hit = ("retr" in text or "Exceeded max" in text or "did not finish" in text or "done trying" in text
               or "network setup" in text or "SQL connection" in text or "glance server" in text
               or "re-scheduled" in text or "last host" in text)
        rules = hit and _PREFILTER.search(text)
        if rules:
            for rule in RULES:
                m = rule.pattern.search(text)
                if not m:
                    continue
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                if "instance2" in groups:
                    groups["instance"] = groups.pop("instance2")
                if rule.key[0] == "instance" and "instance" not in groups and ev.instance_id:
                    groups["instance"] = ev.instance_id
                variant = assess(rule.name, groups, text)
                attempts: tuple = ()
                if rule.name == "max_scheduling_retries" and groups.get("instance"):
                    attempts = tuple(self.attempts.pop(("instance", groups["instance"]), ()))
                elif rule.name == "db_retry_limit":
                    attempts = tuple(self.attempts.pop(("db", host, service), ()))
                elif rule.name == "glance_done_trying":
                    attempts = tuple(self.attempts.pop(("glance", host, service, groups.get("server")), ()))
                    if not attempts and int(groups.get("attempt") or 1) < 2:
                        variant = "one_attempt"    # no earlier "retrying": a single failure
                self._open(rule, groups, ev, out, attempts, variant)
                fired = True
                break
        if not fired:
            fired = self._sequences(ev, text, host, service, out, hit)
        if not fired:
            m = (RESCHEDULED.search(text) or LAST_HOST.search(text)) if hit else None
            if m and m.re is RESCHEDULED:
                self._remember_attempt(("instance", m.group(1)), ev)
            elif m and ev.instance_id:
                self._remember_attempt(("instance", ev.instance_id), ev)
            self._followup(ev, out)
        rid = ev.correlation_id
        if rid:
            self.related.append(rid, (ev.ts or 0.0, evidence_of(ev)), 5)
        return out

    def _sequences(self, ev: Event, text: str, host: str, service: str, out: list[dict],
                   hit: bool = True) -> bool:
        if hit:
            m = SQL_ATTEMPT.search(text)
            if m:
                if int(m.group(1)) >= 0:     # -1, -2, ...: max_retries=-1, retries forever
                    self._remember_attempt(("db", host, service), ev)
                return True
            m = GLANCE_RETRY.search(text)
            if m:
                self._remember_attempt(("glance", host, service, m.group(1)), ev)
                return True
            m = KSA_RETRY.search(text)
            if m:
                self.ksa.append((host, service, ev.correlation_id),
                             (ev.ts or 0.0, evidence_of(ev), ev.host), 10)
                return True
        if ev.level in ("ERROR", "CRITICAL", "FATAL"):
            ts = ev.ts or 0.0
            key = ("db", host, service)
            if key in self.attempts and DB_CONN_ERROR.search(text):
                # oslo.db gives up right after the warning that says "1 attempts left"
                # (max_retries - attempt); an earlier count means it was still retrying
                last = self.attempts[key][-1]
                if ts - last[0] > self.config.db_give_up_window:
                    del self.attempts[key]
                elif (_sql_attempts_left(last[1]) or 0) <= 1:
                    attempts = tuple(self.attempts.pop(key))
                    self._open(RULES[3], {}, ev, out, attempts, "connect")
                    return True
            key = (host, service, ev.correlation_id)
            if key in self.ksa and KSA_FAIL.search(text):
                attempts = tuple(self.ksa.pop(key))
                if ts - attempts[-1][0] <= self.config.ksa_window:
                    target = KSA_TARGET.search(attempts[-1][1]["message"]) or KSA_TARGET.search(text)
                    url = next((g for g in target.groups() if g), None) if target else None
                    self._open(KSA_RULE, {"url": url} if url else {}, ev, out, attempts)
                    return True
        return False

    def advance(self, now: float) -> list[dict]:
        c = self.config
        for store, ttl in ((self.attempts, c.attempt_ttl), (self.related, c.related_ttl), (self.ksa, c.ksa_window)):
            store.expire(lambda _k, q, ttl=ttl: not q or now - q[-1][0] > ttl)
        out = self.book.advance(now)
        if out:
            open_keys = set(self.book.open)
            self.refs.expire(lambda _r, k: k not in open_keys)
        return out

    def tracked_stores(self) -> dict:
        stores = super().tracked_stores()

        def queues(maxlen: int):
            return lambda q: deque(map(tuple, q), maxlen=maxlen)

        self.attempts = TrackedStore.of(self.attempts, _queue, queues(10), check=True)
        self.related = TrackedStore.of(self.related, _queue, queues(5), check=True)
        self.refs = TrackedStore.of(self.refs, list, tuple, check=True)
        self.ksa = TrackedStore.of(self.ksa, _queue, queues(10), check=True)
        stores.update(attempts=self.attempts, related=self.related, refs=self.refs, ksa=self.ksa)
        return stores

    def snapshot(self) -> dict:
        return {
            "incidents": self.book.snapshot(),
            "attempts": self.attempts.snapshot(_queue),
            "related": self.related.snapshot(_queue),
            "refs": self.refs.snapshot(list),
            "ksa": self.ksa.snapshot(_queue),
        }

    def restore(self, state: dict) -> None:
        self.book.restore(state.get("incidents", []))
        self.attempts.restore(state.get("attempts", []), lambda q: deque(map(tuple, q), maxlen=10))
        self.related.restore(state.get("related", []), lambda q: deque(map(tuple, q), maxlen=5))
        self.refs.restore(state.get("refs", []), tuple)
        self.ksa.restore(state.get("ksa", []), lambda q: deque(map(tuple, q), maxlen=10))
