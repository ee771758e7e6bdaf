"""A small fleet's logs for the event-time tests: seven hosts, forty minutes.

Two controllers (nova-api, nova-conductor, nova-scheduler, keystone) and five
computes (nova-compute), all writing real oslo.log templates:

* every compute runs its periodic tasks every 60 s (oslo.service
  ``Running periodic task ComputeManager._...``; nova's resource tracker
  ``Auditing locally available compute resources for <host>``), except
  ``compute-3``, whose nova-compute goes silent 25 minutes in (a hung
  service: its periodic records stop);
* boots every ~40 s: nova-api ``POST /v2.1/servers`` answered 202, then
  conductor, scheduler and the chosen compute log the same request id within
  seconds -- except one boot at minute 30, which nobody picks up (the
  message bus lost it: a stalled request);
* keystone answers token requests; at minute 12 one address fails to
  authenticate 14 times within a minute (a burst), spread by the load
  balancer over both controllers' keystones (seven each: below the burst
  threshold on either host alone);
* the API services log only when called;
* at minute 18 the RabbitMQ broker goes away for three minutes: every
  nova-compute and both nova-conductors log oslo.messaging's
  ``AMQP server on 10.0.0.10:5672 is unreachable`` every few seconds, then
  ``Reconnected to AMQP server`` (compute-5 a minute and a half after the
  others): one shared cause, one incident for all eight services;
* at minute 35 the database refuses connections for a minute: nova-api on
  both controllers fails requests with ``Can't connect to MySQL server``;
* compute-4's resource audit fails now and then from the start (an error the
  service logs while it learns, known later on), and at minute 36 compute-1
  and compute-2 log an error no signature knows and none of them logged
  before (nova's image cache manager, ``Image cache manager run failed``):
  with a short learning period, one ``new_error`` incident for both hosts.

Templates: nova/api/openstack/wsgi.py and the eventlet/wsgi access line
(``"POST /v2.1/servers HTTP/1.1" status: 202``), oslo_service/periodic_task.py
(``Running periodic task %(full_task_name)s``), nova/compute/resource_tracker.py
(``Auditing locally available compute resources for %(host)s (node: %(node)s)``),
nova/conductor/manager.py, nova/scheduler/manager.py, keystone's
``Authorization failed. The request you have made requires authentication.
from %(ip)s`` (keystone/server/flask/application.py).
"""
from __future__ import annotations

import heapq
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2024, 3, 5, 9, 0, 0, tzinfo=timezone.utc)
MINUTES = 40
CONTROLLERS = ("controller-1", "controller-2")
COMPUTES = tuple(f"compute-{i}" for i in range(1, 6))
SILENT = "compute-3"
SILENT_AFTER = 25 * 60
STALLED_AT = 30 * 60
BURST_AT = 12 * 60
BROKER_DOWN, BROKER_UP = 18 * 60, 21 * 60
BROKER_LATE = "compute-5"              # reconnects 90 s after the others
DB_DOWN = 35 * 60
NEW_ERROR_AT = 36 * 60

FILES = {
    "nova-api": "nova/nova-api.log", "nova-conductor": "nova/nova-conductor.log",
    "nova-scheduler": "nova/nova-scheduler.log", "keystone": "keystone/keystone.log",
    "nova-compute": "nova/nova-compute.log",
}


def _line(t: datetime, pid: int, level: str, logger: str, ctx: str, msg: str) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {pid} {level} {logger} {ctx} {msg}\n"


