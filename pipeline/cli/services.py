"""``osloscope services up|down|status``: arguments, exit codes and printing; starting and
stopping the Java processes is in pipeline/operations/services.py."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """\
examples:
  osloscope services up
  osloscope services up --only kafka --kafka-port 19092 --kafka-controller-port 19093
  osloscope services up --secure-listeners   (also SASL/SCRAM on :9094 and TLS on :9095)
  osloscope services status --json
  osloscope services down

Exit codes: 0 on success; 1 a service could not be resolved, started, checked or
stopped; 2 usage errors; 'status' returns 3 when a selected service is not
running and healthy."""


def _description(s) -> str:
    return f"""\
Run the local backing services for osloscope without Docker, as plain Java
processes on {s.HOST}:
  kafka          Apache Kafka {s.KAFKA_VERSION} (Scala {s.SCALA_VERSION}), single node, KRaft mode
  elasticsearch  Elasticsearch {s.ES_VERSION} (integ-test distribution), single node,
                 security disabled; runs as user '{s.ES_USER}' when started by root

Jars and the Elasticsearch zip come from Maven Central through 'mvn' and are
cached in ~/.m2. Unpacked distributions, rendered config, data, logs and pid
files live in <project>/.osloscope/ (override with --home or $OSLOSCOPE_HOME);
that directory is throwaway: 'down' then delete it to start from scratch.
Java: $OSLOSCOPE_JAVA_HOME, else {s.PREFERRED_JAVA_HOME}, else $JAVA_HOME / PATH.

Ports (flags of 'up', all on {s.HOST}): --kafka-port (default 9092),
--kafka-controller-port (KRaft controller, default 9093), --es-port (HTTP,
default 9200; the Elasticsearch transport port is --es-port + 100).
Run 'osloscope services up --help' for all options."""


def register(subparsers) -> None:
    from pipeline.operations import services as s

    p = subparsers.add_parser("services", help="run local Kafka and Elasticsearch (Java processes, no Docker)",
                              description=_description(s), epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, help="state directory (default: $OSLOSCOPE_HOME or "
                        "<project>/.osloscope)")
    common.add_argument("--only", action="append", choices=s.SERVICES, metavar="SERVICE",
                        help="act on this service only (kafka or elasticsearch); repeatable")
    actions = p.add_subparsers(dest="services_action", required=True, metavar="{up,down,status}",
                               help="what to do with the services")
    start = actions.add_parser("up", parents=[common], help="start and wait until healthy (idempotent)",
                               description="Start the services (those not running yet) and wait until "
                                           "they are healthy.",
                               epilog="Exit codes: 0 all healthy; 1 a service could not be resolved, "
                                      "started or became healthy in time; 2 usage errors.")
    start.add_argument("--kafka-port", type=int, default=9092, help="Kafka client port (default 9092)")
    start.add_argument("--kafka-controller-port", type=int, default=9093,
                       help="KRaft controller port (default 9093)")
    start.add_argument("--es-port", type=int, default=9200,
                       help="Elasticsearch HTTP port (default 9200; transport uses port + 100)")
    start.add_argument("--timeout", type=float, default=180.0,
                       help="seconds each service may take to become healthy (default 180)")
    sec = start.add_argument_group(
        "secure Kafka listeners",
        "Extra Kafka listeners next to the PLAINTEXT one, to run the pipeline through "
        f"authentication and TLS: SASL_PLAINTEXT with {s.SCRAM_MECHANISM} (user '{s.SCRAM_USER}', "
        "a generated password) and SSL (a certificate for 127.0.0.1 signed by a generated "
        "throwaway CA). The password, the CA (ca.pem) and ready-made [kafka] settings "
        "(client-sasl.toml, client-ssl.toml) are written to <home>/kafka/security/.")
    sec.add_argument("--secure-listeners", action="store_true",
                     help="add both: SASL on --kafka-port + 2, SSL on --kafka-port + 3 (9094 and 9095 "
                          "by default) unless --sasl-port/--ssl-port say otherwise")
    sec.add_argument("--sasl-port", type=int, metavar="PORT",
                     help=f"add a SASL_PLAINTEXT ({s.SCRAM_MECHANISM}) listener on PORT")
    sec.add_argument("--ssl-port", type=int, metavar="PORT", help="add an SSL listener on PORT")
    stop = actions.add_parser("down", parents=[common], help="stop (SIGTERM, then SIGKILL after --timeout)",
                              description="Stop the services: SIGTERM, then SIGKILL after --timeout.",
                              epilog="Exit codes: 0 stopped (or not running); 1 a service could not "
                                     "be stopped; 2 usage errors.")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait after SIGTERM (default 30)")
    report = actions.add_parser("status", parents=[common], help="show running/healthy, pid, port, version",
                                description="Show for each service whether it runs and is healthy, "
                                            "with its pid, port and version (starts nothing).",
                                epilog="Exit codes: 0 every selected service runs and is healthy; 3 one "
                                       "does not; 1 the state could not be read; 2 usage errors.")
    report.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from pipeline.operations.services import SERVICES, ServiceError, down, print_to_stderr, status, up

    which = tuple(args.only) if args.only else SERVICES
    try:
        if args.services_action == "up":
            sasl_port, ssl_port = _secure_ports(args)
            result = up(args.home, kafka_port=args.kafka_port, kafka_controller_port=args.kafka_controller_port,
                        es_port=args.es_port, which=which, timeout=args.timeout,
                        sasl_port=sasl_port, ssl_port=ssl_port)
            _print_secure(result.get("kafka", {}))
        elif args.services_action == "down":
            down(args.home, which=which, timeout=args.timeout)
        else:
            report = {name: info for name, info in status(args.home).items() if name in which}
            _print_status(report, args.json)
            return 0 if all(info["running"] and info["healthy"] for info in report.values()) else 3
    except ServiceError as exc:
        print_to_stderr(f"error: {exc}")
        return 1
    return 0


def _secure_ports(args) -> tuple[int | None, int | None]:
    sasl, ssl = args.sasl_port, args.ssl_port
    if args.secure_listeners:
        sasl = sasl or args.kafka_port + 2
        ssl = ssl or args.kafka_port + 3
    return sasl, ssl


def _print_secure(kafka: dict) -> None:
    """How to reach the secure listeners (on stderr, like the rest of `up`'s progress)."""
    from pipeline.operations.services import print_to_stderr

    if "sasl" in kafka:
        sasl = kafka["sasl"]
        print_to_stderr(f"Kafka SASL_PLAINTEXT ({sasl['mechanism']}) on port {sasl['port']}: user "
                        f"{sasl['username']}, password in {sasl['password_file']}; "
                        f"settings: --config {sasl['settings']}")
    if "ssl" in kafka:
        ssl = kafka["ssl"]
        print_to_stderr(f"Kafka SSL on port {ssl['port']}: CA {ssl['cafile']}; "
                        f"settings: --config {ssl['settings']}")


def _print_status(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for name, info in report.items():
        state = "running" if info["running"] else "stopped"
        health = "healthy" if info["healthy"] else "not healthy"
        details = f"pid {info['pid']}, port {info['port']}, {health}" if info["running"] else f"log {info['log']}"
        if "sasl" in info:
            details += f", SASL/SCRAM port {info['sasl']['port']}"
        if "ssl" in info:
            details += f", TLS port {info['ssl']['port']}"
        print(f"{name:<14} {state:<8} {info['version']:<8} {details}")
