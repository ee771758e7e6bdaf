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
Notifications wait in an outbox under notify.state_dir until a receiver answers 2xx, retried
with backoff; each request carries an Idempotency-Key and, with a secret, an HMAC signature.

A receiver with style = "alertmanager_api" is a Prometheus Alertmanager: every incident is
pushed to its POST /api/v2/alerts as one alert (labels alertname="osloscope_<type>", type,
severity, host, service, incident_id, ...; endsAt when it resolves) and open alerts are re-sent
every resend_interval seconds (default 60, below Alertmanager's resolve_timeout), so
Alertmanager's routing, grouping, inhibition and silences apply to them.
Stop with Ctrl-C or SIGTERM."""

EPILOG = """\
Exit codes: 0 stopped by Ctrl-C or SIGTERM; 2 usage errors, invalid settings, no receivers,
or another notifier already uses notify.state_dir; 1 any other failure (for instance no Kafka
broker reachable at start), with a traceback."""


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
    from pipeline.alerting.consumer import run          # loads kafka-python
    from pipeline.alerting.notifier import NotifierBusy
    try:
        return run(settings)
    except NotifierBusy as exc:
        print(f"osloscope notify: {exc}", file=sys.stderr)
        return 2
