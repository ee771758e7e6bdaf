"""pipeline.settings: defaults, file, environment, validation (`osloscope config`:
tests/cli/test_config.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from pathlib import Path

import pytest

from pipeline import settings as S
from pipeline.settings import SettingsError, load
from pipeline.streaming.worker import faust_credentials

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "osloscope.example.toml"


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    """No ./osloscope.toml and no OSLOSCOPE_* variables of the caller interfere."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OSLOSCOPE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "osloscope.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def errors_of(path=None, env=None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(path, env={} if env is None else env)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# --- defaults and the example file -------------------------------------------------------------

def test_defaults_without_file_or_env():
    s = load(env={})
    assert s == S.defaults()
    assert s.origin == "defaults"
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.kafka.partitions == 12
    assert s.topics.events == "osloscope.events.by-request"
    assert s.elasticsearch.url == "http://127.0.0.1:9200" and s.elasticsearch.enabled
    assert s.elasticsearch.request_timeout == 30.0
    assert s.parser.timezone == "UTC" and s.parser.sources == ()
    assert s.detectors.auth_threshold == 10 and s.detectors.auth_window == 300.0
    assert s.shipper.max_buffer_bytes == 32 * 1024 * 1024 and s.shipper.compression == "gzip"
    assert s.worker.metrics_port == 9464


def test_settings_are_frozen():
    s = S.defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.kafka.bootstrap = "x:1"                          # type: ignore[misc]
    hash(s)                                                # frozen all the way down


def test_example_file_loads_and_equals_defaults():
    s = load(str(EXAMPLE), env={})
    assert s.origin == str(EXAMPLE)
    assert s == S.defaults()                               # origin is not part of equality


def test_example_file_lists_every_setting():
    doc = tomllib.loads(EXAMPLE.read_text())
    assert set(doc) == set(S.SECTIONS)
    for section, cls in S.SECTIONS.items():
        expected = {f.name for f in dataclasses.fields(cls)} - {"sources"}
        assert set(doc[section]) == expected, section
    text = EXAMPLE.read_text()
    assert "# [[parser.sources]]" in text                 # documented, commented out (default: none)


def test_finds_osloscope_toml_in_cwd(tmp_path):
    write(tmp_path, "[kafka]\nbootstrap = 'k1:9092'\n")
    s = load(env={})
    assert s.origin == "osloscope.toml"
    assert s.kafka.bootstrap == "k1:9092"


def test_find_config_precedence(tmp_path):
    a, b = write(tmp_path, "", "a.toml"), write(tmp_path, "", "b.toml")
    assert S.find_config(None, {}) is None
    write(tmp_path, "")
    assert S.find_config(None, {}) == "osloscope.toml"
    assert S.find_config(None, {"OSLOSCOPE_CONFIG": b}) == b
    assert S.find_config(a, {"OSLOSCOPE_CONFIG": b}) == a
    with pytest.raises(SettingsError) as info:
        S.find_config(None, {"OSLOSCOPE_CONFIG": str(tmp_path / "missing.toml")})
    assert info.value.errors == [f"env OSLOSCOPE_CONFIG: no such file: {tmp_path / 'missing.toml'}"]
    with pytest.raises(SettingsError) as info:
        S.find_config("nope.toml", {})
    assert info.value.errors == ["nope.toml: no such file"]


def test_config_env_variable_is_used_by_load(tmp_path):
    path = write(tmp_path, "[topics]\nraw = 'x.raw'\n", "elsewhere.toml")
    s = load(env={"OSLOSCOPE_CONFIG": path})
    assert s.topics.raw == "x.raw" and s.origin == path


# --- file values -------------------------------------------------------------------------------

def test_file_values_and_int_for_float(tmp_path):
    path = write(tmp_path, """
[kafka]
bootstrap = "k1:9092, k2:9093"
partitions = 6
[elasticsearch]
url = ""
request_timeout = 10          # an integer is fine for a float setting
[detectors]
auth_window = 60
[[parser.sources]]
host = "compute-*"
timezone = "Europe/Berlin"
[[parser.sources]]
path = "/var/log/keystone/*"
timezone = "+08:00"
""")
    s = load(path, env={})
    assert s.kafka.servers == ["k1:9092", "k2:9093"]
    assert s.kafka.partitions == 6
    assert s.elasticsearch.enabled is False
    assert s.elasticsearch.request_timeout == 10.0 and isinstance(s.elasticsearch.request_timeout, float)
    assert s.detectors.auth_window == 60.0 and isinstance(s.detectors.auth_window, float)
    assert s.parser.sources == (S.SourceTimezone("compute-*", "*", "Europe/Berlin"),
                                S.SourceTimezone("*", "/var/log/keystone/*", "+08:00"))


def test_timezone_for_first_match_wins():
    p = S.ParserSettings(timezone="America/New_York", sources=(
        S.SourceTimezone(host="compute-*", path="*/nova/*", timezone="Europe/Berlin"),
        S.SourceTimezone(host="compute-*", timezone="Asia/Tokyo"),
        S.SourceTimezone(path="*keystone*", timezone="+08:00"),
    ))
    assert p.timezone_for("compute-1", "/var/log/nova/nova-compute.log") == "Europe/Berlin"
    assert p.timezone_for("compute-1", "/var/log/neutron/agent.log") == "Asia/Tokyo"
    assert p.timezone_for("controller-1", "/var/log/keystone/keystone.log") == "+08:00"
    assert p.timezone_for("controller-1", "/var/log/nova/nova-api.log") == "America/New_York"
    assert p.timezone_for(None, None) == "America/New_York"
    assert p.timezone_for("Compute-1", "/x") == "America/New_York"     # globs are case-sensitive
    assert S.ParserSettings().timezone_for("h", "/p") == "UTC"


# --- environment -------------------------------------------------------------------------------

def test_env_overrides_beat_file_and_convert_types(tmp_path):
    path = write(tmp_path, "[kafka]\nbootstrap = 'file:9092'\npartitions = 3\n")
    s = load(path, env={
        "OSLOSCOPE_KAFKA_BOOTSTRAP": "env:9092",
        "OSLOSCOPE_ES_URL": "https://es.example:9200",
        "OSLOSCOPE_ES_API_KEY": "c2VjcmV0",
        "OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": "ev-",
        "OSLOSCOPE_ES_VERIFY_CERTS": "no",
        "OSLOSCOPE_ES_REQUEST_TIMEOUT": "2.5",
        "OSLOSCOPE_TOPICS_RAW": "t.raw",
        "OSLOSCOPE_PARSER_TIMEZONE": "Europe/Berlin",
        "OSLOSCOPE_WORKER_METRICS_PORT": " 0 ",
        "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": "/var/lib/ship",
        "OSLOSCOPE_DETECTORS_AUTH_THRESHOLD": "25",
        "OSLOSCOPE_DETECTORS_AUTH_WINDOW": "60",
    })
    assert s.kafka.bootstrap == "env:9092"
    assert s.kafka.partitions == 3                          # from the file
    assert s.elasticsearch.url == "https://es.example:9200"
    assert s.elasticsearch.api_key == "c2VjcmV0"
    assert s.elasticsearch.events_index_prefix == "ev-"
    assert s.elasticsearch.verify_certs is False
    assert s.elasticsearch.request_timeout == 2.5
    assert s.topics.raw == "t.raw"
    assert s.parser.timezone == "Europe/Berlin"
    assert s.worker.metrics_port == 0
    assert s.shipper.checkpoint_dir == "/var/lib/ship"
    assert s.detectors.auth_threshold == 25
    assert s.detectors.auth_window == 60.0 and isinstance(s.detectors.auth_window, float)


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("YES", True),
                                        ("false", False), ("0", False), ("No", False)])
