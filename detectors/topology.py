"""OpenStack topology: the knowledge of how the services fit together.

Which services are API front ends and which are the workers behind them,
which loggers belong to API-side code, which project owns a kind of
resource, which component an exception or a library points at, and which
service a logger name belongs to. Detectors, the request windows and the
parser read it from here, so a new service or release is taught in one place.
"""
from __future__ import annotations

import re

from .model import UUID, Event

LOGGER_SERVICE = (
    ("nova.api", "nova-api"), ("nova.osapi_compute", "nova-api"), ("nova.metadata", "nova-api-metadata"),
    ("nova.compute", "nova-compute"), ("nova.virt", "nova-compute"), ("nova.conductor", "nova-conductor"),
    ("nova.scheduler", "nova-scheduler"), ("cinder.volume", "cinder-volume"), ("cinder.api", "cinder-api"),
    ("cinder.scheduler", "cinder-scheduler"), ("cinder.backup", "cinder-backup"),
    ("glance.registry", "glance-registry"), ("glance", "glance-api"), ("keystone", "keystone"),
    ("neutron", "neutron-server"), ("placement", "placement-api"),
)


def service_from_logger(logger: str | None, prog: str | None = None) -> str | None:
    if prog and prog not in ("python", "python3", "python2", "uwsgi", "httpd", "apache2"):
        return prog
    if not logger:
        return None
    for prefix, service in LOGGER_SERVICE:
        if logger.startswith(prefix):
            return service
    return logger.split(".", 1)[0]


# -- which API calls start work elsewhere -------------------------------------
_PROJECT = r"(?:/[0-9a-fA-F]{32}|/[0-9a-fA-F-]{36})?"
NOVA_SERVERS = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/?$")
NOVA_ACTION = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/(" + UUID + r")/action/?$")
NOVA_ATTACH = re.compile(r"^(?:/compute)?(?:/v2(?:\.1)?)?" + _PROJECT + r"/servers/(" + UUID +
                         r")/os-volume_attachments/?$")
CINDER_VOLUMES = re.compile(r"^(?:/volume)?/v[23]" + _PROJECT + r"/volumes/?$")
CINDER_ACTION = re.compile(r"^(?:/volume)?/v[23]" + _PROJECT + r"/volumes/(" + UUID + r")/action/?$")
# the API's DEBUG line naming the action of a POST .../action request
ACTION_LINE = re.compile(r"Action: '(?:action|create)'.*?body: \{\s*\"([\w-]+)\"", re.S)

NOVA_ACTIONS = {
    "migrate": "migrate server", "os-migrateLive": "live-migrate server",
    "resize": "resize server", "rebuild": "rebuild server", "evacuate": "evacuate server",
    "unshelve": "unshelve server",
}
CINDER_ACTIONS = {"os-attach": "attach volume", "os-extend": "extend volume",
                  "os-migrate_volume": "migrate volume", "os-retype": "retype volume"}

WORKERS = {
    "nova": frozenset(("nova-conductor", "nova-scheduler", "nova-compute")),
    "cinder": frozenset(("cinder-scheduler", "cinder-volume")),
}
# loggers of API-side modules: a record of theirs is not the worker's
API_LOGGERS = ("nova.api", "nova.osapi_compute", "nova.compute.api", "cinder.api", "cinder.volume.api",
               "eventlet.wsgi", "keystonemiddleware")


def accepted_operation(method: str | None, path: str | None, status: int | None,
                       action: str | None = None) -> tuple[str, str, str | None] | None:
    """``(family, operation, resource id)`` when this API call was accepted
    and starts work in other services; None otherwise.

    ``action`` is the body's action name of a ``POST .../action`` (access
    lines carry no body; the API's DEBUG ``Action: 'action' ... body:`` line
    names it). Without it, server/volume actions are not judged.
    """
    if method != "POST" or not path or status is None:
        return None
    if status == 202:
        if NOVA_SERVERS.match(path):
            return "nova", "create server", None
        m = NOVA_ACTION.match(path)
        if m:
            op = NOVA_ACTIONS.get(action or "")
            return ("nova", op, m.group(1).lower()) if op else None
        if CINDER_VOLUMES.match(path):
            return "cinder", "create volume", None
        m = CINDER_ACTION.match(path)
        if m:
            op = CINDER_ACTIONS.get(action or "")
            return ("cinder", op, m.group(1).lower()) if op else None
    if status in (200, 202):
        m = NOVA_ATTACH.match(path)
        if m:
            return "nova", "attach volume", m.group(1).lower()
    return None


def worker_family(ev: Event) -> str | None:
    """The family whose worker service wrote ``ev`` (nova/cinder), if any."""
    svc = ev.service
    if not svc:
        return None
    for family, names in WORKERS.items():
        if svc in names:
            if ev.logger and ev.logger.startswith(API_LOGGERS):
                return None
            return family
    return None


# resource kind -> the project that owns such ids (a volume id in a cinder window...)
OWNER = {"volume": "cinder", "image": "glance", "port": "neutron"}

GENERIC_PACKAGES = frozenset((
    "six", "oslo_utils", "eventlet", "greenlet", "webob", "routes", "paste", "decorator", "wrapt",
    "retrying", "tenacity", "futurist"))
PACKAGE_COMPONENT = {
    "pymysql": "database", "MySQLdb": "database", "sqlalchemy": "database", "oslo_db": "database",
    "oslo_messaging": "message queue", "kombu": "message queue", "amqp": "message queue",
    "libvirt": "libvirt", "rbd": "ceph", "rados": "ceph",
}
EXCEPTION_COMPONENT = {
    "VolumeNotCreated": "cinder-volume", "NoValidHost": "nova-scheduler",
    "MaxRetriesExceeded": "nova-scheduler", "PortBindingFailed": "neutron",
    "VirtualInterfaceCreateException": "neutron", "MessagingTimeout": "message queue",
    "DBConnectionError": "database", "libvirtError": "libvirt",
}


def project_of(service: str | None) -> str | None:
    return service.split("-", 1)[0] if service else None


def depth(service: str | None) -> int:
    """How far down a call chain a service sits: API 0, conductor/scheduler 1, workers 2."""
    s = service or ""
    if s.endswith(("-api", "-server", "-registry")) or s in ("keystone", "horizon", "httpd"):
        return 0
    if s.endswith(("-conductor", "-scheduler")):
        return 1
    return 2
