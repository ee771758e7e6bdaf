"""Settings: one typed, frozen object, validated before any event flows.

Sources, later ones winning: built-in defaults, a TOML file (``--config``,
``$OSLOSCOPE_CONFIG`` or ``./osloscope.toml``), then environment variables
``OSLOSCOPE_<SECTION>_<KEY>`` (section ``ES`` for ``[elasticsearch]``).
Unknown sections, keys and variables are errors. Every problem is collected
and raised together in one :class:`SettingsError`, each entry located as
``FILE: section.key`` or ``env OSLOSCOPE_X``.

Constraints live next to each field (``_f(..., ge=1)``); cross-field rules
are in ``_Loader.cross_checks``. ``deploy/osloscope.example.toml`` lists every
setting with its default.
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
import ssl
import sys
import tomllib
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Callable, Mapping
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from detectors.registry import DetectorConfig

DEFAULT_FILE = "osloscope.toml"
ENV_PREFIX = "OSLOSCOPE_"
# Used by other parts of osloscope (services, tests); never settings.
RESERVED_ENV = frozenset(("OSLOSCOPE_CONFIG", "OSLOSCOPE_HOME", "OSLOSCOPE_JAVA_HOME",
                          "OSLOSCOPE_KEEP_SERVICES"))
RESERVED_ENV_PREFIXES = ("OSLOSCOPE_IT_",)
MASK = "***"


class SettingsError(Exception):
    """All configuration problems at once; ``errors`` holds ``"LOCATION: message"`` strings."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "\n".join(self.errors)


# --- field checks: each returns an error message or None -------------------------------------

_OFFSET = re.compile(r"[+-](?:[01]\d|2[0-3]):?[0-5]\d\Z")
_HOSTPORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})\Z")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}\Z")
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def _timezone(v: str) -> str | None:
    if v.upper() in ("UTC", "Z") or _OFFSET.match(v):
        return None
    try:
        ZoneInfo(v)
    except Exception:                     # not found, malformed key, directory, ...
        return f"unknown timezone {v!r} (use an IANA name like Europe/Berlin or an offset like +08:00)"
    return None


def _bootstrap(v: str) -> str | None:
    for host in v.split(","):
        m = _HOSTPORT.match(host.strip())
        if not m or not 0 < int(m.group(1)) < 65536:
            return f"expected a comma-separated list of host:port, got {v!r}"
    return None


def _topic(v: str) -> str | None:
    if not _TOPIC.match(v) or v in (".", ".."):
        return f"{v!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
    return None


def _index(v: str) -> str | None:
    if (not v or v != v.lower() or v[0] in "-_+" or set(v) & _INDEX_FORBIDDEN
            or len(v.encode()) > 230):
        return (f"{v!r} is not a valid Elasticsearch index name (lower case, not starting with "
                "'-', '_' or '+', none of \\ / * ? \" < > | , # : or space)")
    return None


def _url(v: str) -> str | None:
    if v and not re.match(r"https?://[^/\s]+", v):
        return f"expected an http:// or https:// URL (or \"\" to disable), got {v!r}"
    return None


def _nonempty(v: str) -> str | None:
    return "must not be empty" if not v.strip() else None


def _file(v: str) -> str | None:
    return f"no such file: {v!r}" if v and not os.path.isfile(v) else None


def _f(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
       choices: tuple[str, ...] | None = None, check: Callable[[Any], str | None] | None = None,
       secret: bool = False) -> Any:
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "choices": choices,
                                            "check": check, "secret": secret})