def test_env_booleans(text, value):
    assert load(env={"OSLOSCOPE_ES_VERIFY_CERTS": text}).elasticsearch.verify_certs is value


def test_every_scalar_setting_has_an_env_name():
    env = {}
    for section, cls in S.SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name == "sources":
                continue
            v = f.default
            env[S.env_name(section, f.name)] = str(v).lower() if isinstance(v, bool) else str(v)
    assert "OSLOSCOPE_ES_EVENTS_INDEX_PREFIX" in env and "OSLOSCOPE_KAFKA_SASL_PASSWORD" in env
    assert load(env=env) == S.defaults()


def test_reserved_and_foreign_env_names_are_ignored():
    env = {"OSLOSCOPE_CONFIG": "", "OSLOSCOPE_HOME": "/x", "OSLOSCOPE_JAVA_HOME": "/jdk",
           "OSLOSCOPE_KEEP_SERVICES": "1", "OSLOSCOPE_IT_KAFKA_PORT": "9",
           "OSLOSCOPE_IT_ANYTHING": "x", "OSLOSCOPE_DEPLOY_DIR": "/d", "KAFKA_BOOTSTRAP": "nope:1"}
    assert load(env=env) == S.defaults()


# --- errors ------------------------------------------------------------------------------------

def test_every_file_error_reported_together(tmp_path):
    path = write(tmp_path, """\
[kafka]
bootstraps = "k:9092"
partitions = true
replication_factor = 0
security_protocol = "SASL_SSL"

[elastic]
url = "x"

[elasticsearch]
api_key = "k"
username = "u"
password = "p"
request_timeout = "30"
index_events = "warnings"

[parser]
timezone = "Mars/Olympus"

[[parser.sources]]
host = "c-*"
timezone = "Nowhere/Land"
[[parser.sources]]
host = "d-*"

[worker]
metrics_port = 70000
""")
    errs = errors_of(path)
    expected = [
        f"{path}: kafka.bootstraps: unknown setting; did you mean kafka.bootstrap? (line 2)",
        f"{path}: kafka.partitions: expected an integer, got boolean true (line 3)",
        f"{path}: elastic: unknown section; did you mean elasticsearch?",
        f"{path}: elasticsearch.request_timeout: expected a number, got string \"30\" (line 14)",
        f"{path}: parser.sources[0].timezone: unknown timezone 'Nowhere/Land'",
        f"{path}: parser.sources[1]: missing timezone",
        f"{path}: kafka.replication_factor: must be >= 1, got 0",
        f"{path}: elasticsearch.index_events: must be one of 'all', 'warning+', 'none', got 'warnings'; "
        "did you mean 'warning+'?",
        f"{path}: parser.timezone: unknown timezone 'Mars/Olympus'",
        f"{path}: worker.metrics_port: must be <= 65535, got 70000",
        f"{path}: kafka.security_protocol: SASL_SSL needs kafka.sasl_mechanism, kafka.sasl_username, "
        "kafka.sasl_password",
        f"{path}: elasticsearch.api_key: set either elasticsearch.api_key or "
        "elasticsearch.username/password, not both",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errs), (want, errs)
    assert len(errs) == len(expected), errs


