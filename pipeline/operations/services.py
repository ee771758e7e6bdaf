"""Local Kafka (KRaft) and Elasticsearch for development and CI, without Docker.

Both services run as plain Java processes bound to 127.0.0.1:

* Kafka: the broker jars (``org.apache.kafka:kafka_<scala>``) are resolved from
  Maven Central with ``mvn`` and ``deploy/local/kafka-pom.xml``; the storage
  directory is formatted once with a generated cluster id, then ``kafka.Kafka``
  runs broker and controller in one JVM (KRaft, no ZooKeeper).
* Elasticsearch: the ``integ-test-zip`` distribution is fetched from Maven
  Central with ``mvn dependency:copy`` and unpacked; security is disabled.
  Elasticsearch refuses to run as root, so when the caller is root it runs as
  the unprivileged system user ``osloscope`` (created on demand).

* Optionally (``sasl_port``, ``ssl_port``; ``osloscope services up --secure-listeners``)
  Kafka gets two more listeners: SASL_PLAINTEXT with SCRAM-SHA-512 (user ``osloscope``, a
  generated password, created through the PLAINTEXT listener once the broker is up) and SSL
  (a certificate for 127.0.0.1/localhost signed by a throwaway CA, both made with the JDK's
  ``keytool``). The password, ``ca.pem`` and ready-made ``[kafka]`` settings files
  (``client-sasl.toml``, ``client-ssl.toml``) are written to ``<home>/kafka/security/``; the
  broker counts as up only when a client got through each listener.

Downloads are cached in Maven's local repository (``~/.m2``). Everything else
(unpacked distribution, rendered config, data, logs, pid files) lives under
``<project>/.osloscope/`` (or ``$OSLOSCOPE_HOME``) and is throwaway.

Only the standard library is used, plus kafka-python for the Kafka health check and the
SCRAM user.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Template

from pipeline import resources

KAFKA_VERSION = "4.3.1"
SCALA_VERSION = "2.13"
ES_VERSION = "8.19.21"

SERVICES = ("kafka", "elasticsearch")
HOST = "127.0.0.1"
KAFKA_HEAP = "512m"
ES_HEAP = "1g"
ES_USER = "osloscope"
ES_CLUSTER_NAME = "osloscope-local"  # must match deploy/local/elasticsearch.yml
ES_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0"
KAFKA_MAIN_CLASS = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"
# Debian's JDK 17 runs both Kafka 4.x and Elasticsearch 8.x; override with OSLOSCOPE_JAVA_HOME.
PREFERRED_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")

_PACKAGE_DIR = Path(__file__).resolve().parent.parent        # the pipeline package


def template_path(name: str) -> Path:
    """A service template of deploy/local/ ($OSLOSCOPE_DEPLOY_DIR overrides the directory)."""
    override = os.environ.get("OSLOSCOPE_DEPLOY_DIR")
    return Path(override) / name if override else resources.path("services", name)

Log = Callable[[str], None]


def print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ServiceError(RuntimeError):
    """A local service could not be resolved, started, checked or stopped."""

    def __init__(self, message: str, *, service: str | None = None, log_path: Path | None = None):
        self.message = message
        self.service = service
        self.log_path = log_path
        text = f"{service}: {message}" if service else message
        if log_path is not None:
            text += f" (see {log_path})"
        super().__init__(text)


# --------------------------------------------------------------------------- paths


def project_root() -> Path:
    """The nearest directory holding pyproject.toml, above this package or the cwd."""
    for start in (_PACKAGE_DIR, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "pyproject.toml").is_file():
                return candidate
    return _PACKAGE_DIR.parent


def resolve_home(home: Path | str | None = None) -> Path:
    """Argument, then $OSLOSCOPE_HOME, then <project>/.osloscope."""
    chosen = home or os.environ.get("OSLOSCOPE_HOME") or project_root() / ".osloscope"
    return Path(chosen).expanduser().resolve()


class _Paths:
    """Per-service layout below <home>/<service>/."""

    def __init__(self, home: Path, service: str):
        self.service = service
        self.root = home / service
        self.pid_file = self.root / f"{service}.pid"
        self.state_file = self.root / "state.json"
        self.data_version_file = self.root / "data-version"
        self.config_dir = self.root / "config"
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "logs"
        self.console_log = self.log_dir / "console.log"
        self.tmp_dir = self.root / "tmp"
        self.es_dist = self.root / f"elasticsearch-{ES_VERSION}"

    @property
    def main_log(self) -> Path:
        if self.service == "kafka":
            return self.log_dir / "server.log"
        return self.log_dir / f"{ES_CLUSTER_NAME}.log"

    @property
    def marker(self) -> str:
        """A string that the service's command line contains (guards against pid reuse)."""
        if self.service == "kafka":
            return str(self.config_dir / "server.properties")
        return f"-Des.path.home={self.es_dist}"


