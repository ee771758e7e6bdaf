"""The secure Kafka listeners of ``osloscope services up`` and the Kafka access diagnosis,
without a broker: the rendered broker configuration, the options, the SCRAM exchange against
RFC 7677's test vector, and the probe against loopback servers that misbehave in known ways.
(tests/integration/test_kafka_security.py runs them against a real Kafka.)"""
from __future__ import annotations

import argparse
import base64
import socket
import struct
import threading

import pytest

from pipeline.operations import services
from pipeline.settings import load
from pipeline.streaming import kafka_clients


def _render(tmp_path, secure):
    paths = services._Paths(tmp_path, "kafka")
    if secure.ssl_port:
        services._write_secret(services._tls_paths(paths)["store_password"], "s3cret")
    services._kafka_render_config(paths, 19092, 19093, secure)
    return dict(line.split("=", 1) for line in (paths.config_dir / "server.properties").read_text().splitlines()
                if line and not line.startswith("#"))


def test_plain_broker_config_is_unchanged_without_secure_listeners(tmp_path):
    props = _render(tmp_path, services.SecureListeners())
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not any("sasl" in k or "ssl" in k for k in props)


def test_broker_config_with_sasl_and_ssl_listeners(tmp_path):
    props = _render(tmp_path, services.SecureListeners(19094, 19095))
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
                                  "SASL_PLAINTEXT://127.0.0.1:19094,SSL://127.0.0.1:19095")
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:19092,SASL_PLAINTEXT://127.0.0.1:19094,"
                                             "SSL://127.0.0.1:19095")
    assert props["listener.security.protocol.map"].endswith(",SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "ScramLoginModule required" in props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert props["listener.name.ssl.ssl.keystore.location"].endswith("security/broker.p12")
    assert props["listener.name.ssl.ssl.keystore.password"] == "s3cret"


def test_running_broker_without_a_requested_listener_is_named():
    running = services.SecureListeners(9094, None)
    assert services.SecureListeners(9094, None).missing_from(running) == ""
    assert services.SecureListeners(None, None).missing_from(running) == ""
    assert services.SecureListeners(9094, 9095).missing_from(running) == "SSL listener on port 9095"
    assert services.SecureListeners(9096, None).missing_from(running) == "SASL listener on port 9096"


def test_secure_listeners_option_picks_ports_next_to_kafka():
    from pipeline.cli.services import _secure_ports

    def args(**kw):
        base = {"kafka_port": 9092, "secure_listeners": False, "sasl_port": None, "ssl_port": None}
        return argparse.Namespace(**{**base, **kw})

    assert _secure_ports(args()) == (None, None)
    assert _secure_ports(args(secure_listeners=True)) == (9094, 9095)
    assert _secure_ports(args(secure_listeners=True, kafka_port=39092, ssl_port=40000)) == (39094, 40000)
    assert _secure_ports(args(sasl_port=1234)) == (1234, None)


def test_scram_client_matches_rfc7677_test_vector(monkeypatch):
    """RFC 7677, section 3: user "user", password "pencil", SCRAM-SHA-256."""
    nonce = "rOprNGfwEbeRWgbNEkqO"
    monkeypatch.setattr(kafka_clients.os, "urandom", lambda n: base64.b64decode(nonce))
    sent = []
    server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"

    def exchange(token: bytes) -> bytes:
        sent.append(token.decode())
        return server_first.encode() if len(sent) == 1 else b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

    kafka_clients._scram("SCRAM-SHA-256", "user", "pencil", exchange, "test")
    assert sent == ["n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="]


class _Server:
    """A loopback TCP server that answers each connection with ``handler(conn)``."""

    def __init__(self, handler) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self.handler(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _read_request(conn) -> tuple[int, int]:
    size = struct.unpack(">i", conn.recv(4))[0]
    data = b""
    while len(data) < size:
        data += conn.recv(size - len(data))
    api_key, _version, correlation = struct.unpack(">hhi", data[:8])
    return api_key, correlation


def _answer(conn, correlation: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation) + body
    conn.sendall(struct.pack(">i", len(payload)) + payload)


def _kafka(port: int, **extra):
    return load(None, env={"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                           **{f"OSLOSCOPE_KAFKA_{k.upper()}": v for k, v in extra.items()}}).kafka


@pytest.fixture
def server():
    made = []

    def make(handler):
        made.append(_Server(handler))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_a_listener_that_asks_for_sasl_is_named_not_retried(server):
    def sasl_listener(conn):            # answers ApiVersions, drops the unauthenticated metadata request
        api_key, correlation = _read_request(conn)
        assert api_key == 18
        _answer(conn, correlation, struct.pack(">hi", 0, 0))
        _read_request(conn)

    s = server(sasl_listener)
    problem = kafka_clients.diagnose(_kafka(s.port), timeout=2.0)
    assert problem.kind == "protocol" and not problem.retriable
    assert "expects SASL authentication" in str(problem)
    with pytest.raises(kafka_clients.KafkaAccessError):
        kafka_clients.check_access(_kafka(s.port), timeout=2.0)


def test_rejected_sasl_password_is_an_authentication_failure(server):
    def rejecting(conn):
        _, c = _read_request(conn)                                   # ApiVersions
        _answer(conn, c, struct.pack(">hi", 0, 0))
        _, c = _read_request(conn)                                   # SaslHandshake: PLAIN offered
        _answer(conn, c, struct.pack(">hih", 0, 1, 5) + b"PLAIN")
        _, c = _read_request(conn)                                   # SaslAuthenticate: refused
        message = b"Invalid username or password"
        _answer(conn, c, struct.pack(">hh", 58, len(message)) + message + struct.pack(">i", -1))

    s = server(rejecting)
    problem = kafka_clients.diagnose(_kafka(s.port, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                            sasl_username="u", sasl_password="p"), timeout=2.0)
    assert problem.kind == "authentication" and not problem.retriable
    assert "wrong user name or password (Invalid username or password)" in str(problem)
    assert str(problem).startswith("authentication failed: ")


def test_a_broker_that_is_not_there_is_unreachable_and_retriable(server):
    s = server(lambda conn: None)
    port = s.port
    s.close()
    problem = kafka_clients.diagnose(_kafka(port), timeout=2.0)
    assert problem.kind == "unreachable" and problem.retriable
    returned = kafka_clients.check_access(_kafka(port), timeout=2.0)      # returned, not raised
    assert isinstance(returned, kafka_clients.KafkaAccessError) and returned.retriable
    with pytest.raises(kafka_clients.KafkaAccessError) as info:
        kafka_clients.require_access(_kafka(port), wait=1.5, timeout=1.0)
    assert info.value.retriable and "broker unreachable" in str(info.value)


def test_one_answering_broker_is_enough(server):
    def answering(conn):
        for _ in range(2):                                           # ApiVersions, Metadata
            _, c = _read_request(conn)
            _answer(conn, c, struct.pack(">hi", 0, 0))

    s = server(answering)
    dead = server(lambda conn: None)
    dead_port = dead.port
    dead.close()
    k = load(None, env={"OSLOSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_port},127.0.0.1:{s.port}"}).kafka
    assert kafka_clients.diagnose(k, timeout=2.0) is None