def test_env_errors_located_by_variable(tmp_path):
    path = write(tmp_path, "[kafka]\npartitions = 'two'\n")
    errs = errors_of(path, env={
        "OSLOSCOPE_KAFKA_BOOTSTRAPS": "k:9092",
        "OSLOSCOPE_KAFKA_PARTITIONS": "x",
        "OSLOSCOPE_ES_BULK_MAX_DOCS": "0",
        "OSLOSCOPE_ES_VERIFY_CERTS": "maybe",
        "OSLOSCOPE_ELASTICSEARCH_URL": "http://x:9200",
        "OSLOSCOPE_PARSER_SOURCES": "x",
        "OSLOSCOPE_SHIPPER_POLL_INTERVAL": "inf",
    })
    assert f"{path}: kafka.partitions: expected an integer, got string \"two\" (line 2)" in errs
    assert ("env OSLOSCOPE_KAFKA_BOOTSTRAPS: unknown setting; did you mean OSLOSCOPE_KAFKA_BOOTSTRAP?"
            in errs)
    assert "env OSLOSCOPE_KAFKA_PARTITIONS: expected an integer, got 'x'" in errs
    assert "env OSLOSCOPE_ES_BULK_MAX_DOCS: must be >= 1, got 0" in errs
    assert "env OSLOSCOPE_ES_VERIFY_CERTS: expected a boolean (true/false), got 'maybe'" in errs
    assert any(e.startswith("env OSLOSCOPE_ELASTICSEARCH_URL: unknown setting") and
               e.endswith("did you mean OSLOSCOPE_ES_URL?") for e in errs)
    assert any(e.startswith("env OSLOSCOPE_PARSER_SOURCES: ") for e in errs)
    assert "env OSLOSCOPE_SHIPPER_POLL_INTERVAL: must be a finite number, got inf" in errs
    assert len(errs) == 8, errs


