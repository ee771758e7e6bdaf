"""The pipeline through an authenticated and an encrypted Kafka listener, and the failures
that retrying cannot cure named at once.

The module starts a Kafka of its own with ``osloscope services up --secure-listeners``
(``OSLOSCOPE_IT_SECURE_KAFKA_PORT``, default 19292: below Linux's ephemeral port range, so no
client socket of an earlier test can hold it; PLAINTEXT there, the KRaft controller on +1, SASL_PLAINTEXT with SCRAM-SHA-512 on +2, SSL on +3; its own OSLOSCOPE_HOME under the
test's temporary directory) and stops it at the end. No Elasticsearch: the worker runs with
``elasticsearch.url = ""`` and the test reads what it wrote to the events and incidents topics.

For each listener, with the ready-made settings file ``services up`` writes:

* ``osloscope setup``, ``ship`` and ``worker`` end to end: every record on the events topic,
  and the incidents on the incidents topic are those ``osloscope analyze`` finds in the files;
* a wrong password / a CA that did not sign the broker's certificate: ``setup``, ``ship``,
  ``worker`` and ``notify`` name it ("authentication failed" / "TLS failure") and exit 2
  within seconds, where they used to retry as if the broker were down.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_support import FAST, expected, load_settings, read_topic, wait_drained  # noqa: E402
from processes import OSLOSCOPE, ROOT, wait_for, worker  # noqa: E402

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("OSLOSCOPE_IT_SECURE_KAFKA_PORT", "19292"))
SAMPLES = ROOT / "deploy" / "samples"


def _run(argv: list[str], env: dict, timeout: float = 120.0) -> tuple[int, str, float]:
    """An osloscope command: exit status, its output (stdout + stderr), seconds taken."""
    t0 = time.monotonic()
    out = subprocess.run(OSLOSCOPE + argv, env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                         timeout=timeout)
    return out.returncode, (out.stdout + out.stderr).decode(errors="replace"), time.monotonic() - t0


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory):
    home = tmp_path_factory.mktemp("secure-kafka") / "home"
    base = ["services"]
    where = ["--home", str(home), "--only", "kafka"]
    rc, out, _ = _run(base + ["up", *where, "--kafka-port", str(PORT), "--kafka-controller-port",
                              str(PORT + 1), "--secure-listeners", "--timeout", "120"], {}, timeout=400)
    try:
        assert rc == 0, out
        status = subprocess.run(OSLOSCOPE + base + ["status", *where, "--json"], cwd=ROOT,
                                capture_output=True, timeout=60)
        assert status.returncode == 0, status.stderr.decode()
        kafka = json.loads(status.stdout)["kafka"]
        assert kafka["sasl"]["port"] == PORT + 2 and kafka["ssl"]["port"] == PORT + 3, kafka
        yield kafka
    finally:
        _run(base + ["down", *where], {}, timeout=120)


def _env(secure_kafka, listener: str, names, tmp_path: Path) -> dict:
    """One test's environment: the listener's ready-made [kafka] settings, its own names,
    Elasticsearch off."""
    return {
        "OSLOSCOPE_CONFIG": secure_kafka[listener]["settings"],
        "OSLOSCOPE_ES_URL": "",
        "OSLOSCOPE_TOPICS_RAW": names.raw,
        "OSLOSCOPE_TOPICS_DEADLETTER": names.deadletter,
        "OSLOSCOPE_TOPICS_EVENTS": names.events,
        "OSLOSCOPE_TOPICS_INCIDENTS": names.incidents,
        "OSLOSCOPE_WORKER_APP_ID": names.app_id,
        "OSLOSCOPE_WORKER_STATE_DIR": str(tmp_path / "worker-state"),
        "OSLOSCOPE_WORKER_METRICS_PORT": "0",
        "OSLOSCOPE_SHIPPER_CHECKPOINT_DIR": str(tmp_path / "ship-checkpoints"),
        "OSLOSCOPE_NOTIFY_STATE_DIR": str(tmp_path / "notify-state"),
        **FAST,
    }


def _latest_incidents(settings) -> dict:
    """id -> (type, count) of the last version of each incident on the incidents topic
    (keyed by id: the versions of one incident are in one partition, in order)."""
    latest = {}
    for m in read_topic(settings, settings.topics.incidents):
        doc = json.loads(m.value)
        latest[doc["id"]] = (doc["type"], doc["count"])
    return latest


def _events(settings) -> int:
    """The events on the events topic: records with only the upstream header (watermark markers
    and the copies routed to fleet detectors carry headers of their own)."""
    from pipeline.streaming.stage import UPSTREAM_HEADER

    return sum(1 for m in read_topic(settings, settings.topics.events)
               if [k for k, _v in (m.headers or [])] == [UPSTREAM_HEADER])


@pytest.mark.parametrize("listener", ["sasl", "ssl"])
def test_pipeline_end_to_end_through_secure_listener(secure_kafka, listener, names, tmp_path):
    env = _env(secure_kafka, listener, names, tmp_path)
    settings = load_settings(env)
    port = secure_kafka[listener]["port"]
    assert settings.kafka.bootstrap == f"127.0.0.1:{port}"
    assert settings.kafka.security_protocol == {"sasl": "SASL_PLAINTEXT", "ssl": "SSL"}[listener]
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLES, logs)
    want_incidents, n_records = expected(logs)
    assert want_incidents and n_records > 100

    rc, out, _ = _run(["setup"], env)
    assert rc == 0, out
    rc, out, _ = _run(["ship", str(logs), "--layout-hosts", "--from-start", "--once"], env)
    assert rc == 0, out
    proc = worker(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: _latest_incidents(settings) == want_incidents or None, 120,
                 f"the incidents of `osloscope analyze` on the incidents topic ({listener})", proc,
                 every=2.0)
        wait_drained(settings, proc)          # nothing more can arrive
        got_incidents, n_events = _latest_incidents(settings), _events(settings)
    finally:
        assert proc.stop() == 0, proc.tail()
    assert got_incidents == want_incidents
    assert n_events == n_records
    assert "authentication failed" not in proc.tail() and "TLS failure" not in proc.tail()


def _wrong(secure_kafka, listener: str, names, tmp_path: Path) -> tuple[dict, str]:
    """The listener's settings with a wrong password or a CA that did not sign the broker's
    certificate (the public CAs of certifi), and the words every command must say."""
    env = _env(secure_kafka, listener, names, tmp_path)
    if listener == "sasl":
        return {**env, "OSLOSCOPE_KAFKA_SASL_PASSWORD": "not-the-password"}, "authentication failed"
    import certifi

    return {**env, "OSLOSCOPE_KAFKA_SSL_CAFILE": certifi.where()}, "TLS failure"


@pytest.mark.parametrize("listener", ["sasl", "ssl"])
def test_wrong_password_or_ca_is_named_and_fatal(secure_kafka, listener, names, tmp_path):
    env, words = _wrong(secure_kafka, listener, names, tmp_path)
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLES, logs)
    config = tmp_path / "notify.toml"             # notify needs a receiver besides the [kafka] table
    config.write_text(Path(env["OSLOSCOPE_CONFIG"]).read_text()
                      + '\n[[notify.receivers]]\nname = "ops"\nurl = "http://127.0.0.1:9/hook"\n')
    commands = {
        "setup": (["setup"], env),
        "ship": (["ship", str(logs), "--layout-hosts", "--from-start", "--once"], env),
        "worker": (["worker"], env),
        "notify": (["notify"], {**env, "OSLOSCOPE_CONFIG": str(config)}),
    }
    for name, (argv, cmd_env) in commands.items():
        rc, out, seconds = _run(argv, cmd_env, timeout=60)
        assert rc == 2, f"{name}: exit {rc}\n{out}"
        assert words in out, f"{name}: {out}"
        assert "unreachable" not in out and "services up" not in out, f"{name}: {out}"
        assert seconds < 15, f"{name} took {seconds:.1f} s\n{out}"


@pytest.mark.parametrize("case, kind, words", [
    ("plaintext client on the SSL listener", "protocol", "is a TLS listener"),
    ("plaintext client on the SASL listener", "protocol", "expects SASL authentication"),
    ("SASL client on the PLAINTEXT listener", "protocol", "does not expect SASL"),
    ("SSL client on the PLAINTEXT listener", "tls", "is it a TLS listener"),
    ("SASL with a mechanism the broker does not offer", "authentication", "does not offer SASL mechanism"),
    ("SASL with an unknown user", "authentication", "wrong user name or password"),
    ("nothing listening", "unreachable", "Connection refused"),
])
def test_diagnose_names_each_failure(secure_kafka, case, kind, words):
    from pipeline.settings import load
    from pipeline.streaming.kafka_clients import diagnose

    password = Path(secure_kafka["sasl"]["password_file"]).read_text().strip()
    sasl = {"OSLOSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "OSLOSCOPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "OSLOSCOPE_KAFKA_SASL_USERNAME": "osloscope", "OSLOSCOPE_KAFKA_SASL_PASSWORD": password}
    env = {
        "plaintext client on the SSL listener": {"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT + 3}"},
        "plaintext client on the SASL listener": {"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT + 2}"},
        "SASL client on the PLAINTEXT listener": {**sasl, "OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT}"},
        "SSL client on the PLAINTEXT listener": {"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT}",
                                                 "OSLOSCOPE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                                 "OSLOSCOPE_KAFKA_SSL_CAFILE": secure_kafka["ssl"]["cafile"]},
        "SASL with a mechanism the broker does not offer": {
            **sasl, "OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT + 2}",
            "OSLOSCOPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
        "SASL with an unknown user": {**sasl, "OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT + 2}",
                                      "OSLOSCOPE_KAFKA_SASL_USERNAME": "nobody"},
        "nothing listening": {"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORT + 4}"},
    }[case]
    problem = diagnose(load(None, env=env).kafka)
    assert problem is not None, case
    assert (problem.kind, problem.retriable) == (kind, kind == "unreachable"), (case, str(problem))
    assert words in str(problem), (case, str(problem))
    # and the right settings pass
    for listener in ("sasl", "ssl"):
        assert diagnose(load(secure_kafka[listener]["settings"], env={}).kafka) is None