def _req(rng: random.Random) -> str:
    return f"req-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def generate(root: Path, seed: int = 7, start: datetime = START) -> dict:
    """Write the fleet under ``root/<host>/<project>/<file>.log``; returns what it holds."""
    rng = random.Random(seed)
    out: dict[tuple[str, str], list[tuple[float, str]]] = {}

    def log(host: str, service: str, sec: float, pid: int, level: str, logger: str, ctx: str, msg: str):
        t = start + timedelta(seconds=sec)
        out.setdefault((host, service), []).append((sec, _line(t, pid, level, logger, ctx, msg)))

    nil = "[- - - - - -]"
    # periodic tasks of every compute, every 60 s (compute-3 stops)
    for i, host in enumerate(COMPUTES):
        for k in range(MINUTES):
            sec = 7 + i * 3 + k * 60 + rng.random()
            if host == SILENT and sec > SILENT_AFTER:
                break
            log(host, "nova-compute", sec, 2100 + i, "DEBUG", "oslo_service.periodic_task", nil,
                "Running periodic task ComputeManager.update_available_resource run_periodic_tasks "
                "/usr/lib/python3/dist-packages/oslo_service/periodic_task.py:210")
            log(host, "nova-compute", sec + 0.05, 2100 + i, "INFO", "nova.compute.resource_tracker", nil,
                f"Auditing locally available compute resources for {host} (node: {host}.cloud)")
    # boots
    boots = 0
    sec = 20.0
    while sec < MINUTES * 60 - 120:
        api = CONTROLLERS[boots % 2]
        rid = _req(rng)
        inst = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ctx = f"[{rid} 4a5f8d0e2c1b4c8e9f6a7b3d2e1f0a9b 6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f - default default]"
        stalled = abs(sec - STALLED_AT) < 20
        log(api, "nova-api", sec, 1800, "INFO", "nova.api.openstack.requestlog", ctx,
            f'10.0.0.5 "POST /v2.1/servers" status: 202 len: 426 microversion: 2.79 time: 0.4{boots % 10}1')
        if not stalled:
            cond = CONTROLLERS[(boots + 1) % 2]
            target = COMPUTES[boots % len(COMPUTES)]
            if target == SILENT and sec > SILENT_AFTER:
                target = COMPUTES[0]
            log(cond, "nova-scheduler", sec + 0.6, 1900, "DEBUG", "nova.scheduler.manager", ctx,
                f"Starting to schedule for instances: ['{inst}'] select_destinations "
                "/usr/lib/python3/dist-packages/nova/scheduler/manager.py:141")
            log(cond, "nova-conductor", sec + 1.2, 1950, "DEBUG", "nova.conductor.manager", ctx,
                f"[instance: {inst}] Selected host: {target}; Selected node: {target}.cloud; "
                "Alternates: [] schedule_and_build_instances "
                "/usr/lib/python3/dist-packages/nova/conductor/manager.py:1620")
            log(target, "nova-compute", sec + 2.5, 2100 + COMPUTES.index(target), "INFO",
                "nova.compute.claims", ctx, f"[instance: {inst}] Claim successful on node {target}.cloud")
            log(target, "nova-compute", sec + 9.0, 2100 + COMPUTES.index(target), "INFO",
                "nova.compute.manager", ctx, f"[instance: {inst}] Took 6.41 seconds to build instance.")
        boots += 1
        sec += 35 + rng.random() * 10
    # keystone: token requests, and one burst of failures from one address
    for k in range(MINUTES * 2):
        sec = 11 + k * 30 + rng.random()
        ks = CONTROLLERS[k % 2]
        log(ks, "keystone", sec, 3300, "INFO", "keystone.common.wsgi", f"[{_req(rng)} - - - - -]",
            "POST http://controller:5000/v3/auth/tokens")
    for k in range(14):         # through the load balancer: seven failures on each keystone
        sec = BURST_AT + k * 4 + rng.random()
        log(CONTROLLERS[k % 2], "keystone", sec, 3300, "WARNING", "keystone.server.flask.application",
            f"[{_req(rng)} - - - - -]",
            "Authorization failed. The request you have made requires authentication. from 203.0.113.77")
    # the broker outage (oslo.messaging impl_rabbit, Stein+ with the connection id)
    rabbit = "oslo.messaging._drivers.impl_rabbit"
    victims = [(h, "nova-compute", 2100 + i) for i, h in enumerate(COMPUTES)] + \
              [(h, "nova-conductor", 1950) for h in CONTROLLERS]
    for host, service, pid in victims:
        conn = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        up = BROKER_UP + (90 if host == BROKER_LATE else 0) + rng.random() * 3
        sec = BROKER_DOWN + rng.random() * 4
        while sec < up:
            log(host, service, sec, pid, "ERROR", rabbit, "[-]",
                f"[{conn}] AMQP server on 10.0.0.10:5672 is unreachable: [Errno 111] ECONNREFUSED. "
                "Trying again in 4 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED")
            sec += 4 + rng.random()
        log(host, service, up, pid, "INFO", rabbit, "[-]",
            f"[{conn}] Reconnected to AMQP server on 10.0.0.10:5672 via [amqp] client with port "
            f"{40000 + rng.randrange(20000)}.")
    # the database outage, seen by both APIs (oslo.db over PyMySQL, Train+ text)
    for k in range(6):
        sec = DB_DOWN + k * 9 + rng.random()
        api = CONTROLLERS[k % 2]
        rid = _req(rng)
        log(api, "nova-api", sec, 1800, "ERROR", "nova.api.openstack.wsgi",
            f"[{rid} 4a5f8d0e2c1b4c8e9f6a7b3d2e1f0a9b 6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f - default default]",
            "Unexpected exception in API method: oslo_db.exception.DBConnectionError: "
            "(pymysql.err.OperationalError) (2003, \"Can't connect to MySQL server on '192.168.24.3' "
            "([Errno 111] Connection refused)\")")
    # an error known from the learning period, and one never seen before
    for sec in (150.0, 700.0, 1900.0):
        log("compute-4", "nova-compute", sec + rng.random(), 2103, "ERROR", "nova.compute.manager", nil,
            "Error updating resources for node compute-4.cloud.: libvirt.libvirtError: Unable to read "
            "from monitor: Connection reset by peer")
    for k in range(3):
        for i, host in enumerate(("compute-1", "compute-2")):
            log(host, "nova-compute", NEW_ERROR_AT + k * 20 + i * 3 + rng.random(), 2100 + i, "ERROR",
                "nova.virt.libvirt.imagecache", nil,
                f"Image cache manager run failed: ValueError: unreadable image info file "
                f"/var/lib/nova/instances/_base/{rng.getrandbits(40):010x}.info: Expecting value: "
                "line 1 column 1 (char 0)")
    files = []
    for (host, service), lines in sorted(out.items()):
        path = root / host / FILES[service]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            fh.writelines(line for _s, line in sorted(lines, key=lambda x: x[0]))
        files.append(path)
    return {"files": files, "boots": boots}


def _ts(msg) -> float:
    """The line's timestamp (the fleet writes UTC oslo.log lines)."""
    from datetime import datetime, timezone
    t = datetime.strptime(msg.value[:23].decode(), "%Y-%m-%d %H:%M:%S.%f")
    return t.replace(tzinfo=timezone.utc).timestamp()


def orders(msgs: list) -> dict[str, list]:
    """The shipping orders of the issue, each keeping every file's lines in order."""
    by_file: dict[bytes, list] = {}
    for m in msgs:
        by_file.setdefault(m.headers["path"], []).append(m)
    files = list(by_file.values())

    def merged(shift) -> list:
        """All files at once, by (timestamp + shift(file))."""
        keyed = [[(_ts(m) + shift(f[0]), i, j, m) for j, m in enumerate(f)] for i, f in enumerate(files)]
        return [m for *_k, m in heapq.merge(*keyed)]

    behind = b"controller-2"
    return {
        "one file after another": [m for f in files for m in f],
        "reversed": [m for f in reversed(files) for m in f],
        "all hosts at once": merged(lambda m: 0.0),
        "one host 30 min behind": merged(lambda m: 1800.0 if m.headers["host"] == behind else 0.0),
    }