@pytest.mark.parametrize("env,location,fragment", [
    ({"OSLOSCOPE_KAFKA_BOOTSTRAP": "k1:9092,k2"}, "env OSLOSCOPE_KAFKA_BOOTSTRAP", "host:port"),
    ({"OSLOSCOPE_KAFKA_BOOTSTRAP": "k1:99999"}, "env OSLOSCOPE_KAFKA_BOOTSTRAP", "host:port"),
    ({"OSLOSCOPE_KAFKA_SASL_USERNAME": "u"}, "env OSLOSCOPE_KAFKA_SASL_USERNAME", "SASL_PLAINTEXT"),
    ({"OSLOSCOPE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem", "OSLOSCOPE_KAFKA_SECURITY_PROTOCOL": "SSL"},
     "env OSLOSCOPE_KAFKA_SSL_CAFILE", "no such file"),
    ({"OSLOSCOPE_TOPICS_EVENTS": "osloscope.raw"}, "env OSLOSCOPE_TOPICS_EVENTS", "distinct"),
    ({"OSLOSCOPE_TOPICS_RAW": "bad topic"}, "env OSLOSCOPE_TOPICS_RAW", "not a valid Kafka topic"),
    ({"OSLOSCOPE_ES_INCIDENTS_INDEX": "Incidents"}, "env OSLOSCOPE_ES_INCIDENTS_INDEX", "lower case"),
    ({"OSLOSCOPE_ES_EVENTS_INDEX_PREFIX": "osloscope-i"}, "elasticsearch.incidents_index", "starts with"),
    ({"OSLOSCOPE_ES_USERNAME": "elastic"}, "env OSLOSCOPE_ES_USERNAME", "needs elasticsearch.password"),
    ({"OSLOSCOPE_ES_URL": "127.0.0.1:9200"}, "env OSLOSCOPE_ES_URL", "http:// or https://"),
    ({"OSLOSCOPE_WORKER_APP_ID": " "}, "env OSLOSCOPE_WORKER_APP_ID", "must not be empty"),
    ({"OSLOSCOPE_SHIPPER_MAX_BUFFER_BYTES": "1000"}, "env OSLOSCOPE_SHIPPER_MAX_BUFFER_BYTES", ">= 1048576"),
    ({"OSLOSCOPE_SHIPPER_COMPRESSION": "snappy"}, "env OSLOSCOPE_SHIPPER_COMPRESSION", "'none', 'gzip'"),
    ({"OSLOSCOPE_PARSER_TIMEZONE": "+25:00"}, "env OSLOSCOPE_PARSER_TIMEZONE", "unknown timezone"),
    ({"OSLOSCOPE_DETECTORS_AUTH_WINDOW": "0"}, "env OSLOSCOPE_DETECTORS_AUTH_WINDOW", "must be > 0"),
])
def test_single_errors(env, location, fragment):
    errs = errors_of(env=env)
    assert len(errs) == 1, errs
    assert errs[0].startswith(location + ": ") and fragment in errs[0], errs


@pytest.mark.parametrize("tz", ["UTC", "Z", "Europe/Berlin", "America/Argentina/Buenos_Aires",
                                "+08:00", "-0530", "+00:00"])
def test_valid_timezones(tz):
    assert load(env={"OSLOSCOPE_PARSER_TIMEZONE": tz}).parser.timezone == tz


def test_toml_syntax_error_has_file_line_column(tmp_path):
    path = write(tmp_path, "[kafka]\nbootstrap = 'k:9092'\npartitions = = 2\n")
    errs = errors_of(path, env={"OSLOSCOPE_WORKER_METRICS_PORT": "x"})
    assert errs[0].startswith(f"{path}:3:14: ")
    assert "env OSLOSCOPE_WORKER_METRICS_PORT: expected an integer, got 'x'" in errs   # still collected


