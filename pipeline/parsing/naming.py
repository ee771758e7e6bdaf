"""Host and service names from file paths.

``<root>/<host>/.../<service>.log`` (log collectors, sosreports) gives host =
the first directory below the root and service = the file name without
``.log`` and rotation suffixes. Generic file names take their project
directory (``neutron/server.log`` -> ``neutron-server``); devstack's screen
names map to the binaries (``screen-n-cpu.txt`` -> ``nova-compute``).
"""
from __future__ import annotations

import posixpath
import re

ROTATION = re.compile(r"(?:\.(?:log|txt|json|jsonl))?(?:[.-]\d{1,8})*(?:\.(?:gz|bz2|xz))?$")
PROJECTS = frozenset(("nova", "neutron", "cinder", "glance", "keystone", "heat", "swift", "placement",
                      "octavia", "ironic", "manila", "designate", "barbican", "aodh", "ceilometer",
                      "gnocchi", "magnum", "trove", "horizon", "masakari", "zun", "libvirt", "openvswitch",
                      "rabbitmq", "mariadb", "mysql", "httpd", "apache2"))
GENERIC = frozenset(("server", "api", "agent", "engine", "worker", "scheduler", "manager", "registry",
                     "access", "error", "volume", "backup", "conductor", "compute"))
DEVSTACK = {
    "n-api": "nova-api", "n-cpu": "nova-compute", "n-cond": "nova-conductor", "n-sch": "nova-scheduler",
    "n-super-cond": "nova-conductor", "n-api-meta": "nova-api-metadata", "n-novnc": "nova-novncproxy",
    "c-api": "cinder-api", "c-vol": "cinder-volume", "c-sch": "cinder-scheduler", "c-bak": "cinder-backup",
    "g-api": "glance-api", "g-reg": "glance-registry", "key": "keystone", "keystone": "keystone",
    "q-svc": "neutron-server", "q-agt": "neutron-openvswitch-agent", "q-dhcp": "neutron-dhcp-agent",
    "q-l3": "neutron-l3-agent", "q-meta": "neutron-metadata-agent", "placement-api": "placement-api",
}


def service_from_path(path: str | None) -> str | None:
    if not path:
        return None
    base = posixpath.basename(path.replace("\\", "/"))
    name = ROTATION.sub("", base) or base
    for prefix in ("screen-", "devstack@"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            return DEVSTACK.get(name, name)
    for suffix in ("_access", "-access", "_error", "-error"):
        if name.endswith(suffix) and name[: -len(suffix)]:
            name = name[: -len(suffix)]
            break
    if name in GENERIC:
        parent = posixpath.basename(posixpath.dirname(path))
        if parent in PROJECTS:
            return f"{parent}-{name}"
    if name in ("messages", "syslog", "daemon", "journal"):
        return None                   # per record, from the syslog program name
    return name
