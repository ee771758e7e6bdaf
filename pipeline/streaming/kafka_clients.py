"""kafka-python clients for the stages that run outside faust (``osloscope notify``), built from
the ``[kafka]`` settings, and the kafka errors those stages handle: the rest of ``pipeline/``
imports them from here, never from kafka itself.

It also says *why* Kafka cannot be used, for every command (``diagnose``, ``require_access``).
kafka-python and aiokafka retry a rejected password, an untrusted certificate or a listener of
another protocol exactly like a broker that is down, and end with the same timeout; a probe of
our own (standard library only: TCP, TLS with the clients' SSL context, ApiVersions, SASL
handshake and authentication, Metadata) names the failure and whether retrying can help."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time
from typing import Callable

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

__all__ = ["CommitFailedError", "KafkaAccessError", "KafkaError", "broker_answers", "check_access",
           "consumer", "diagnose", "PartitionReader", "require_access", "topic_partitions",
           "upsert_scram_user"]


class KafkaAccessError(KafkaError):
    """Kafka cannot be used with these settings. ``kind`` is one of

    * ``"authentication"``: SASL rejected the user name or password, or the mechanism;
    * ``"tls"``: the TLS handshake failed (certificate not trusted, wrong host name, not a TLS
      listener);
    * ``"protocol"``: the listener speaks another ``security_protocol`` than the settings say;
    * ``"unreachable"``: no broker answered (down, starting, network): the only kind that
      retrying can cure (``retriable``).
    """

    def __init__(self, kind: str, message: str, bootstrap: str = "", *, certain: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.bootstrap = bootstrap
        self.retriable = kind == "unreachable"
        self.certain = certain        # False: inferred from a closed connection (diagnose re-checks)

    def __str__(self) -> str:
        label = {"authentication": "authentication failed", "tls": "TLS failure",
                 "protocol": "wrong security protocol", "unreachable": "broker unreachable"}[self.kind]
        return f"{label}: {self.message}"


def diagnose(kafka_settings, timeout: float = 5.0) -> KafkaAccessError | None:
    """None when a broker of ``kafka_settings.bootstrap`` accepts a client with these settings
    (connection, TLS, SASL, a metadata answer); else the KafkaAccessError that says why not.
    The one classification of Kafka access failures that every command uses; each broker is
    given ``timeout`` seconds."""
    unreachable: list[str] = []
    for server in kafka_settings.servers:
        host, _, port = server.rpartition(":")
        host = host.strip("[]") or "localhost"
        for attempt in (1, 2):
            try:
                _probe(kafka_settings, host, int(port), timeout)
                return None
            except KafkaAccessError as exc:
                if exc.retriable:
                    unreachable.append(exc.message)
                    break
                if exc.certain or attempt == 2:
                    exc.bootstrap = kafka_settings.bootstrap
                    return exc
                time.sleep(1.0)   # a broker shutting down also closes connections: ask again
    return KafkaAccessError("unreachable", "; ".join(unreachable) or "no bootstrap server",
                            kafka_settings.bootstrap)


def check_access(kafka_settings, timeout: float = 5.0) -> KafkaAccessError | None:
    """``diagnose``, raising the problem when retrying cannot help (authentication, TLS,
    security protocol); returns the retriable one ("unreachable") or None."""
    problem = diagnose(kafka_settings, timeout)
    if problem is not None and not problem.retriable:
        raise problem
    return problem


def require_access(kafka_settings, *, wait: float = 0.0, log: Callable[[str], None] | None = None,
                   timeout: float = 5.0) -> None:
    """Return once Kafka accepts these settings. Raise ``KafkaAccessError`` at once when
    retrying cannot help (authentication, TLS, protocol), and when no broker answered for
    ``wait`` seconds (checked every second; ``log`` hears about it every ten)."""
    deadline = time.monotonic() + wait
    said = 0.0
    while True:
        problem = diagnose(kafka_settings, timeout)
        if problem is None:
            return
        now = time.monotonic()
        if not problem.retriable or now >= deadline:
            raise problem
        if log is not None and now - said >= 10.0:
            said = now
            log(f"Kafka {kafka_settings.bootstrap}: {problem}; retrying for up to {deadline - now:.0f} s")
        time.sleep(min(1.0, max(0.0, deadline - now)))


# ------------------------------------------------------------------ the probe (wire protocol)

_API_VERSIONS, _METADATA, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 3, 17, 36
_ERRORS = {33: "UNSUPPORTED_SASL_MECHANISM", 34: "ILLEGAL_SASL_STATE", 58: "SASL_AUTHENTICATION_FAILED"}


class _Closed(Exception):
    """The broker closed the connection (or sent nothing) where it should have answered."""


class _Conn:
    def __init__(self, sock: socket.socket, client_id: str) -> None:
        self.sock, self.client_id, self.correlation = sock, client_id.encode(), 0

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        header = struct.pack(">hhih", api_key, version, self.correlation, len(self.client_id)) + self.client_id
        payload = header + body
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
            size = struct.unpack(">i", self._read(4))[0]
            data = self._read(size)
        except (OSError, struct.error) as exc:
            raise _Closed(str(exc) or type(exc).__name__) from None
        return data[4:]                         # without the correlation id

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise _Closed("connection closed by the broker")
            out += chunk
        return out


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _probe(k, host: str, port: int, timeout: float) -> None:
    where = f"{host}:{port}"
    protocol = k.security_protocol
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise KafkaAccessError("unreachable", f"cannot connect to {where}: {exc}") from None
    try:
        if protocol in ("SSL", "SASL_SSL"):
            sock = _tls(k, sock, host, where)
        conn = _Conn(sock, k.client_id)
        try:
            conn.request(_API_VERSIONS, 0, b"")
        except _Closed as exc:
            if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and _speaks_tls(host, port, timeout):
                raise KafkaAccessError("protocol", f"{where} is a TLS listener but security_protocol is "
                                       f"{protocol} (use SSL or SASL_SSL, with ssl_cafile)") from None
            raise KafkaAccessError("unreachable", f"{where} closed the connection at the first "
                                   f"request ({exc})") from None
        if protocol.startswith("SASL_"):
            _authenticate(k, conn, where)
        try:
            conn.request(_METADATA, 4, struct.pack(">ib", 0, 0))
        except _Closed:
            if not protocol.startswith("SASL_"):
                raise KafkaAccessError("protocol", f"{where} closed the connection at the first "
                                       f"metadata request: the listener expects SASL authentication "
                                       f"but security_protocol is {protocol}", certain=False) from None
            raise KafkaAccessError("unreachable", f"{where} closed the connection after "
                                   f"authentication") from None
    finally:
        sock.close()


def _tls(k, sock: socket.socket, host: str, where: str) -> ssl.SSLSocket:
    ca = k.ssl_cafile or "the system's CAs"
    try:
        context = k.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise KafkaAccessError("tls", f"cannot load the TLS files (ssl_cafile {k.ssl_cafile or '-'}, "
                               f"ssl_certfile {k.ssl_certfile or '-'}): {exc}") from None
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise KafkaAccessError("tls", f"the certificate of {where} is not trusted: {exc.verify_message} "
                               f"(verified against {ca}; set kafka.ssl_cafile to the CA that signed "
                               f"it)") from None
    except (ssl.SSLError, ConnectionError) as exc:
        raise KafkaAccessError("tls", f"TLS handshake with {where} failed ({exc}): is it a TLS listener? "
                               f"(security_protocol {k.security_protocol})", certain=False) from None
    except TimeoutError:
        raise KafkaAccessError("tls", f"no TLS handshake answer from {where}: is it a TLS listener? "
                               f"(security_protocol {k.security_protocol})", certain=False) from None


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """The listener completes a TLS handshake (certificate not checked: this only names it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def _authenticate(k, conn: _Conn, where: str) -> None:
    mechanism = k.sasl_mechanism or "PLAIN"
    try:
        body = conn.request(_SASL_HANDSHAKE, 1, _string(mechanism))
    except _Closed as exc:
        raise KafkaAccessError("unreachable", f"{where} closed the connection at the SASL "
                               f"handshake ({exc})") from None
    error = struct.unpack(">h", body[:2])[0]
    if error == 34:
        raise KafkaAccessError("protocol", f"{where} does not expect SASL authentication but "
                               f"security_protocol is {k.security_protocol}") from None
    if error == 33:
        offered = _strings(body[2:])
        raise KafkaAccessError("authentication", f"{where} does not offer SASL mechanism {mechanism} "
                               f"(it offers {', '.join(offered) or 'none'})") from None
    if error:
        raise KafkaAccessError("authentication", f"SASL handshake with {where} failed "
                               f"({_ERRORS.get(error, f'error {error}')})") from None
    user, password = k.sasl_username, k.sasl_password

    def exchange(token: bytes) -> bytes:
        try:
            body = conn.request(_SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
        except _Closed:
            raise KafkaAccessError("authentication", f"{where} closed the connection during SASL "
                                   f"{mechanism} authentication as {user!r}", certain=False) from None
        error, n = struct.unpack(">hh", body[:4])
        message = body[4:4 + n].decode(errors="replace") if n > 0 else ""
        rest = body[4 + max(n, 0):]
        if error:
            raise KafkaAccessError("authentication", f"{where} rejected SASL {mechanism} authentication "
                                   f"as user {user!r}: wrong user name or password"
                                   + (f" ({message})" if message else "")) from None
        size = struct.unpack(">i", rest[:4])[0]
        return rest[4:4 + size] if size > 0 else b""

    if mechanism == "PLAIN":
        exchange(b"\0" + user.encode() + b"\0" + password.encode())
        return
    _scram(mechanism, user, password, exchange, where)


def _strings(data: bytes) -> list[str]:
    try:
        n = struct.unpack(">i", data[:4])[0]
        out, pos = [], 4
        for _ in range(max(n, 0)):
            size = struct.unpack(">h", data[pos:pos + 2])[0]
            out.append(data[pos + 2:pos + 2 + size].decode(errors="replace"))
            pos += 2 + size
        return out
    except struct.error:
        return []


def _scram(mechanism: str, user: str, password: str, exchange: Callable[[bytes], bytes], where: str) -> None:
    """RFC 5802 client side, as Kafka's ScramSaslServer expects it."""
    digest = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}[mechanism]
    nonce = base64.b64encode(os.urandom(24)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = exchange(("n,," + first_bare).encode()).decode()
    fields = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
    if not fields.get("r", "").startswith(nonce) or "s" not in fields or "i" not in fields:
        raise KafkaAccessError("authentication", f"{where} sent an unexpected SCRAM challenge")
    salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = digest(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, digest).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    exchange(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())


def consumer(kafka_settings, topic: str, group_id: str, **kw) -> KafkaConsumer:
    """A consumer of ``topic`` in ``group_id``; ``kw`` are further KafkaConsumer options
    (enable_auto_commit, auto_offset_reset, timeouts, ...)."""
    return KafkaConsumer(topic, group_id=group_id, **kafka_settings.client_kwargs(), **kw)


def broker_answers(bootstrap: str, timeout: float = 5.0, **security) -> bool:
    """A metadata request to ``bootstrap`` succeeds within ``timeout`` seconds; ``security`` are
    kafka-python options (security_protocol, sasl_*, ssl_cafile, ...)."""
    wanted = {"bootstrap_servers": bootstrap, "client_id": "osloscope-services",
              "request_timeout_ms": int(timeout * 1000), "bootstrap_timeout_ms": int(timeout * 1000),
              **security}
    config = {key: value for key, value in wanted.items() if key in KafkaAdminClient.DEFAULT_CONFIG}
    try:
        admin = KafkaAdminClient(**config)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - any client failure means "not healthy yet"
        return False
    return True


def upsert_scram_user(bootstrap: str, user: str, mechanism: str, password: str) -> str | None:
    """Create or reset a SCRAM user's credentials (AlterUserScramCredentials, KIP-554) through
    the listener ``bootstrap``; None on success, else the broker's error message."""
    from kafka.admin import UserScramCredentialUpsertion

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="osloscope-services",
                             request_timeout_ms=10_000)
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, mechanism, password)])
    finally:
        admin.close()
    return errors.get(user)