# --- the settings ----------------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = _f("127.0.0.1:9092", check=_bootstrap)
    security_protocol: str = _f("PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = _f("", choices=("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = ""
    sasl_password: str = _f("", secret=True)
    ssl_cafile: str = _f("", check=_file)
    ssl_certfile: str = _f("", check=_file)
    ssl_keyfile: str = _f("", check=_file)
    client_id: str = _f("osloscope", check=_nonempty)
    partitions: int = _f(12, ge=1)
    replication_factor: int = _f(1, ge=1)

    @property
    def servers(self) -> list[str]:
        return [h.strip() for h in self.bootstrap.split(",") if h.strip()]

    def client_kwargs(self) -> dict:
        """Keyword arguments for kafka-python clients (KafkaProducer, KafkaAdminClient, ...)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.servers,
                              "security_protocol": self.security_protocol, "client_id": self.client_id}
        for name, value in (("sasl_mechanism", self.sasl_mechanism),
                            ("sasl_plain_username", self.sasl_username),
                            ("sasl_plain_password", self.sasl_password),
                            ("ssl_cafile", self.ssl_cafile), ("ssl_certfile", self.ssl_certfile),
                            ("ssl_keyfile", self.ssl_keyfile)):
            if value:
                kw[name] = value
        return kw

    def aiokafka_kwargs(self) -> dict:
        """``{"broker": "kafka://h1:9092;kafka://h2:9092"}`` for ``faust.App``."""
        return {"broker": ";".join(f"kafka://{h}" for h in self.servers)}

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile or None)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
        return ctx


@dataclass(frozen=True)
class TopicSettings:
    raw: str = _f("osloscope.raw", check=_topic)
    deadletter: str = _f("osloscope.deadletter", check=_topic)
    events: str = _f("osloscope.events.by-request", check=_topic)
    incidents: str = _f("osloscope.incidents", check=_topic)


@dataclass(frozen=True)
class ElasticsearchSettings:
    url: str = _f("http://127.0.0.1:9200", check=_url)
    api_key: str = _f("", secret=True)
    username: str = ""
    password: str = _f("", secret=True)
    ca_certs: str = _f("", check=_file)
    verify_certs: bool = True
    request_timeout: float = _f(30.0, gt=0)
    slow_request: float = _f(5.0, gt=0)
    index_events: str = _f("all", choices=("all", "warning+", "none"))
    events_index_prefix: str = _f("osloscope-events-", check=_index)
    incidents_index: str = _f("osloscope-incidents", check=_index)
    requests_index: str = _f("osloscope-requests", check=_index)
    bulk_max_docs: int = _f(2000, ge=1)
    max_retries: int = _f(5, ge=0)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def client_kwargs(self) -> dict:
        """Keyword arguments for ``elasticsearch.Elasticsearch(**kw)``."""
        if not self.enabled:
            raise RuntimeError("Elasticsearch is disabled (elasticsearch.url is empty)")
        kw: dict[str, Any] = {"hosts": [self.url], "verify_certs": self.verify_certs,
                              "request_timeout": self.request_timeout}
        if self.api_key:
            kw["api_key"] = self.api_key
        elif self.username:
            kw["basic_auth"] = (self.username, self.password)
        if self.ca_certs:
            kw["ca_certs"] = self.ca_certs
        return kw


@dataclass(frozen=True)
class SourceTimezone:
    host: str = "*"
    path: str = "*"
    timezone: str = "UTC"


@dataclass(frozen=True)
class ParserSettings:
    timezone: str = _f("UTC", check=_timezone)
    sources: tuple[SourceTimezone, ...] = ()

    def timezone_for(self, host: str | None, path: str | None) -> str:
        """The timezone of the first ``[[parser.sources]]`` whose globs match, else ``timezone``."""
        for src in self.sources:
            if fnmatchcase(host or "", src.host) and fnmatchcase(path or "", src.path):
                return src.timezone
        return self.timezone


@dataclass(frozen=True)
class DetectorSettings:
    auth_threshold: int = _f(10, ge=1)
    auth_window: float = _f(300.0, gt=0)
    auth_slow_threshold: int = _f(30, ge=1)
    auth_slow_window: float = _f(7200.0, gt=0)
    request_stalled_timeout: float = _f(120.0, gt=0)
    service_silent_factor: float = _f(5.0, gt=0)
    service_silent_floor: float = _f(300.0, gt=0)
    service_silent_learn_intervals: int = _f(10, ge=1)
    request_window_gap: float = _f(120.0, gt=0)
    request_window_max: float = _f(3600.0, gt=0)
    new_error_learn_seconds: float = _f(86400.0, ge=0)
    new_error_learn_min_records: int = _f(200, ge=0)
    new_error_adopt_after: float = _f(1800.0, ge=0)

    def config(self) -> "DetectorConfig":
        """The detectors' frozen configuration (detectors.registry.DetectorConfig)."""
        from detectors.auth_failures import AuthFailuresConfig
        from detectors.new_error import NewErrorConfig
        from detectors.registry import DetectorConfig
        from detectors.request_stalled import RequestStalledConfig
        from detectors.service_silent import ServiceSilentConfig

        return DetectorConfig(
            auth_failures=AuthFailuresConfig(threshold=self.auth_threshold, window=self.auth_window,
                                             slow_threshold=self.auth_slow_threshold,
                                             slow_window=self.auth_slow_window),
            request_stalled=RequestStalledConfig(timeout=self.request_stalled_timeout),
            service_silent=ServiceSilentConfig(factor=self.service_silent_factor,
                                               floor=self.service_silent_floor,
                                               min_intervals=self.service_silent_learn_intervals),
            request_window_gap=self.request_window_gap, request_window_max=self.request_window_max,
            new_error=NewErrorConfig(learn_seconds=self.new_error_learn_seconds,
                                     learn_min_records=self.new_error_learn_min_records,
                                     adopt_after=self.new_error_adopt_after))


@dataclass(frozen=True)
class ShipperSettings:
    host: str = ""
    checkpoint_dir: str = _f(".osloscope/ship", check=_nonempty)
    poll_interval: float = _f(0.5, gt=0)
    max_buffer_bytes: int = _f(33554432, ge=1 << 20)
    batch_size: int = _f(262144, ge=0)
    linger_ms: int = _f(50, ge=0)
    compression: str = _f("gzip", choices=("none", "gzip"))


@dataclass(frozen=True)
class WorkerSettings:
    app_id: str = _f("osloscope", check=_nonempty)
    state_dir: str = _f(".osloscope/worker", check=_nonempty)
    metrics_host: str = _f("127.0.0.1", check=_nonempty)
    metrics_port: int = _f(9464, ge=0, le=65535)
    log_interval: float = _f(30.0, gt=0)
    idle_flush: float = _f(5.0, gt=0)
    batch_size: int = _f(2000, ge=1)
    batch_timeout: float = _f(1.0, gt=0)
    session_timeout: float = _f(15.0, ge=6, le=300)
    fair_polling: bool = True
    # event time across sources (pipeline/streaming/eventtime.py)
    source_idle_timeout: float = _f(30.0, gt=0)
    upstream_timeout: float = _f(120.0, gt=0)
    allowed_lateness: float = _f(7200.0, ge=0)
    source_slack: float = _f(10.0, ge=0)
    source_warmup: float = _f(10.0, ge=0)
    max_future: float = _f(86400.0, gt=0)
    max_buffered: int = _f(200_000, ge=1)


# [notify] and [[notify.receivers]] (osloscope notify) --------------------------------------

NOTIFY_LABELS = ("alertname", "type", "rule", "severity", "host", "service", "incident_id")
RECEIVER_STYLES = ("json", "alertmanager", "slack", "alertmanager_api")
SEVERITIES = ("critical", "error", "warning")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TYPE = re.compile(r"[a-z][a-z0-9_]*\Z")


def _group_by(v: tuple) -> str | None:
    unknown = [x for x in v if x not in NOTIFY_LABELS]
    if unknown:
        return f"unknown label(s) {', '.join(map(repr, unknown))} (known: {', '.join(NOTIFY_LABELS)})"
    return f"lists a label twice: {v!r}" if len(set(v)) != len(v) else None


def _receiver_name(v: str) -> str | None:
    return None if _NAME.match(v) else (
        f"expected a name of letters, digits, '.', '_', '-' (at most 64), got {v!r}")


def _receiver_url(v: str) -> str | None:
    if not v:
        return "is required"
    return None if re.match(r"https?://[^/\s]+", v) else f"expected an http:// or https:// URL, got {v!r}"


def _env_var(v: str) -> str | None:
    return None if not v or _ENV_VAR.match(v) else f"{v!r} is not an environment variable name"


def _types(v: tuple) -> str | None:
    bad = [x for x in v if not _TYPE.match(x)]
    return f"expected incident types like 'disk_full', got {', '.join(map(repr, bad))}" if bad else None


def _severities(v: tuple) -> str | None:
    bad = [x for x in v if x not in SEVERITIES]
    return (f"unknown severity {', '.join(map(repr, bad))} (known: {', '.join(SEVERITIES)})"
            if bad else None)


def _patterns(v: tuple) -> str | None:
    return "empty pattern matches nothing; use \"*\" for any" if any(not x for x in v) else None


@dataclass(frozen=True)
class NotifySettings:
    state_dir: str = _f(".osloscope/notify", check=_nonempty)
    group_by: tuple[str, ...] = _f(("type", "host"), check=_group_by)
    group_wait: float = _f(30.0, ge=0)
    group_interval: float = _f(300.0, gt=0)
    repeat_interval: float = _f(14400.0, gt=0)
    external_url: str = _f("", check=_url)
    # generatorURL of alerts pushed to Alertmanager's API; "{id}" becomes the incident id. "" =
    # <elasticsearch.url>/<elasticsearch.incidents_index>/_doc/{id}, else external_url
    incident_url: str = _f("", check=_url)


@dataclass(frozen=True)
class ReceiverSettings:
    """One ``[[notify.receivers]]`` table; ``secret`` holds the value of ``secret_env`` when named.

    Style ``alertmanager_api``: ``url`` is the Alertmanager (``http://127.0.0.1:9093``; the
    notifier POSTs to ``<url>/api/v2/alerts``), open alerts are re-sent every
    ``resend_interval`` seconds and ``max_alerts`` caps the alerts per request."""
    name: str = _f("", check=_receiver_name)
    url: str = _f("", check=_receiver_url)
    style: str = _f("json", choices=RECEIVER_STYLES)
    secret: str = _f("", secret=True)
    secret_env: str = _f("", check=_env_var)
    types: tuple[str, ...] = _f((), check=_types)
    severities: tuple[str, ...] = _f((), check=_severities)
    hosts: tuple[str, ...] = _f((), check=_patterns)
    services: tuple[str, ...] = _f((), check=_patterns)
    send_resolved: bool = True
    timeout: float = _f(10.0, gt=0)
    verify_tls: bool = True
    ca_file: str = _f("", check=_file)
    max_backoff: float = _f(300.0, ge=1)
    max_alerts: int = _f(0, ge=0)
    # style = "alertmanager_api": seconds between re-sends of the open alerts (keep it well below
    # Alertmanager's resolve_timeout, 5 min by default, or Alertmanager resolves them itself)
    resend_interval: float = _f(60.0, gt=0)

    def redacted(self) -> dict:
        """Plain dict; a secret written in the file is masked, one read from secret_env left out."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["secret"] = MASK if self.secret and not self.secret_env else ""
        m = re.match(r"(https?://[^/@\s:]*:)([^/@\s]*)(@.*)", self.url)
        if m and m.group(2):                                   # https://user:password@host/...
            d["url"] = m.group(1) + MASK + m.group(3)
        return d


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    parser: ParserSettings = field(default_factory=ParserSettings)
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    shipper: ShipperSettings = field(default_factory=ShipperSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    # [[notify.receivers]]: tables, kept beside [notify] rather than in it so that every field of
    # a section class is a setting with an OSLOSCOPE_<SECTION>_<KEY> variable
    receivers: tuple[ReceiverSettings, ...] = ()
    origin: str = field(default="defaults", compare=False)   # equal settings compare equal wherever read

    def redacted(self) -> dict:
        """Everything as plain nested dicts, secrets that are set replaced by ``***``."""
        out: dict[str, Any] = {"origin": self.origin}
        for section in SECTIONS:
            obj, d = getattr(self, section), {}
            for f in fields(obj):
                value = getattr(obj, f.name)
                if f.metadata.get("secret") and value:
                    value = MASK
                elif f.name == "sources":
                    value = [{"host": s.host, "path": s.path, "timezone": s.timezone} for s in value]
                d[f.name] = value
            out[section] = d
        out["notify"]["receivers"] = [r.redacted() for r in self.receivers]
        return out


SECTIONS: dict[str, type] = {"kafka": KafkaSettings, "topics": TopicSettings,
                             "elasticsearch": ElasticsearchSettings, "parser": ParserSettings,
                             "detectors": DetectorSettings, "shipper": ShipperSettings,
                             "worker": WorkerSettings, "notify": NotifySettings}
ENV_SECTION = {s: ("ES" if s == "elasticsearch" else s.upper()) for s in SECTIONS}
NOT_SCALAR = {("parser", "sources")}
TABLES = {("notify", "receivers")}                         # arrays of tables outside the section class


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{ENV_SECTION[section]}_{key.upper()}"


def _scalar_fields(section: str) -> dict[str, Any]:
    return {f.name: f for f in fields(SECTIONS[section]) if (section, f.name) not in NOT_SCALAR}


def defaults() -> Settings:
    return Settings()


# --- loading ---------------------------------------------------------------------------------

def find_config(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """Explicit path > $OSLOSCOPE_CONFIG > ./osloscope.toml if present > None."""
    env = os.environ if env is None else env
    if explicit:
        if not os.path.exists(explicit):
            raise SettingsError([f"{explicit}: no such file"])
        return explicit
    named = env.get("OSLOSCOPE_CONFIG")
    if named:
        if not os.path.exists(named):
            raise SettingsError([f"env OSLOSCOPE_CONFIG: no such file: {named}"])
        return named
    return DEFAULT_FILE if os.path.isfile(DEFAULT_FILE) else None


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file, then ``OSLOSCOPE_*`` variables; raises SettingsError with all problems."""
    return load_with_origins(path, env)[0]


def load_with_origins(path: str | None = None, env: Mapping[str, str] | None = None
                      ) -> tuple[Settings, dict[tuple[str, str], str]]:
    """``load``, plus where each value set by the file or the environment came from:
    ``{(section, key): "FILE" | "env OSLOSCOPE_X"}`` (for ``to_toml``)."""
    return _Loader(env).run(path)


def _kind(typ: type) -> str:
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
            tuple: "an array of strings"}[typ]


