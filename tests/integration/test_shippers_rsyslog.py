"""The shipper configurations of deploy/shippers/.

rsyslog, for real: Debian's rsyslog + rsyslog-kafka (installed by the module
fixture when missing) runs deploy/shippers/rsyslog/osloscope.conf against the
Kafka of the integration fixtures. Its records must be one per line, in each
file's order, with the right host and file, keyed by host (one host, one
partition); the worker's events and incidents from what rsyslog shipped must
equal those from what ``osloscope ship`` shipped of the same files (same
number of events; same incident ids, types, rules, counts, first records,
hosts and services -- see ``comparable`` for what legitimately varies).
Then, while rsyslog runs: lines appended (one of 100 KB, one with bytes that
are not UTF-8), the file renamed as logrotate does, lines written to the
renamed file by the still-open handle, and a new file: every line must
arrive once and whole, under the original file name, and be indexed.

The configuration is adjusted for paths and ports only, by text
substitution: the broker address, the topic, rsyslog's work directory and
failed-message file, and the inputs. The shipped inputs follow
/var/log/<service>/*.log with host = ``$hostname``; here the "fleet" is
deploy/samples/ copied into a temporary directory laid out
<root>/<host>/<service dir>/<file>.log, all on this one machine, so each
host directory gets its own imfile input (with the shipped input's
parameters) bound to a small ruleset that sets ``$.osloscope_host`` to that
host's name and calls the shipped ``osloscope`` ruleset -- which is what the
shipped file documents for a log collector shipping other hosts' files.

Filebeat, Fluent Bit and Vector cannot be installed here (neither Debian nor
PyPI has them): their configurations are parsed (YAML / TOML), checked for
the settings osloscope relies on, and a record of the shape each produces,
built from the field names in its configuration, is read through osloscope's
own code (``source_of`` and the parser, imported tolerantly since the
modules move) and must give the same events as the same lines shipped by
``osloscope ship``. That part needs no Kafka.

Every osloscope command runs through the console script as a subprocess.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import types
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"
SHIPPERS = ROOT / "deploy" / "shippers"
RSYSLOG_CONF = SHIPPERS / "rsyslog" / "osloscope.conf"
FILEBEAT_YML = SHIPPERS / "filebeat" / "filebeat.yml"
FLUENT_BIT_YAML = SHIPPERS / "fluent-bit" / "fluent-bit.yaml"
VECTOR_TOML = SHIPPERS / "vector" / "vector.toml"
OSLOSCOPE = str(Path(sys.executable).parent / "osloscope")
from processes import Process, wait_for, worker  # noqa: E402
DEFAULT_TOPIC = "osloscope.raw"
IDLE_FLUSH = 5.0          # worker.idle_flush: the last open record of a stream completes after this

SAMPLE_HOST = "compute-1"
SAMPLE_FILE = SAMPLES / SAMPLE_HOST / "nova" / "nova-compute.log"
SHIPPED_PATH = "/var/log/nova/nova-compute.log"      # where the sample file would live on its host


# ============================================================ osloscope's own reading (unit-style)

def _module_with(attr: str, *candidates: str):
    """The pipeline module defining ``attr``: one of ``candidates``, else found
    in the tree (pipeline/ is being regrouped into packages)."""
    for name in candidates:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, attr):
            return mod
    pattern = re.compile(rf"^(?:def|class) {re.escape(attr)}\b", re.M)
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
            mod = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            if hasattr(mod, attr):
                return mod
    pytest.fail(f"no {attr} in pipeline/")


def read_like_the_worker(records: list[tuple[bytes | None, bytes, dict]]) -> list:
    """The events osloscope's worker makes of raw records (key, value, headers):
    its ``source_of`` and parser, one parser for all, flushed at the end."""
    stages = _module_with("source_of", "pipeline.streaming.stage", "pipeline.streaming.stages",
                          "pipeline.stages")
    parsing = _module_with("Parser", "pipeline.parsing.parser", "pipeline.parser")
    parser = parsing.Parser()
    events = []
    for i, (key, value, headers) in enumerate(records):
        # a raw Kafka record as the worker sees it (source_of reads topic, partition, key, headers)
        msg = types.SimpleNamespace(topic=DEFAULT_TOPIC, partition=0, offset=i, key=key, value=value,
                                    headers=headers)
        source, offset = stages.source_of(msg)
        events.extend(parser.feed(value, source, offset))
    events.extend(parser.flush())
    return events


def _event_view(ev) -> dict:
    return {name: getattr(ev, name) for name in (
        "kind", "host", "file_path", "service", "timestamp", "pid", "level", "logger", "message",
        "request_id", "global_request_id", "instance_id", "stack_trace", "error_type", "error_message")}


def sample_lines() -> list[bytes]:
    return SAMPLE_FILE.read_bytes().splitlines()


def shipped_by_osloscope_ship(lines: list[bytes]) -> list:
    """What ``osloscope ship`` sends of the sample file: key host|path, the line, headers."""
    out, offset = [], 0
    for line in lines:
        headers = {"host": SAMPLE_HOST.encode(), "path": SHIPPED_PATH.encode(),
                   "service": b"nova-compute", "offset": str(offset).encode(), "inode": b"2049:131",
                   "shipper": b"osloscope/0.1"}
        out.append((f"{SAMPLE_HOST}|{SHIPPED_PATH}".encode(), line, headers))
        offset += len(line) + 1
    return out


def assert_reads_like_osloscope_ship(records: list, what: str) -> None:
    lines = sample_lines()
    assert len(records) == len(lines)
    want = [_event_view(e) for e in read_like_the_worker(shipped_by_osloscope_ship(lines))]
    got = [_event_view(e) for e in read_like_the_worker(records)]
    assert want and all(w["kind"] != "unparsed" for w in want)
    assert {(e["host"], e["file_path"], e["service"]) for e in got} == {
        (SAMPLE_HOST, SHIPPED_PATH, "nova-compute")}, what
    assert got == want, what


def _drop_dotted(doc: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def test_rsyslog_template_makes_an_envelope_osloscope_unwraps():
    text = RSYSLOG_CONF.read_text()
    envelope = re.search(r'template\(name="osloscope_envelope"[^)]*option\.jsonf="on"\)\s*\{(.*?)\n\}',
                         text, re.S)
    assert envelope, "the envelope template (list, option.jsonf) is missing"
    fields = dict(re.findall(r'property\(outname="(\w+)" name="([^"]+)" format="jsonf"\)', envelope.group(1)))
    assert set(fields.values()) >= {"msg", "$.osloscope_host", "$!metadata!filename"}, fields
    key = re.search(r'template\(name="osloscope_key" type="string" string="([^"]+)"\)', text)
    assert key and key.group(1) == "%$.osloscope_host%"
    action = re.search(r'action\(type="omkafka"(.*?)\n    \)', text, re.S).group(1)
    for setting in ('topic="osloscope.raw"', 'key="osloscope_key" dynaKey="on"', 'partitions.auto="on"',
                    '"request.required.acks=-1"', 'queue.filename=', 'queue.saveOnShutdown="on"'):
        assert setting in action, setting
    inputs = re.findall(r'input\(type="imfile"[^)]*\)', text)
    assert inputs and all('addMetadata="on"' in i and 'readMode="0"' in i and 'ruleset="osloscope"' in i
                          for i in inputs)
    assert "startmsg.regex" not in text and "endmsg.regex" not in text      # no multi-line folding

    value = {"msg": None, "$.osloscope_host": SAMPLE_HOST, "$!metadata!filename": SHIPPED_PATH}
    records = []
    for line in sample_lines():
        value["msg"] = line.decode()
        doc = {out: value[name] for out, name in fields.items()}
        doc["shipper"] = "rsyslog"
        records.append((SAMPLE_HOST.encode(), (json.dumps(doc) + "\n").encode(), {}))
    assert_reads_like_osloscope_ship(records, "rsyslog envelope")


def test_filebeat_config_makes_an_event_osloscope_unwraps():
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the Filebeat configuration")
    cfg = yaml.safe_load(FILEBEAT_YML.read_text())
    (inp,) = cfg["filebeat.inputs"]
    assert inp["type"] == "filestream" and inp["id"]
    assert "parsers" not in inp and "multiline" not in json.dumps(inp)      # the worker folds
    assert any(p.startswith("/var/log/nova/") for p in inp["paths"])
    out = cfg["output.kafka"]
    assert out["topic"] == DEFAULT_TOPIC and out["key"] == "%{[host.name]}"
    assert out["required_acks"] == -1 and out.get("compression", "gzip") in ("gzip", "none")
    assert "codec.format" not in out                                       # JSON events
    dropped = [f for proc in cfg.get("processors", []) for f in proc.get("drop_fields", {}).get("fields", [])]
    assert "log.offset" in dropped
    assert not {"message", "host", "host.name", "log", "log.file", "log.file.path"} & set(dropped)

    records = []
    offset = 0
    for line in sample_lines():
        event = {"@timestamp": "2026-08-01T10:00:00.000Z",
                 "@metadata": {"beat": "filebeat", "type": "_doc", "version": "9.1.0"},
                 "message": line.decode(),
                 "log": {"offset": offset, "file": {"path": SHIPPED_PATH, "device_id": "2049", "inode": "131",
                                                    "fingerprint": "5f2c0e"}},
                 "input": {"type": "filestream"},
                 "host": {"name": SAMPLE_HOST},
                 "agent": {"type": "filebeat", "name": SAMPLE_HOST, "version": "9.1.0"},
                 "ecs": {"version": "8.0.0"}}
        for field in dropped:
            _drop_dotted(event, field)
        records.append((SAMPLE_HOST.encode(), json.dumps(event).encode(), {}))
        offset += len(line) + 1
    assert_reads_like_osloscope_ship(records, "Filebeat event")


def test_fluent_bit_config_makes_a_record_osloscope_unwraps():
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the Fluent Bit configuration")
    pipe = yaml.safe_load(FLUENT_BIT_YAML.read_text())["pipeline"]
    (tail,) = [i for i in pipe["inputs"] if i["name"] == "tail"]
    assert not any(k.startswith("multiline") or k.startswith("docker_mode") or k == "parser" for k in tail)
    assert "/var/log/nova/*.log" in tail["path"].split(",")
    assert "offset_key" not in tail
    (sysinfo,) = [f for f in pipe["filters"] if f["name"] == "sysinfo"]
    (kafka,) = [o for o in pipe["outputs"] if o["name"] == "kafka"]
    assert kafka["topics"] == DEFAULT_TOPIC and kafka.get("format", "json") == "json"
    assert kafka["message_key_field"] == sysinfo["hostname_key"]
    assert str(kafka["rdkafka.request.required.acks"]) == "-1"
    line_key, path_key, host_key = tail.get("key", "log"), tail["path_key"], sysinfo["hostname_key"]

    records = [(SAMPLE_HOST.encode(),
                json.dumps({"@timestamp": "2026-08-01T10:00:00.000000Z", line_key: line.decode(),
                            path_key: SHIPPED_PATH, host_key: SAMPLE_HOST}).encode(), {})
               for line in sample_lines()]
    assert_reads_like_osloscope_ship(records, "Fluent Bit record")


def test_vector_config_makes_an_event_osloscope_unwraps():
    cfg = tomllib.loads(VECTOR_TOML.read_text())
    (source,) = cfg["sources"].values()
    (sink,) = cfg["sinks"].values()
    assert source["type"] == "file" and "multiline" not in source and "offset_key" not in source
    assert "/var/log/nova/*.log" in source["include"]
    assert sink["type"] == "kafka" and sink["topic"] == DEFAULT_TOPIC and sink["encoding"]["codec"] == "json"
    assert sink["inputs"] == list(cfg["sources"])
    file_key, host_key = source.get("file_key", "file"), source.get("host_key", "host")
    assert sink["key_field"] == host_key
    assert sink["librdkafka_options"]["request.required.acks"] == "-1"
    assert sink["buffer"]["type"] == "disk" and sink["acknowledgements"]["enabled"] is True

    records = [(SAMPLE_HOST.encode(),
                json.dumps({file_key: SHIPPED_PATH, host_key: SAMPLE_HOST, "message": line.decode(),
                            "source_type": "file", "timestamp": "2026-08-01T10:00:00.000000Z"}).encode(), {})
               for line in sample_lines()]
    assert_reads_like_osloscope_ship(records, "Vector event")


# ============================================================ rsyslog for real

def _rsyslogd_binary() -> str | None:
    return shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)


def _rsyslog_loads_modules(binary: str | None, tmp: Path) -> tuple[bool, str]:
    """Whether rsyslogd accepts a configuration that loads every module the shipped one needs."""
    if binary is None:
        return False, "no rsyslogd"
    conf = tmp / "modules.conf"
    modules = re.findall(r'^module\(load="(\w+)"', RSYSLOG_CONF.read_text(), re.M)
    conf.write_text(f'global(workDirectory="{tmp}")\n'
                    + "".join(f'module(load="{m}")\n' for m in modules)
                    + f'input(type="imfile" file="{tmp}/*.log" tag="t" addMetadata="on")\n'
                    + 'template(name="k" type="string" string="%hostname%")\n'
                    + 'action(type="omkafka" topic="t" broker=["127.0.0.1:1"] key="k" dynaKey="on")\n')
    r = subprocess.run([binary, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    return r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def rsyslogd(tmp_path_factory) -> str:
    """rsyslogd with omkafka: Debian's rsyslog and rsyslog-kafka, installed when missing
    (never started as a service: only the test's own foreground rsyslogd runs)."""
    tmp = tmp_path_factory.mktemp("rsyslog-check")
    ok, said = _rsyslog_loads_modules(_rsyslogd_binary(), tmp)
    if ok:
        return _rsyslogd_binary()
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail("rsyslogd with omkafka is missing and cannot be installed here (needs root and "
                    f"apt-get: apt-get install rsyslog rsyslog-kafka); rsyslogd said: {said[-800:]}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "rsyslog", "rsyslog-kafka"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"installing rsyslog failed: {' '.join(cmd)} exited {r.returncode}:\n"
                        f"{(r.stdout + r.stderr)[-3000:]}")
    ok, said = _rsyslog_loads_modules(_rsyslogd_binary(), tmp)
    if not ok:
        pytest.fail(f"rsyslog and rsyslog-kafka installed, but the modules do not load:\n{said[-2000:]}")
    return _rsyslogd_binary()


def rsyslog_conf_for(fleet: Path, hosts: list[str], workdir: Path, bootstrap: str, topic: str) -> str:
    """deploy/shippers/rsyslog/osloscope.conf adjusted for paths and ports only (see the module doc)."""
    text = RSYSLOG_CONF.read_text()

    def replace_once(old: str, new: str) -> None:
        nonlocal text
        assert text.count(old) == 1, f"{old!r} is not in the shipped configuration exactly once"
        text = text.replace(old, new)

    replace_once('broker=["localhost:9092"]', f'broker=["{bootstrap}"]')
    replace_once(f'topic="{DEFAULT_TOPIC}"', f'topic="{topic}"')
    replace_once('failedMsgFile="/var/spool/rsyslog/', f'failedMsgFile="{workdir}/')
    block = re.search(r"# OSLOSCOPE_INPUTS_BEGIN\n(.*?)# OSLOSCOPE_INPUTS_END\n", text, re.S)
    assert block, "the shipped configuration has no OSLOSCOPE_INPUTS_BEGIN/END block"
    shipped_input = re.search(r'input\(type="imfile".*?\)', block.group(1), re.S).group(0)
    ours = []
    for n, host in enumerate(hosts):
        ours.append(f'ruleset(name="fleet_host_{n}") {{\n'
                    f'    set $.osloscope_host = "{host}";\n'
                    f'    call osloscope\n}}\n')
        inp = re.sub(r'file="[^"]*"', f'file="{fleet / host}/*/*.log"', shipped_input)
        inp = re.sub(r'tag="[^"]*"', f'tag="{host}"', inp)
        ours.append(inp.replace('ruleset="osloscope"', f'ruleset="fleet_host_{n}"') + "\n")
    text = text[:block.start(1)] + "".join(ours) + text[block.end(1):]
    return f'global(workDirectory="{workdir}")\n' + text


def test_rsyslog_conf_is_valid_as_a_drop_in(rsyslogd, tmp_path):
    """The shipped file in /etc/rsyslog.d/ of the distribution's own rsyslog.conf
    (a copy: the system's rsyslog is neither changed nor started)."""
    stock = Path("/etc/rsyslog.conf")
    if not stock.is_file():
        pytest.skip("no /etc/rsyslog.conf")
    text = stock.read_text()
    include = re.search(r"^\$IncludeConfig\s+/etc/rsyslog\.d/\*\.conf\s*$", text, re.M)
    if not include:
        pytest.skip("this rsyslog.conf includes no /etc/rsyslog.d/*.conf")
    shutil.copy(RSYSLOG_CONF, tmp_path / "osloscope.conf")
    main = text[:include.start()] + f"$IncludeConfig {tmp_path}/osloscope.conf" + text[include.end():]
    main = re.sub(r"^\$WorkDirectory\s+\S+", f"$WorkDirectory {tmp_path}", main, flags=re.M)
    (tmp_path / "rsyslog.conf").write_text(main)
    r = subprocess.run([rsyslogd, "-N1", "-f", str(tmp_path / "rsyslog.conf")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def Rsyslog(binary: str, conf: Path, workdir: Path) -> Process:   # noqa: N802
    """``rsyslogd -n -f CONF -i PIDFILE``: this test's own rsyslogd in the foreground."""
    pidfile = workdir.parent / "rsyslogd.pid"
    return Process([binary, "-n", "-f", str(conf), "-i", str(pidfile)], workdir.parent / "rsyslogd.out",
                   cwd=workdir, stop_timeout=30.0).start()


def Worker(env: dict, log_path: Path) -> Process:      # noqa: N802
    """``osloscope worker`` as a subprocess with one test's settings."""
    return worker(env, log_path).start()


def osloscope(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([OSLOSCOPE, *args], env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"osloscope {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r


# ---------------------------------------------------------------- Kafka and Elasticsearch, read directly

def topic_records(bootstrap: str, topic: str) -> list:
    """Every record of ``topic`` now (reads up to the end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=500).values():
                out.extend(msgs)
        return [r for r in out if r.offset < end[TopicPartition(r.topic, r.partition)]]
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values()) if parts else 0
    finally:
        consumer.close()


def es(url: str, path: str, body: dict | None = None) -> dict | None:
    """POST to Elasticsearch: its JSON answer, or None while an index is missing
    or not yet searchable."""
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 503):
            return None
        raise


def indexed(env: dict) -> tuple[int, dict]:
    """(events indexed, {incident id: (type, count, status)}) of one test pipeline."""
    url = env["OSLOSCOPE_ES_URL"]
    events, incidents = env["OSLOSCOPE_ES_EVENTS_INDEX_PREFIX"], env["OSLOSCOPE_ES_INCIDENTS_INDEX"]
    es(url, f"/{events}*,{incidents}/_refresh?ignore_unavailable=true&allow_no_indices=true")
    counted = es(url, f"/{events}*/_count?allow_no_indices=true", {"query": {"match_all": {}}})
    found = es(url, f"/{incidents}/_search", {"size": 1000, "query": {"match_all": {}}})
    n_events = counted["count"] if counted else 0
    docs = {h["_id"]: (h["_source"]["type"], h["_source"]["count"], h["_source"]["status"])
            for h in (found["hits"]["hits"] if found else [])}
    return n_events, docs


def listed_incidents(env: dict) -> dict[str, dict]:
    out = osloscope(["incidents", "--format", "jsonl", "--limit", "1000"], env).stdout
    return {d["id"]: d for d in map(json.loads, out.splitlines())}


# ---------------------------------------------------------------- the fleet

def oslo_line(n: int, what: str, tail: bytes = b"x" * 60) -> bytes:
    return (b"2017-06-06 12:%02d:%02d.%03d 4242 INFO nova.compute.manager [-] shipper check %s seq=%d %s\n"
            % (n // 60000 % 60, n // 1000 % 60, n % 1000, what.encode(), n, tail))


def _with_markers(records: list) -> dict[int, list]:
    out = defaultdict(list)
    for r in records:
        m = re.search(rb"shipper check \w+ seq=(\d+)", r.value)
        if m:
            out[int(m.group(1))].append(r)
    return out


def comparable(doc: dict) -> dict:
    """What must not depend on the shipper: the incident's identity, type,
    count, first record, hosts and services. Left out: what a detector adds
    after the incident opened or keeps from a request's other records
    (evidence, last_seen, follow-up request ids and resources, status),
    which depends on how the hosts' records interleave on the way through
    Kafka's partitions and on the worker's wall clock -- it varies between
    two runs of `osloscope ship` as well."""
    exact = {k: doc.get(k) for k in ("id", "type", "rule", "severity", "title", "count", "first_seen",
                                     "host", "service")}
    return {**exact, "hosts": sorted(doc.get("hosts") or []), "services": sorted(doc.get("services") or [])}


def test_rsyslog_ships_what_osloscope_ship_ships(rsyslogd, services_up, names, settings_env, tmp_path):
    bootstrap = services_up["bootstrap"]
    fleet = tmp_path / "fleet"
    shutil.copytree(SAMPLES, fleet)
    hosts = sorted(p.name for p in fleet.iterdir() if p.is_dir())
    n_lines = sum(1 for f in fleet.rglob("*.log") for line in f.read_bytes().splitlines() if line)

    # two pipelines on the same files: A fed by `osloscope ship`, B by rsyslog (own topics, indices,
    # state). B's raw topic has 3 partitions, to see rsyslog's key keep each host in one of them.
    env_a = dict(settings_env)
    tag_b = uuid.uuid4().hex[:8]
    env_b = {k: v.replace(names.tag, tag_b) for k, v in env_a.items()}
    env_b["OSLOSCOPE_KAFKA_PARTITIONS"] = "3"
    env_b["OSLOSCOPE_WORKER_STATE_DIR"] = str(tmp_path / "worker-state-b")
    env_b["OSLOSCOPE_SHIPPER_CHECKPOINT_DIR"] = str(tmp_path / "ship-checkpoints-b")
    raw_b = env_b["OSLOSCOPE_TOPICS_RAW"]
    osloscope(["setup"], env_a)
    osloscope(["setup"], env_b)

    workdir = tmp_path / "rsyslog-work"
    workdir.mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(rsyslog_conf_for(fleet, hosts, workdir, bootstrap, raw_b))
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    rsyslog = Rsyslog(rsyslogd, conf, workdir)
    workers: list[Worker] = []
    try:
        osloscope(["ship", str(fleet), "--layout-hosts", "--from-start", "--once"], env_a)
        assert topic_size(bootstrap, env_a["OSLOSCOPE_TOPICS_RAW"]) == n_lines    # --once waited for the acks
        wait_for(lambda: topic_size(bootstrap, raw_b) >= n_lines, 60, f"{n_lines} records from rsyslog",
                 rsyslog)

        # rsyslog's records: one per line, envelope with the sample host and the file, keyed by host,
        # one host in one partition, each file in order
        records = topic_records(bootstrap, raw_b)
        assert len(records) == n_lines
        by_file = defaultdict(list)
        partition_of = defaultdict(set)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            doc = json.loads(r.value)
            assert set(doc) == {"message", "host", "file", "shipper"}, doc
            path = Path(doc["file"])
            assert doc["host"] == path.relative_to(fleet).parts[0] and r.key == doc["host"].encode()
            partition_of[doc["host"]].add(r.partition)
            by_file[path].append(doc["message"].encode())
        assert all(len(p) == 1 for p in partition_of.values()), partition_of
        assert {p: lines for p, lines in by_file.items()} == {
            f: [line for line in f.read_bytes().splitlines() if line] for f in fleet.rglob("*.log")}

        workers = [Worker(env_a, tmp_path / "worker-a.log"), Worker(env_b, tmp_path / "worker-b.log")]

        # both workers done: events and incidents indexed, unchanged over longer than an idle flush
        def settled():
            first = indexed(env_a), indexed(env_b)
            if not all(n and incidents for n, incidents in first):
                return None
            until = time.monotonic() + IDLE_FLUSH + 2
            while time.monotonic() < until:
                time.sleep(1)
                if (indexed(env_a), indexed(env_b)) != first:
                    return None
            return first

        (n_events, _), (n_events_b, _) = wait_for(settled, 120, "both pipelines to index and settle",
                                                   *workers, rsyslog)
        assert n_events_b == n_events, "rsyslog's lines made other records than osloscope ship's"
        got_a, got_b = listed_incidents(env_a), listed_incidents(env_b)
        assert set(got_a) == set(got_b) and got_a
        for iid, doc in got_a.items():
            assert comparable(got_b[iid]) == comparable(doc), iid
            for item in got_b[iid]["evidence"]:      # the envelope's host and file reach the incident
                assert item["host"] == Path(item["file"]).relative_to(fleet).parts[0], item
        assert {d["type"] for d in got_a.values()} >= {"retry_exhausted", "auth_failure", "disk_full"}

        # rsyslog keeps following: lines appended, then the file renamed (logrotate's default),
        # lines written to the renamed file by the service that still has it open, then a new file
        live = fleet / SAMPLE_HOST / "nova" / "nova-compute.log"
        n = 0
        with open(live, "ab", buffering=0) as fh:
            tails = {2: b"y" * 100_000,          # longer than rsyslog's default 8 KiB message size
                     3: b"blob \xff\xfe end"}    # bytes that are not UTF-8
            for i in range(5):
                fh.write(oslo_line(n, "appended", tails.get(i, b"x" * 60)))
                n += 1
            wait_for(lambda: len(_with_markers(topic_records(bootstrap, raw_b))) >= n, 30,
                     "the appended lines", rsyslog)
            os.rename(live, f"{live}.1")
            time.sleep(1)                       # the service writes on before it reopens its log
            for _ in range(3):
                fh.write(oslo_line(n, "renamed"))
                n += 1
        with open(live, "ab", buffering=0) as fh:
            for _ in range(5):
                fh.write(oslo_line(n, "newfile"))
                n += 1
        marked = wait_for(lambda: (lambda m: m if len(m) >= n else None)(_with_markers(
            topic_records(bootstrap, raw_b))), 30, f"all {n} lines written around the rotation", rsyslog)
        assert sorted(marked) == list(range(n))
        assert all(len(rs) == 1 for rs in marked.values()), "a line arrived twice"
        on_disk = (Path(f"{live}.1").read_bytes() + live.read_bytes()).splitlines()
        written = {int(m.group(1)): line for line in on_disk
                   for m in [re.search(rb"shipper check \w+ seq=(\d+)", line)] if m}
        for seq, rs in marked.items():
            doc = json.loads(rs[0].value)
            # one stream across the rotation: the renamed file's lines keep the name it was followed under
            assert (doc["host"], doc["file"]) == (SAMPLE_HOST, str(live)), doc
            # whole, not cut or split; a byte that is not UTF-8 becomes "?" (mmutf8fix)
            assert doc["message"] == written[seq].decode("utf-8", "replace").replace("\ufffd", "?")
        # a backfill of old lines is held until its files go quiet (worker.source_idle_timeout)
        wait_for(lambda: indexed(env_b)[0] >= n_events + n, 120, f"{n} more events indexed", *workers, rsyslog)
        assert indexed(env_b)[0] == n_events + n
    finally:
        codes = [w.stop() for w in workers]
        rs_code = rsyslog.stop()
    assert codes == [0] * len(workers), [w.tail() for w in workers]
    assert rs_code == 0, rsyslog.tail()