def test_unreadable_and_non_utf8_files(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[kafka]\nclient_id = '\xe9'\n")
    assert errors_of(str(bad)) == [f"{bad}: not UTF-8 text (byte offset 21)"]
    errs = errors_of(str(tmp_path))                         # a directory
    assert len(errs) == 1 and errs[0].startswith(f"{tmp_path}: cannot read: ")


def test_top_level_key_points_to_its_section(tmp_path):
    path = write(tmp_path, "bootstrap = 'k:9092'\n")
    assert errors_of(path) == [f"{path}: bootstrap: unknown section; did you mean kafka.bootstrap "
                               "(under [kafka])?"]


# --- clients and redaction ---------------------------------------------------------------------

def test_kafka_client_kwargs_plaintext():
    k = S.defaults().kafka
    assert k.client_kwargs() == {"bootstrap_servers": ["127.0.0.1:9092"],
                                 "security_protocol": "PLAINTEXT", "client_id": "osloscope"}
    assert k.aiokafka_kwargs() == {"broker": "kafka://127.0.0.1:9092"}
    assert faust_credentials(k) is None


def test_kafka_client_kwargs_sasl_ssl(tmp_path):
    s = load(env={"OSLOSCOPE_KAFKA_BOOTSTRAP": "b1:9093,b2:9093",
                  "OSLOSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                  "OSLOSCOPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "OSLOSCOPE_KAFKA_SASL_USERNAME": "shipper",
                  "OSLOSCOPE_KAFKA_SASL_PASSWORD": "s3cret"})
    kw = s.kafka.client_kwargs()
    assert kw == {"bootstrap_servers": ["b1:9093", "b2:9093"], "security_protocol": "SASL_SSL",
                  "client_id": "osloscope", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "shipper", "sasl_plain_password": "s3cret"}
    from kafka import KafkaAdminClient, KafkaProducer
    assert set(kw) <= set(KafkaProducer.DEFAULT_CONFIG) and set(kw) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    assert s.kafka.aiokafka_kwargs() == {"broker": "kafka://b1:9093;kafka://b2:9093"}
    creds = faust_credentials(s.kafka)
    assert type(creds).__name__ == "SASLCredentials"
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("shipper", "s3cret")
    assert creds.ssl_context is not None


def test_kafka_ssl_faust_credentials():
    k = S.KafkaSettings(security_protocol="SSL")
    assert k.client_kwargs()["security_protocol"] == "SSL"
    creds = faust_credentials(k)
    assert type(creds).__name__ == "SSLCredentials" and creds.protocol.value == "SSL"
    assert creds.context.verify_mode.name == "CERT_REQUIRED"


def test_elasticsearch_client_kwargs():
    es = S.defaults().elasticsearch
    assert es.client_kwargs() == {"hosts": ["http://127.0.0.1:9200"], "verify_certs": True,
                                  "request_timeout": 30.0}
    basic = load(env={"OSLOSCOPE_ES_URL": "https://es:9200", "OSLOSCOPE_ES_USERNAME": "elastic",
                      "OSLOSCOPE_ES_PASSWORD": "pw"}).elasticsearch
    assert basic.client_kwargs()["basic_auth"] == ("elastic", "pw")
    key = load(env={"OSLOSCOPE_ES_API_KEY": "abc"}).elasticsearch.client_kwargs()
    assert key["api_key"] == "abc" and "basic_auth" not in key
    from elasticsearch import Elasticsearch
    Elasticsearch(**es.client_kwargs()).close()          # the keywords are accepted (no request made)
    with pytest.raises(RuntimeError):
        load(env={"OSLOSCOPE_ES_URL": ""}).elasticsearch.client_kwargs()


def test_redacted_masks_set_secrets_only():
    s = load(env={"OSLOSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                  "OSLOSCOPE_KAFKA_SASL_MECHANISM": "PLAIN", "OSLOSCOPE_KAFKA_SASL_USERNAME": "u",
                  "OSLOSCOPE_KAFKA_SASL_PASSWORD": "kafka-pw", "OSLOSCOPE_ES_API_KEY": "es-key"})
    r = s.redacted()
    assert r["kafka"]["sasl_password"] == "***" and r["kafka"]["sasl_username"] == "u"
    assert r["elasticsearch"]["api_key"] == "***"
    assert r["elasticsearch"]["password"] == ""            # unset stays visibly unset
    assert r["origin"] == "defaults" and r["worker"]["metrics_port"] == 9464
    text = json.dumps(r)
    assert "kafka-pw" not in text and "es-key" not in text
    assert s.kafka.sasl_password == "kafka-pw"               # the settings themselves keep the value


def test_deploy_files_use_known_settings_variables():
    """deploy/docker-compose.yml and deploy/Dockerfile set only variables load() accepts."""
    import re
    known = {S.env_name(s, f.name) for s, cls in S.SECTIONS.items()
             for f in dataclasses.fields(cls) if f.name != "sources"} | S.RESERVED_ENV
    used = set()
    for name in ("docker-compose.yml", "Dockerfile"):
        text = (ROOT / "deploy" / name).read_text()
        used |= set(re.findall(r"\b(OSLOSCOPE_[A-Z0-9_]+)\s*[:=]", text))
    assert {"OSLOSCOPE_KAFKA_BOOTSTRAP", "OSLOSCOPE_ES_URL", "OSLOSCOPE_WORKER_STATE_DIR"} <= used
    assert used <= known, used - known