def _did_you_mean(word: str, options, fmt: Callable[[str], str] = str) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {fmt(close[0])}?"
    return f" (known: {', '.join(fmt(o) for o in options)})"


class _Loader:
    def __init__(self, env: Mapping[str, str] | None) -> None:
        self.env = os.environ if env is None else env
        self.errors: list[str] = []
        self.values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        self.where: dict[tuple[str, str], str] = {}        # (section, key) -> location of the value
        self.lines: dict[tuple[str, str], int] = {}        # (section, key) -> line in the file
        self.invalid: set[tuple[str, str]] = set()         # fields with an error of their own
        self.receivers: tuple[ReceiverSettings, ...] = ()

    def err(self, location: str, message: str) -> None:
        self.errors.append(f"{location}: {message}")

    def bad(self, section: str, key: str, message: str) -> None:
        """An error about the effective value of ``section.key``, located where that value came from."""
        line = self.lines.get((section, key))
        self.err(self.where.get((section, key), f"{section}.{key}"),
                 message + (f" (line {line})" if line else ""))
        self.invalid.add((section, key))

    def run(self, path: str | None) -> tuple[Settings, dict[tuple[str, str], str]]:
        try:
            path = find_config(path, self.env)
        except SettingsError as exc:
            self.errors.extend(exc.errors)
            path = None
        if path is not None:
            self.read_file(path)
        self.read_env()
        sections = {}
        for name, cls in SECTIONS.items():
            sections[name] = cls(**self.values[name])
            self.check_fields(name, sections[name])
        settings = Settings(**sections, receivers=self.receivers, origin=path or "defaults")
        self.cross_checks(settings)
        if self.errors:
            raise SettingsError(self.errors)
        return settings, self.where

    # file ------------------------------------------------------------------------------------

    def read_file(self, path: str) -> None:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            text = data.decode("utf-8")
            doc = tomllib.loads(text)
        except OSError as exc:
            return self.err(path, f"cannot read: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            return self.err(path, f"not UTF-8 text (byte offset {exc.start})")
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
            if m:
                return self.err(f"{path}:{m.group(1)}:{m.group(2)}", msg[:m.start()])
            m = re.search(r"\s*\(at end of document\)$", msg)
            line = text.count("\n") + 1
            return self.err(f"{path}:{line}", msg[:m.start()] if m else msg)
        lines = _key_lines(text)
        for section, table in doc.items():
            if section not in SECTIONS:
                owners = [s for s in SECTIONS if section in _scalar_fields(s)]
                hint = (f"; did you mean {owners[0]}.{section} (under [{owners[0]}])?" if owners
                        else _did_you_mean(section, SECTIONS))
                self.err(f"{path}: {section}", f"unknown section{hint}")
                continue
            if not isinstance(table, dict):
                self.err(f"{path}: {section}", f"expected a table [{section}], got {_show(table)}")
                continue
            known = {f.name: f for f in fields(SECTIONS[section])}
            for key, value in table.items():
                loc = f"{path}: {section}.{key}"
                line = lines.get((section, key))
                at = f" (line {line})" if line else ""
                if (section, key) == ("notify", "receivers"):
                    self.read_receivers(path, value, lines)
                elif key not in known:
                    self.err(loc, f"unknown setting{_did_you_mean(key, known, lambda k: f'{section}.{k}')}{at}")
                elif (section, key) == ("parser", "sources"):
                    self.read_sources(path, value, lines)
                else:
                    typ = type(known[key].default)
                    ok, conv = _from_toml(value, typ)
                    if not ok:
                        self.err(loc, f"expected {_kind(typ)}, got {_show(value)}{at}")
                    else:
                        self.values[section][key] = conv
                        self.where[(section, key)] = loc
                        if line:
                            self.lines[(section, key)] = line

    def read_sources(self, path: str, value: Any, lines: dict) -> None:
        if not isinstance(value, list):
            return self.err(f"{path}: parser.sources",
                            "expected an array of tables ([[parser.sources]] with host, path, timezone)")
        out = []
        for i, item in enumerate(value):
            base = f"parser.sources[{i}]"
            if not isinstance(item, dict):
                self.err(f"{path}: {base}", f"expected a table, got {_show(item)}")
                continue
            ok = True
            for key, v in item.items():
                loc = f"{path}: {base}.{key}"
                line = lines.get((base, key))
                at = f" (line {line})" if line else ""
                if key not in ("host", "path", "timezone"):
                    self.err(loc, f"unknown setting{_did_you_mean(key, ('host', 'path', 'timezone'))}{at}")
                    ok = False
                elif not isinstance(v, str):
                    self.err(loc, f"expected a string, got {_show(v)}{at}")
                    ok = False
                else:
                    problem = _timezone(v) if key == "timezone" else (
                        "empty pattern matches nothing; use \"*\" for any" if not v else None)
                    if problem:
                        self.err(loc, problem + at)
                        ok = False
            if "timezone" not in item:
                self.err(f"{path}: {base}", "missing timezone (each [[parser.sources]] names one)")
                ok = False
            if ok:
                out.append(SourceTimezone(**item))
        self.values["parser"]["sources"] = tuple(out)
        self.where[("parser", "sources")] = f"{path}: parser.sources"

    def read_receivers(self, path: str, value: Any, lines: dict) -> None:
        if not isinstance(value, list):
            return self.err(f"{path}: notify.receivers",
                            "expected an array of tables ([[notify.receivers]] with name, url, ...)")
        out, names = [], {}
        known = {f.name: f for f in fields(ReceiverSettings)}
        for i, item in enumerate(value):
            base = f"notify.receivers[{i}]"
            where = lambda key: (f"{path}: {base}.{key}",                      # noqa: E731
                                 f" (line {lines[(base, key)]})" if (base, key) in lines else "")
            if not isinstance(item, dict):
                self.err(f"{path}: {base}", f"expected a table, got {_show(item)}")
                continue
            ok, kw = True, {}
            for key, v in item.items():
                loc, at = where(key)
                if key not in known:
                    ok = False
                    self.err(loc, f"unknown setting{_did_you_mean(key, known)}{at}")
                    continue
                typ = type(known[key].default)
                good, conv = _from_toml(v, typ)
                problem = f"expected {_kind(typ)}, got {_show(v)}" if not good else (
                    _problem(conv, known[key].metadata))
                if problem:
                    ok = False
                    self.err(loc, problem + at)
                else:
                    kw[key] = conv
            for key in ("name", "url"):
                if key not in item:
                    ok = False
                    self.err(f"{path}: {base}", f"missing {key} (each [[notify.receivers]] names one)")
            problems = []                                       # (key, message) across fields
            if kw.get("secret") and kw.get("secret_env"):
                problems.append(("secret_env", "set either secret or secret_env, not both"))
            elif kw.get("secret_env"):
                kw["secret"] = self.env.get(kw["secret_env"], "")
                if not kw["secret"]:
                    problems.append(("secret_env", f"environment variable {kw['secret_env']} is not "
                                                   "set or empty"))
            if kw.get("ca_file") and kw.get("url", "").startswith("http://"):
                problems.append(("ca_file", "is set but url is http://"))
            if kw.get("ca_file") and kw.get("verify_tls") is False:
                problems.append(("ca_file", "is set but verify_tls is false"))
            if kw.get("style") == "alertmanager_api" and kw.get("send_resolved") is False:
                problems.append(("send_resolved", "style alertmanager_api always sends resolves "
                                                  "(Alertmanager's own receivers have send_resolved)"))
            name = kw.get("name")
            if name in names:
                problems.append(("name", f"{name!r} is also notify.receivers[{names[name]}].name; "
                                         "receiver names must be distinct"))
            elif name:
                names[name] = i
            for key, message in problems:
                loc, at = where(key)
                self.err(loc, message + at)
                ok = False
            if ok:
                out.append(ReceiverSettings(**kw))
        self.receivers = tuple(out)

    # environment -----------------------------------------------------------------------------

    def read_env(self) -> None:
        by_prefix = {f"{ENV_PREFIX}{p}_": s for s, p in ENV_SECTION.items()}
        every = [env_name(s, k) for s in SECTIONS for k in _scalar_fields(s)]
        for name in sorted(self.env):
            if (not name.startswith(ENV_PREFIX) or name in RESERVED_ENV
                    or name.startswith(RESERVED_ENV_PREFIXES)):
                continue
            loc = f"env {name}"
            if name.startswith(f"{ENV_PREFIX}ELASTICSEARCH_"):
                guess = f"{ENV_PREFIX}ES_{name[len(ENV_PREFIX) + 14:]}"
                hint = f"; did you mean {guess}?" if guess in every else _did_you_mean(guess, every)
                self.err(loc, f"unknown setting (the elasticsearch prefix is OSLOSCOPE_ES_){hint}")
                continue
            prefix = next((p for p in by_prefix if name.startswith(p)), None)
            if prefix is None:
                continue                                   # not a settings variable
            section, key = by_prefix[prefix], name[len(prefix):].lower()
            if (section, key) in NOT_SCALAR or (section, key) in TABLES:
                hint = (" (a receiver's secret can come from the variable its secret_env names)"
                        if (section, key) in TABLES else "")
                self.err(loc, f"{section}.{key} cannot be set from the environment; use the config "
                              f"file{hint}")
                continue
            known = _scalar_fields(section)
            if key not in known:
                own = [env_name(section, k) for k in known]
                close = difflib.get_close_matches(name, own, n=1, cutoff=0.6) or \
                    difflib.get_close_matches(name, every, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(own)})"
                self.err(loc, f"unknown setting{hint}")
                continue
            typ = type(known[key].default)
            ok, conv = _from_env(self.env[name], typ)
            if not ok:
                self.err(loc, f"expected {_kind(typ)}, got {self.env[name]!r}")
            else:
                self.values[section][key] = conv
                self.where[(section, key)] = loc
                self.lines.pop((section, key), None)

    # validation ------------------------------------------------------------------------------

    def check_fields(self, section: str, obj: Any) -> None:
        for f in fields(obj):
            if (section, f.name) in NOT_SCALAR:
                continue
            problem = _problem(getattr(obj, f.name), f.metadata)
            if problem:
                self.bad(section, f.name, problem)

    def cross_checks(self, s: Settings) -> None:
        k, es, ok = s.kafka, s.elasticsearch, (lambda *keys: not self.invalid & set(keys))
        if k.security_protocol.startswith("SASL_"):
            missing = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if not getattr(k, n)]
            if missing:
                self.bad("kafka", "security_protocol",
                         f"{k.security_protocol} needs {', '.join('kafka.' + n for n in missing)}")
        elif ok(("kafka", "security_protocol")):
            for n in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(k, n):
                    self.bad("kafka", n, f"is set but security_protocol is {k.security_protocol} "
                                         "(use SASL_PLAINTEXT or SASL_SSL)")
        if k.security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(k, n):
                    self.bad("kafka", n, f"is set but security_protocol is {k.security_protocol} "
                                         "(use SSL or SASL_SSL)")
        if k.ssl_keyfile and not k.ssl_certfile:
            self.bad("kafka", "ssl_keyfile", "needs kafka.ssl_certfile")

        names: dict[str, str] = {}
        for f in fields(s.topics):
            topic = getattr(s.topics, f.name)
            if topic in names:
                self.bad("topics", f.name, f"{topic!r} is also topics.{names[topic]}; "
                                           "every topic must be distinct")
            names.setdefault(topic, f.name)

        if es.api_key and es.username:
            self.bad("elasticsearch", "api_key",
                     "set either elasticsearch.api_key or elasticsearch.username/password, not both")
        if bool(es.username) != bool(es.password):
            have, need = ("username", "password") if es.username else ("password", "username")
            self.bad("elasticsearch", have, f"needs elasticsearch.{need}")
        if es.ca_certs and es.url.startswith("http://"):
            self.bad("elasticsearch", "ca_certs", "is set but elasticsearch.url is http://")
        if es.incidents_index == es.requests_index:
            self.bad("elasticsearch", "requests_index", "must differ from elasticsearch.incidents_index")
        for n in ("incidents_index", "requests_index"):
            if ok(("elasticsearch", "events_index_prefix")) and getattr(es, n).startswith(es.events_index_prefix):
                self.bad("elasticsearch", n,
                         f"{getattr(es, n)!r} starts with events_index_prefix {es.events_index_prefix!r}, "
                         "so the events pattern would include it")

        if (ok(("shipper", "batch_size"), ("shipper", "max_buffer_bytes"))
                and s.shipper.batch_size > s.shipper.max_buffer_bytes):
            self.bad("shipper", "batch_size",
                     f"must not exceed shipper.max_buffer_bytes ({s.shipper.max_buffer_bytes})")