def topic_partitions(settings, topic: str, timeout: float = 30.0) -> set[int]:
    """The partition numbers of ``topic``; KafkaError if it does not exist within ``timeout``."""
    import time

    c = KafkaConsumer(**settings.kafka.client_kwargs())
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = c.partitions_for_topic(topic)
            if found:
                return set(found)
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {topic} not found (run `osloscope setup`)")
            time.sleep(0.5)
    finally:
        c.close()


class PartitionReader:
    """Reads ranges of one partition of ``topic`` (no consumer group): ``bounds()`` is
    (first offset, end offset), ``read(start, stop)`` the records (offset, key, value)
    with start <= offset < stop. KafkaError if Kafka does not answer within ``timeout``
    seconds (for the reader's whole life)."""

    def __init__(self, settings, topic: str, number: int, timeout: float = 60.0) -> None:
        from kafka import TopicPartition

        self.name = f"{topic}[{number}]"
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.tp = TopicPartition(topic, number)
        self.c = KafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False, group_id=None,
                               fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
        self.c.assign([self.tp])

    def bounds(self) -> tuple[int, int]:
        return self.c.beginning_offsets([self.tp])[self.tp], self.c.end_offsets([self.tp])[self.tp]

    def read(self, start: int, stop: int) -> list[tuple[int, bytes | None, bytes | None]]:
        out: list[tuple[int, bytes | None, bytes | None]] = []
        if start >= stop:
            return out
        self.c.seek(self.tp, start)
        while self.c.position(self.tp) < stop:
            if time.monotonic() > self.deadline:
                raise KafkaError(f"reading {self.name} took longer than {self.timeout:.0f} s")
            for records in self.c.poll(timeout_ms=1000).values():
                out.extend((r.offset, r.key, r.value) for r in records if start <= r.offset < stop)
        return out

    def close(self) -> None:
        self.c.close()