def _prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    ignore = home / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Throwaway local services (pipeline/services.py).\n*\n")


# ----------------------------------------------------------------------- processes


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap our own exited children (no zombies)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _running_pid(paths: _Paths) -> int | None:
    pid = _read_pid(paths.pid_file)
    if pid and _alive(pid) and paths.marker in _cmdline(pid):
        return pid
    return None


def _stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to timeout, then SIGKILL. True when it stopped on SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 10.0)
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def _kill_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM then SIGKILL the process group led by proc (started with start_new_session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
            return


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line if len(line) <= 300 else line[:300] + " ..." for line in text[-lines:])


def _write_state(paths: _Paths, **state: object) -> None:
    paths.state_file.write_text(json.dumps(state, indent=2) + "\n")


def _read_state(paths: _Paths) -> dict:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return {}


def _check_ports_free(service: str, ports: tuple[int, ...]) -> None:
    for port in ports:
        if _port_open(port):
            raise ServiceError(
                f"port {HOST}:{port} is already in use by another process; "
                "stop it or choose another port",
                service=service,
            )


# -------------------------------------------------------------------- java, maven


def _java_home() -> Path:
    candidates = (os.environ.get("OSLOSCOPE_JAVA_HOME"), PREFERRED_JAVA_HOME, os.environ.get("JAVA_HOME"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "java").is_file():
            return Path(candidate)
    java = shutil.which("java")
    if java:
        return Path(java).resolve().parent.parent
    raise ServiceError("no Java found: install a JDK 17+ or set OSLOSCOPE_JAVA_HOME")


def _mvn(args: list[str], *, service: str, log_path: Path, cwd: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError("Maven ('mvn') is not on PATH; it fetches the jars", service=service)
    env = dict(os.environ, JAVA_HOME=str(_java_home()))
    cmd = [mvn, "-B", "-q", "-Dstyle.color=never", *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(" ".join(cmd) + "\n\n" + result.stdout)
    if result.returncode != 0:
        errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
        raise ServiceError(f"Maven failed: {errors[0] if errors else 'exit ' + str(result.returncode)}",
                           service=service, log_path=log_path)


def _render(template: str, dest: Path, **values: object) -> None:
    source = template_path(template)
    try:
        text = Template(source.read_text()).substitute(values)
    except OSError as exc:
        raise ServiceError(f"template {source} is missing ({exc})") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


def _reset_data_if_other_version(paths: _Paths, version: str, log: Log) -> bool:
    """Wipe data written by another version (it is throwaway). True if data is usable."""
    try:
        recorded = paths.data_version_file.read_text().strip()
    except OSError:
        recorded = None
    if recorded == version and paths.data_dir.is_dir():
        return True
    if paths.data_dir.exists():
        log(f"wiping {paths.data_dir} (written by {recorded or 'an unknown version'}, now {version})")
        shutil.rmtree(paths.data_dir)
    paths.data_dir.mkdir(parents=True)
    return False


# --------------------------------------------------------------------------- kafka


def _kafka_classpath(paths: _Paths, log: Log) -> str:
    cache = paths.root / f"classpath-{SCALA_VERSION}-{KAFKA_VERSION}.txt"
    if cache.is_file():
        classpath = cache.read_text().strip()
        if classpath and all(Path(jar).is_file() for jar in classpath.split(os.pathsep)):
            return classpath
    log(f"resolving Kafka {KAFKA_VERSION} jars with Maven (cached in ~/.m2; first run downloads ~80 MB)...")
    _mvn([f"{MAVEN_DEPENDENCY_PLUGIN}:build-classpath", "-f", str(template_path("kafka-pom.xml")),
          f"-Dkafka.version={KAFKA_VERSION}", f"-Dscala.binary={SCALA_VERSION}",
          f"-Dmdep.outputFile={cache}"],
         service="kafka", log_path=paths.log_dir / "maven.log", cwd=paths.root)
    return cache.read_text().strip()


def _new_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid().toString(): URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_java_cmd(java: Path, classpath: str, paths: _Paths, *, heap: str | None) -> list[str]:
    cmd = [str(java)]
    if heap:
        cmd += [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC"]
    return cmd + [
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.config_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.log_dir}",
        "-cp", classpath,
    ]


def _kafka_render_config(paths: _Paths, kafka_port: int, controller_port: int,
                         secure: "SecureListeners | None" = None) -> None:
    secure = secure or SecureListeners()
    listeners, protocols, security = [], [], []
    if secure.sasl_port:
        listeners.append(f"{SASL_LISTENER}://{HOST}:{secure.sasl_port}")
        protocols.append(f"{SASL_LISTENER}:SASL_PLAINTEXT")
        security += [f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                     f"listener.name.{SASL_LISTENER.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
                     "org.apache.kafka.common.security.scram.ScramLoginModule required;"]
    if secure.ssl_port:
        tls = _tls_paths(paths)
        password = tls["store_password"].read_text().strip()
        listeners.append(f"{SSL_LISTENER}://{HOST}:{secure.ssl_port}")
        protocols.append(f"{SSL_LISTENER}:SSL")
        prefix = f"listener.name.{SSL_LISTENER.lower()}"
        security += [f"{prefix}.ssl.keystore.type=PKCS12", f"{prefix}.ssl.keystore.location={tls['keystore']}",
                     f"{prefix}.ssl.keystore.password={password}", f"{prefix}.ssl.key.password={password}",
                     f"{prefix}.ssl.client.auth=none"]
    extra = "".join("," + listener for listener in listeners)
    _render("server.properties", paths.config_dir / "server.properties", kafka_port=kafka_port,
            controller_port=controller_port, data_dir=paths.data_dir, extra_listeners=extra,
            extra_advertised=extra, extra_protocols="".join("," + p for p in protocols),
            security="\n".join(security))
    _render("kafka-log4j2.properties", paths.config_dir / "log4j2.properties", log_dir=paths.log_dir)


def _kafka_format(paths: _Paths, java: Path, classpath: str, log: Log) -> None:
    if _reset_data_if_other_version(paths, KAFKA_VERSION, log) and (paths.data_dir / "meta.properties").exists():
        return
    cluster_id = _new_cluster_id()
    log(f"formatting Kafka storage (cluster id {cluster_id})...")
    format_log = paths.log_dir / "storage-format.log"
    cmd = _kafka_java_cmd(java, classpath, paths, heap=None) + [
        KAFKA_STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(paths.config_dir / "server.properties")]
    with format_log.open("w") as out:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise ServiceError(f"kafka-storage format failed (exit {result.returncode})",
                           service="kafka", log_path=format_log)
    paths.data_version_file.write_text(KAFKA_VERSION + "\n")


@contextlib.contextmanager
def _quiet_kafka_logging() -> Iterator[None]:
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _kafka_healthy(port: int, timeout: float = 5.0) -> bool:
    """The port accepts and a metadata request succeeds (pipeline.streaming.kafka_clients)."""
    if not _port_open(port):
        return False
    try:
        from pipeline.streaming.kafka_clients import broker_answers
    except ImportError:                 # kafka-python is not installed: the open port must do
        return True
    with _quiet_kafka_logging():
        return broker_answers(f"{HOST}:{port}", timeout)


def _wait_healthy(service: str, pid: int, check: Callable[[], bool], deadline: float, log_path: Path,
                  what: str | None = None) -> None:
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise ServiceError(f"process {pid} exited during start-up:\n{_tail(log_path)}",
                               service=service, log_path=log_path)
        if check():
            return
        time.sleep(0.5)
    subject = f"{what} did not answer" if what else "not healthy"
    raise ServiceError(f"{subject} before the timeout:\n" + _tail(log_path), service=service, log_path=log_path)


def _start_kafka(home: Path, kafka_port: int, controller_port: int, timeout: float, log: Log,
                 secure: "SecureListeners | None" = None) -> dict:
    secure = secure or SecureListeners()
    paths = _Paths(home, "kafka")
    pid = _running_pid(paths)
    if pid:
        state = _read_state(paths)
        port = state.get("port")
        running = SecureListeners.from_state(state)
        missing = secure.missing_from(running)
        if missing:
            raise ServiceError(f"already running (pid {pid}) without the requested {missing}; stop it "
                               "first (`osloscope services down --only kafka`)", service="kafka")
        log(f"Kafka already running (pid {pid}, {HOST}:{port}{running.describe()})")
        _wait_healthy("kafka", pid, lambda: _kafka_healthy(port), time.monotonic() + timeout, paths.main_log)
        _secure_listeners_ready(paths, port, running, time.monotonic() + timeout, log)
        return {"started": False, "pid": pid, "port": port, "version": KAFKA_VERSION,
                **running.report(paths)}
    paths.pid_file.unlink(missing_ok=True)
    _check_ports_free("kafka", (kafka_port, controller_port, *secure.ports()))
    for directory in (paths.root, paths.log_dir, paths.config_dir):
        directory.mkdir(parents=True, exist_ok=True)
    java = _java_home() / "bin" / "java"
    classpath = _kafka_classpath(paths, log)
    if secure.ssl_port:
        _ensure_tls_material(paths, log)
    if secure.sasl_port:
        _ensure_scram_password(paths)
    _kafka_render_config(paths, kafka_port, controller_port, secure)
    _kafka_format(paths, java, classpath, log)
    return _launch_kafka(paths, java, classpath, kafka_port, controller_port, timeout, log, secure)


def _launch_kafka(paths: _Paths, java: Path, classpath: str, kafka_port: int, controller_port: int,
                  timeout: float, log: Log, secure: "SecureListeners | None" = None) -> dict:
    secure = secure or SecureListeners()
    started = time.monotonic()
    log(f"starting Kafka {KAFKA_VERSION} (KRaft) on {HOST}:{kafka_port}{secure.describe()}...")
    cmd = _kafka_java_cmd(java, classpath, paths, heap=KAFKA_HEAP) + [
        KAFKA_MAIN_CLASS, str(paths.config_dir / "server.properties")]
    with paths.console_log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=paths.root, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    paths.pid_file.write_text(f"{proc.pid}\n")
    _write_state(paths, version=KAFKA_VERSION, pid=proc.pid, port=kafka_port,
                 controller_port=controller_port, log=str(paths.main_log), **secure.state())
    try:
        _wait_healthy("kafka", proc.pid, lambda: _kafka_healthy(kafka_port),
                      started + timeout, paths.main_log)
        _secure_listeners_ready(paths, kafka_port, secure, started + timeout, log, pid=proc.pid)
    except ServiceError:
        _stop_pid(proc.pid, 10.0)
        paths.pid_file.unlink(missing_ok=True)
        raise
    elapsed = time.monotonic() - started
    log(f"Kafka up on {HOST}:{kafka_port}{secure.describe()} ({elapsed:.1f} s)")
    return {"started": True, "pid": proc.pid, "port": kafka_port, "version": KAFKA_VERSION,
            "seconds": round(elapsed, 1), **secure.report(paths)}


# ------------------------------------------------------- kafka: SASL and TLS listeners

SASL_LISTENER = "SASL_PLAINTEXT"
SSL_LISTENER = "SSL"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "osloscope"
TLS_VALIDITY_DAYS = 3650


class SecureListeners:
    """The optional extra listeners of the local Kafka: SASL_PLAINTEXT with SCRAM-SHA-512 on
    ``sasl_port`` (user ``osloscope``, a generated password) and SSL on ``ssl_port`` (a
    certificate for 127.0.0.1 signed by a generated throwaway CA). None = no such listener."""

    def __init__(self, sasl_port: int | None = None, ssl_port: int | None = None) -> None:
        self.sasl_port = sasl_port or None
        self.ssl_port = ssl_port or None

    @classmethod
    def from_state(cls, state: dict) -> "SecureListeners":
        return cls(state.get("sasl_port"), state.get("ssl_port"))

    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.sasl_port, self.ssl_port) if p)

    def state(self) -> dict:
        return {"sasl_port": self.sasl_port, "ssl_port": self.ssl_port}

    def missing_from(self, running: "SecureListeners") -> str:
        """The listeners asked for here that ``running`` does not have (as words), or ''."""
        missing = []
        if self.sasl_port and self.sasl_port != running.sasl_port:
            missing.append(f"SASL listener on port {self.sasl_port}")
        if self.ssl_port and self.ssl_port != running.ssl_port:
            missing.append(f"SSL listener on port {self.ssl_port}")
        return " and ".join(missing)

    def describe(self) -> str:
        parts = []
        if self.sasl_port:
            parts.append(f"SASL/SCRAM on :{self.sasl_port}")
        if self.ssl_port:
            parts.append(f"TLS on :{self.ssl_port}")
        return f" ({', '.join(parts)})" if parts else ""

    def report(self, paths: "_Paths") -> dict:
        """What a client needs: ports, the files of ready-made ``[kafka]`` settings, the CA."""
        out: dict = {}
        if self.sasl_port:
            out["sasl"] = {"port": self.sasl_port, "mechanism": SCRAM_MECHANISM, "username": SCRAM_USER,
                           "password_file": str(_scram_password_file(paths)),
                           "settings": str(_security_dir(paths) / "client-sasl.toml")}
        if self.ssl_port:
            out["ssl"] = {"port": self.ssl_port, "cafile": str(_tls_paths(paths)["ca_pem"]),
                          "settings": str(_security_dir(paths) / "client-ssl.toml")}
        return out


def _security_dir(paths: "_Paths") -> Path:
    return paths.root / "security"


def _scram_password_file(paths: "_Paths") -> Path:
    return _security_dir(paths) / "scram-password"


def _tls_paths(paths: "_Paths") -> dict[str, Path]:
    d = _security_dir(paths)
    return {"ca_store": d / "ca.p12", "ca_pem": d / "ca.pem", "keystore": d / "broker.p12",
            "csr": d / "broker.csr", "cert": d / "broker.pem", "store_password": d / "store-password"}


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _ensure_scram_password(paths: "_Paths") -> str:
    """The SCRAM user's password: generated once, kept in <home>/kafka/security/scram-password."""
    path = _scram_password_file(paths)
    try:
        password = path.read_text().strip()
    except OSError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(18)
        _write_secret(path, password)
    return password


def _keytool(args: list[str], log_path: Path) -> None:
    keytool = _java_home() / "bin" / "keytool"
    if not keytool.is_file():
        keytool = Path(shutil.which("keytool") or keytool)
    result = subprocess.run([str(keytool), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with log_path.open("a") as out:
        out.write(f"keytool {args[0]}: exit {result.returncode}\n{result.stdout}\n")
    if result.returncode != 0:
        raise ServiceError(f"keytool {args[0]} failed: {result.stdout.strip()[:300]}", service="kafka",
                           log_path=log_path)


def _ensure_tls_material(paths: "_Paths", log: Log) -> None:
    """A throwaway CA (ca.pem, for the clients' ssl_cafile) and a PKCS12 keystore with the
    broker's key and a certificate for 127.0.0.1/localhost that it signed; made once with the
    JDK's keytool and kept, so the CA stays valid for the clients across restarts."""
    tls = _tls_paths(paths)
    if all(tls[k].is_file() for k in ("ca_pem", "keystore", "store_password")):
        return
    directory = _security_dir(paths)
    log(f"generating a throwaway CA and a broker certificate for {HOST} in {directory}...")
    for name in ("ca_store", "ca_pem", "keystore", "csr", "cert"):
        tls[name].unlink(missing_ok=True)
    password = secrets.token_urlsafe(18)
    _write_secret(tls["store_password"], password)
    log_path = paths.log_dir / "keytool.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    days = str(TLS_VALIDITY_DAYS)
    store = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]
    _keytool(["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", days,
              "-dname", "CN=osloscope local services CA", "-ext", "bc:c", "-ext", "KU:c=keyCertSign,cRLSign",
              "-keystore", str(tls["ca_store"]), *store], log_path)
    _keytool(["-exportcert", "-rfc", "-alias", "ca", "-file", str(tls["ca_pem"]),
              "-keystore", str(tls["ca_store"]), *store], log_path)
    _keytool(["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", days,
              "-dname", f"CN={HOST}", "-keystore", str(tls["keystore"]), *store], log_path)
    _keytool(["-certreq", "-alias", "broker", "-file", str(tls["csr"]), "-keystore", str(tls["keystore"]),
              *store], log_path)
    _keytool(["-gencert", "-rfc", "-alias", "ca", "-infile", str(tls["csr"]), "-outfile", str(tls["cert"]),
              "-validity", days, "-ext", f"SAN=IP:{HOST},DNS:localhost",
              "-ext", "KU:c=digitalSignature,keyEncipherment", "-ext", "EKU=serverAuth",
              "-keystore", str(tls["ca_store"]), *store], log_path)
    _keytool(["-importcert", "-noprompt", "-alias", "ca", "-file", str(tls["ca_pem"]),
              "-keystore", str(tls["keystore"]), *store], log_path)
    _keytool(["-importcert", "-noprompt", "-alias", "broker", "-file", str(tls["cert"]),
              "-keystore", str(tls["keystore"]), *store], log_path)
    tls["csr"].unlink(missing_ok=True)


def _write_client_settings(paths: "_Paths", secure: SecureListeners) -> None:
    """Ready-made ``[kafka]`` settings for each secure listener (``--config FILE``)."""
    directory = _security_dir(paths)
    if secure.sasl_port:
        password = _scram_password_file(paths).read_text().strip()
        text = (f"# osloscope services: the SASL_PLAINTEXT listener (SCRAM) of the local Kafka\n[kafka]\n"
                f'bootstrap = "{HOST}:{secure.sasl_port}"\nsecurity_protocol = "SASL_PLAINTEXT"\n'
                f'sasl_mechanism = "{SCRAM_MECHANISM}"\nsasl_username = "{SCRAM_USER}"\n'
                f'sasl_password = "{password}"\n')
        _write_secret(directory / "client-sasl.toml", text.rstrip("\n"))
    if secure.ssl_port:
        text = (f"# osloscope services: the SSL listener of the local Kafka\n[kafka]\n"
                f'bootstrap = "{HOST}:{secure.ssl_port}"\nsecurity_protocol = "SSL"\n'
                f'ssl_cafile = "{_tls_paths(paths)["ca_pem"]}"\n')
        _write_secret(directory / "client-ssl.toml", text.rstrip("\n"))


def _upsert_scram_user(port: int, password: str) -> None:
    """Create (or reset) the SCRAM user through the PLAINTEXT listener (KIP-554)."""
    from pipeline.streaming.kafka_clients import upsert_scram_user

    error = upsert_scram_user(f"{HOST}:{port}", SCRAM_USER, SCRAM_MECHANISM, password)
    if error:
        raise ServiceError(f"creating SCRAM user {SCRAM_USER!r} failed: {error}", service="kafka")


def _secure_listeners_ready(paths: "_Paths", port: int, secure: SecureListeners, deadline: float, log: Log,
                            pid: int | None = None) -> None:
    """Create the SCRAM user, write the client settings, and wait until a client gets a metadata
    answer through each secure listener (authenticated, the certificate verified)."""
    if not secure.ports():
        return
    from pipeline.streaming.kafka_clients import broker_answers

    checks = []
    if secure.sasl_port:
        password = _ensure_scram_password(paths)
        with _quiet_kafka_logging():
            _upsert_scram_user(port, password)
        checks.append(("SASL", f"{HOST}:{secure.sasl_port}",
                       {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": SCRAM_MECHANISM,
                        "sasl_plain_username": SCRAM_USER, "sasl_plain_password": password}))
    if secure.ssl_port:
        checks.append(("SSL", f"{HOST}:{secure.ssl_port}",
                       {"security_protocol": "SSL", "ssl_cafile": str(_tls_paths(paths)["ca_pem"])}))
    _write_client_settings(paths, secure)
    for name, bootstrap, options in checks:
        def answers(bootstrap=bootstrap, options=options) -> bool:
            with _quiet_kafka_logging():
                return broker_answers(bootstrap, 5.0, **options)
        _wait_healthy("kafka", pid or _running_pid(paths) or 0, answers, deadline, paths.main_log,
                      what=f"the {name} listener {bootstrap}")


# ------------------------------------------------------------------- elasticsearch


def _maven_repo() -> Path:
    return Path.home() / ".m2" / "repository"


def _es_zip(paths: _Paths, log: Log) -> Path:
    cached = (_maven_repo() / "org" / "elasticsearch" / "distribution" / "integ-test-zip" / "elasticsearch"
              / ES_VERSION / f"elasticsearch-{ES_VERSION}.zip")
    if cached.is_file():
        return cached
    log(f"fetching Elasticsearch {ES_VERSION} with Maven (first run downloads ~107 MB)...")
    download_dir = paths.root / "download"
    _mvn([f"{MAVEN_DEPENDENCY_PLUGIN}:copy", f"-Dartifact={ES_ARTIFACT}", f"-DoutputDirectory={download_dir}"],
         service="elasticsearch", log_path=paths.log_dir / "maven.log", cwd=paths.root)
    return download_dir / f"elasticsearch-{ES_VERSION}.zip"


def _unzip(archive: Path, dest: Path) -> None:
    """Extract keeping the Unix permission bits (zipfile drops them)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def _es_distribution(paths: _Paths, log: Log) -> Path:
    if (paths.es_dist / "bin" / "elasticsearch").is_file():
        return paths.es_dist
    archive = _es_zip(paths, log)
    log(f"unpacking {archive.name} into {paths.root}...")
    staging = paths.root / ".unpack"
    shutil.rmtree(staging, ignore_errors=True)
    _unzip(archive, staging)
    shutil.rmtree(paths.es_dist, ignore_errors=True)
    (staging / paths.es_dist.name).rename(paths.es_dist)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(paths.root / "download", ignore_errors=True)
    return paths.es_dist


def _es_render_config(paths: _Paths, dist: Path, es_port: int) -> None:
    values = {"es_port": es_port, "es_transport_port": es_port + 100, "data_dir": paths.data_dir,
              "log_dir": paths.log_dir, "es_heap": ES_HEAP}
    _render("elasticsearch.yml", paths.config_dir / "elasticsearch.yml", **values)
    _render("jvm.options", paths.config_dir / "jvm.options.d" / "osloscope.options", **values)
    for name in ("jvm.options", "log4j2.properties"):
        shutil.copyfile(dist / "config" / name, paths.config_dir / name)


def _es_user(log: Log) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(ES_USER)
    except KeyError:
        pass
    log(f"creating system user {ES_USER!r} (Elasticsearch refuses to run as root)...")
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
           "--shell", "/usr/sbin/nologin", ES_USER]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise ServiceError(f"useradd {ES_USER} failed: {result.stdout.strip()}", service="elasticsearch")
    return pwd.getpwnam(ES_USER)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _check_searchable(path: Path) -> None:
    """The unprivileged user must be able to reach <home>; /root, for one, is closed."""
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise ServiceError(f"{parent} is not searchable by user {ES_USER}; "
                               "set OSLOSCOPE_HOME to a directory outside it", service="elasticsearch")


def _drop_privileges_prefix(log: Log, paths: _Paths) -> list[str]:
    """Command prefix that runs Elasticsearch as ES_USER when we are root."""
    if os.geteuid() != 0:
        return []
    user = _es_user(log)
    _check_searchable(paths.root)
    _chown_tree(paths.root, user.pw_uid, user.pw_gid)
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", ES_USER, "--"]
    raise ServiceError("need setpriv or runuser to run Elasticsearch as non-root", service="elasticsearch")


def _es_request(port: int, path: str, *, method: str = "GET", body: object = None, timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def _es_healthy(port: int, wait: float = 0.0) -> bool:
    query = f"?wait_for_status=yellow&timeout={int(wait)}s" if wait >= 1 else ""
    try:
        health = _es_request(port, f"/_cluster/health{query}", timeout=wait + 5.0)
    except (OSError, ValueError):  # URLError, connection refused, HTTP 408/503, bad JSON
        return False
    return health.get("status") in ("green", "yellow")


def _start_es(home: Path, es_port: int, timeout: float, log: Log) -> dict:
    paths = _Paths(home, "elasticsearch")
    pid = _running_pid(paths)
    if pid:
        port = _read_state(paths).get("port")
        log(f"Elasticsearch already running (pid {pid}, http://{HOST}:{port})")
        if not _es_healthy(port, wait=timeout):
            raise ServiceError("running but cluster health is not yellow", service="elasticsearch",
                               log_path=paths.main_log)
        return {"started": False, "pid": pid, "port": port, "version": ES_VERSION}
    paths.pid_file.unlink(missing_ok=True)
    _check_ports_free("elasticsearch", (es_port, es_port + 100))
    for directory in (paths.root, paths.log_dir, paths.config_dir, paths.tmp_dir):
        directory.mkdir(parents=True, exist_ok=True)
    dist = _es_distribution(paths, log)
    _es_render_config(paths, dist, es_port)
    _reset_data_if_other_version(paths, ES_VERSION, log)
    paths.data_version_file.write_text(ES_VERSION + "\n")
    prefix = _drop_privileges_prefix(log, paths)
    return _launch_es(paths, prefix, es_port, timeout, log)


def _es_env(paths: _Paths) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(paths.root),
        "LANG": "C.UTF-8",
        "ES_JAVA_HOME": str(_java_home()),
        "ES_PATH_CONF": str(paths.config_dir),
        "ES_TMPDIR": str(paths.tmp_dir),
    }


def _launch_es(paths: _Paths, prefix: list[str], es_port: int, timeout: float, log: Log) -> dict:
    started = time.monotonic()
    log(f"starting Elasticsearch {ES_VERSION} on http://{HOST}:{es_port}...")
    cmd = prefix + [str(paths.es_dist / "bin" / "elasticsearch"), "-d", "-p", str(paths.pid_file)]
    with paths.console_log.open("ab") as out:
        # With -d the launcher returns once the node has started (or failed).
        proc = subprocess.Popen(cmd, cwd=paths.root, env=_es_env(paths), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)  # the launcher and the server JVM it forked share a process group
        code = None
    pid = _read_pid(paths.pid_file)
    if code != 0 or pid is None:
        if pid and _alive(pid):
            _stop_pid(pid, 10.0)
        paths.pid_file.unlink(missing_ok=True)
        reason = f"did not start within {timeout:.0f} s" if code is None else f"launcher exited with {code}"
        raise ServiceError(f"{reason}:\n{_tail(paths.console_log)}",
                           service="elasticsearch", log_path=paths.console_log)
    _write_state(paths, version=ES_VERSION, pid=pid, port=es_port, log=str(paths.main_log))
    remaining = max(1.0, started + timeout - time.monotonic())
    if not _es_healthy(es_port, wait=remaining):
        _stop_pid(pid, 30.0)
        paths.pid_file.unlink(missing_ok=True)
        raise ServiceError("cluster health did not reach yellow before the timeout",
                           service="elasticsearch", log_path=paths.main_log)
    elapsed = time.monotonic() - started
    log(f"Elasticsearch up on http://{HOST}:{es_port} ({elapsed:.1f} s)")
    return {"started": True, "pid": pid, "port": es_port, "version": ES_VERSION, "seconds": round(elapsed, 1)}


# ---------------------------------------------------------------------- public API


def _check_which(which: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [name for name in which if name not in SERVICES]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; choose from {list(SERVICES)}")
    return tuple(name for name in SERVICES if name in which)


def up(home: Path | None = None, *, kafka_port: int = 9092, kafka_controller_port: int = 9093,
       es_port: int = 9200, which: tuple[str, ...] = SERVICES, timeout: float = 180.0,
       log: Log = print_to_stderr, sasl_port: int | None = None, ssl_port: int | None = None) -> dict:
    """Start the selected services (idempotent) and wait until they are healthy.

    ``timeout`` bounds each service's start-up once its JVM is launched; first-run
    downloads are not counted. Returns {service: {started, pid, port, version, ...}}.
    ``sasl_port`` and ``ssl_port`` add a SASL_PLAINTEXT (SCRAM-SHA-512) and an SSL listener to
    Kafka; its entry then also has ``sasl`` / ``ssl`` with what clients need (see
    SecureListeners.report). Raises ServiceError with the service name and log file on failure.
    """
    home = resolve_home(home)
    _prepare_home(home)
    result = {}
    for name in _check_which(which):
        if name == "kafka":
            result[name] = _start_kafka(home, kafka_port, kafka_controller_port, timeout, log,
                                        SecureListeners(sasl_port, ssl_port))
        else:
            result[name] = _start_es(home, es_port, timeout, log)
        result[name]["log"] = str(_Paths(home, name).main_log)
    return result


def down(home: Path | None = None, *, which: tuple[str, ...] = SERVICES, timeout: float = 30.0,
         log: Log = print_to_stderr) -> None:
    """Stop the selected services: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    home = resolve_home(home)
    for name in _check_which(which):
        paths = _Paths(home, name)
        label = _label(name)
        pid = _running_pid(paths)
        if pid is None:
            log(f"{label} not running")
        else:
            started = time.monotonic()
            log(f"stopping {label} (pid {pid})...")
            clean = _stop_pid(pid, timeout)
            how = "stopped" if clean else f"killed (no exit within {timeout:.0f} s of SIGTERM)"
            log(f"{label} {how} ({time.monotonic() - started:.1f} s)")
        paths.pid_file.unlink(missing_ok=True)


def status(home: Path | None = None) -> dict:
    """{service: {running, pid, port, version, healthy, log}} without starting anything."""
    home = resolve_home(home)
    report = {}
    for name in SERVICES:
        paths = _Paths(home, name)
        state = _read_state(paths)
        pid = _running_pid(paths)
        port = state.get("port")
        healthy = False
        if pid and port:
            healthy = _kafka_healthy(port) if name == "kafka" else _es_healthy(port)
        version = state.get("version") or (KAFKA_VERSION if name == "kafka" else ES_VERSION)
        report[name] = {"running": pid is not None, "pid": pid, "port": port, "version": version,
                        "healthy": healthy, "log": str(paths.main_log)}
        if name == "kafka" and pid is not None:
            report[name].update(SecureListeners.from_state(state).report(paths))
    return report


def _label(name: str) -> str:
    return "Kafka" if name == "kafka" else "Elasticsearch"