def _problem(v: Any, m: Mapping[str, Any]) -> str | None:
    """What is wrong with value ``v`` given its field's constraints (``_f`` metadata), or None."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"must be a finite number, got {v}"
    if m.get("ge") is not None and v < m["ge"]:
        return f"must be >= {m['ge']}, got {v}"
    if m.get("gt") is not None and not v > m["gt"]:
        return f"must be > {m['gt']}, got {v}"
    if m.get("le") is not None and v > m["le"]:
        return f"must be <= {m['le']}, got {v}"
    if m.get("choices") and v not in m["choices"]:
        choices = [c for c in m["choices"] if c]
        close = ([c for c in choices if c.lower() == v.lower()]
                 or difflib.get_close_matches(v, choices, n=1, cutoff=0.6))
        return (f"must be one of {', '.join(repr(c) for c in m['choices'])}, got {v!r}"
                + (f"; did you mean {close[0]!r}?" if close else ""))
    if m.get("check"):
        return m["check"](v)
    return None


def _from_toml(value: Any, typ: type) -> tuple[bool, Any]:
    if typ is tuple:
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        return ok, tuple(value) if ok else None
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, typ), value


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _from_env(text: str, typ: type) -> tuple[bool, Any]:
    if typ is str:
        return True, text
    if typ is tuple:              # type,host  or  ["type", "host"]  (brackets and quotes optional)
        t = text.strip()
        if t[:1] in "[(" and t[-1:] in "])":
            t = t[1:-1]
        return True, tuple(x for x in (i.strip().strip("'\"").strip() for i in t.split(",")) if x)
    t = text.strip().lower()
    if typ is bool:
        return (t in _TRUE + _FALSE), t in _TRUE
    try:
        return True, typ(t)
    except ValueError:
        return False, None


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Line numbers of simple ``key = value`` lines per table, for error messages (best effort)."""
    out: dict[tuple[str, str], int] = {}
    table, counts = "", {}
    for n, line in enumerate(text.splitlines(), 1):
        h = _HEADER.match(line)
        if h:
            name = h.group(2).replace('"', "")
            if h.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                name = f"{name}[{counts[name]}]"
            table = name
            continue
        k = _KEY.match(line)
        if k:
            out.setdefault((table, k.group(1)), n)
    return out


