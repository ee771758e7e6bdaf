"""``osloscope notify``: arguments, exit codes and messages; the work is in pipeline/alerting/."""
from __future__ import annotations

import argparse
import logging
import sys

from pipeline.cli.options import add_config_option, add_loglevel_option, load_settings

DESCRIPTION = """\
Consume incident changes from the incidents topic and POST them to the [[notify.receivers]]
of the settings, grouped, deduplicated, silenced and repeated like Alertmanager does
(notify.group_by, group_wait, group_interval, repeat_interval; `osloscope silence`).
Notifications wait in an outbox until a receiver answers 2xx, retried with backoff; each
request carries an Idempotency-Key and, with a secret, an HMAC signature. An incident that was
already resolved when first seen is still sent once, as resolved, with its times.

High availability: notifiers with the same worker.app_id (each its own notify.state_dir) form
one consumer group; one is active, the others stand by and take over when it stops or dies
(after worker.session_timeout). The state follows the active one through the compacted topic
<worker.app_id>.state.notify (Kafka transactions): delivery is at least once, and a notification
repeated after a take-over keeps its Idempotency-Key.

A receiver with style = "alertmanager_api" is a Prometheus Alertmanager: every incident is
pushed to its POST /api/v2/alerts as one alert (labels alertname="osloscope_<type>", type,
severity, host, service, incident_id, ...; endsAt when it resolves) and open alerts are re-sent
every resend_interval seconds (default 60, below Alertmanager's resolve_timeout), so
Alertmanager's routing, grouping, inhibition and silences apply to them.
Stop with Ctrl-C or SIGTERM."""

EPILOG = """\
Exit codes: 0 stopped by Ctrl-C or SIGTERM; 2 usage errors, invalid settings, no receivers,
another notifier already uses notify.state_dir, or Kafka rejected the settings (authentication,
TLS, security protocol: named at start); 1 any other failure (for instance no Kafka broker
reachable at start), with a traceback. A standby, or an active notifier that cannot write its
state (broker gone, fenced by another notifier, notify.state_dir on a full disk), keeps running
and logs what it waits for."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "notify", help="send incidents to webhooks (json, Alertmanager or Slack format) or "
                       "to Alertmanager's API",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    add_loglevel_option(p)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    settings = load_settings(args.config, "notify")
    if settings is None:
        return 2
    if not settings.receivers:
        print("osloscope notify: no receivers; add [[notify.receivers]] tables to the settings file "
              "(see deploy/osloscope.example.toml)", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from pipeline.streaming.kafka_clients import KafkaAccessError, check_access
    try:                                    # a wrong password or CA is named, not retried
        check_access(settings.kafka)
    except KafkaAccessError as exc:
        print(f"osloscope notify: error: Kafka {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
    from pipeline.alerting.consumer import run          # loads kafka-python
    from pipeline.alerting.notifier import NotifierBusy
    try:
        return run(settings)
    except NotifierBusy as exc:
        print(f"osloscope notify: {exc}", file=sys.stderr)
        return 2