# --- the effective settings as TOML (`osloscope config show`) ---------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)


def to_toml(settings: Settings, where: Mapping[tuple[str, str], str] | None = None) -> str:
    """The effective settings as TOML, secrets masked.

    With ``where`` (from the loader), values set by the environment or differing from the default
    carry a comment saying where they came from.
    """
    data, where, plain = settings.redacted(), where or {}, defaults()
    out = [f"# effective osloscope settings (from {settings.origin}; secrets masked)"]
    for section in SECTIONS:
        out.append(f"\n[{section}]")
        for key, value in data[section].items():
            if key in ("sources", "receivers"):
                continue
            src = where.get((section, key), "")
            changed = getattr(getattr(settings, section), key) != getattr(getattr(plain, section), key)
            note = f"  # {src}" if src and (src.startswith("env ") or changed) else ""
            out.append(f"{key} = {_toml_value(value)}{note}")
    for src in data["parser"]["sources"]:
        out.append("\n[[parser.sources]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in src.items())
    for rec in data["notify"]["receivers"]:
        out.append("\n[[notify.receivers]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in rec.items() if not (k == "secret" and not v))
    return "\n".join(out) + "\n"


if __name__ == "__main__":          # python -m pipeline.settings check|show (same as osloscope config ...)
    from pipeline.cli import main
    raise SystemExit(main(["config", *sys.argv[1:]]))
