"""Resource ids and source addresses, in every form the services write them (issue 15).

One row per message template of nova, cinder, glance, neutron and keystone (plus os-vif and
uWSGI, whose lines land in their logs) that names an instance, volume, image, port, network,
snapshot, host or client address: the service, where the template comes from, one concrete
line, and the fields the parser must extract from it. Every row checks *all* of
``openstack.resources``, ``openstack.instance_id`` and ``source.ip``: a field the row does not
name must stay empty, so the negative rows (a request id, a user or project id, a subnet, a
router, a bare uuid, a port's ``device_id``) prove that no false id is made up.

Sources are ``repo path:line`` at the snapshot commits in ``COMMITS`` unless a tag is named
(``queens-eol:...``). Lines marked ``real`` are byte-exact lines of tests/fixtures (their
origin is in the fixture READMEs); the others are the template rendered with invented ids in
the oslo.log record of its era.

Host names have no event field yet (``host.name`` is the machine that logged; the event schema
has no field for a host a message names), so the host rows pin that a named host never
becomes a resource id and leave ``host.name`` alone.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from support import FIXTURES, parse_text

COMMITS = {
    "nova": "openstack/nova@00a030403f672b975364c855b7d25b40ef83e757",
    "cinder": "openstack/cinder@ab09bc39dbcd4d5b301f2f5da8fcfd9e5ef1fe8c",
    "glance": "openstack/glance@c76abb08e2bc82582389059dcbbc234293ce13b9",
    "neutron": "openstack/neutron@2131d26f73262ec89a5d3e3e0d65521df4908e65",
    "neutron-lib": "openstack/neutron-lib@6cd671a8c4614b5ac798fb858d5d32add3419d88",
    "keystone": "openstack/keystone@30ef2ffa65a3486ef882f00538e20f2253c57d4c",
    "os-vif": "openstack/os-vif@e75e5c78f4759f06a3c31751a40962e4f873d453",
    "oslo.log": "openstack/oslo.log@7808001c105595d3e2bd856afba1fc57653aa711",
    "uwsgi": "unbit/uwsgi@6cbb2177ae48af91d2799ff3135abda545cf634c",
}

INST = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
INST2 = "0c9b8a7d-6e5f-4d3c-9b2a-1f0e9d8c7b6a"
VOL = "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f"
IMG = "c9509d39-5a3c-4b6e-8d4f-2e1a0b9c8d7e"
PORT = "6f1d2c3b-4a5e-4f60-9b7c-8d9e0f1a2b3c"
NET = "0a9b8c7d-6e5f-4a3b-8c1d-0e9f8a7b6c5d"
SUBNET = "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918"
SNAP = "8e782749-16c5-42a8-8e12-45d4ddc0c7ad"
ROUTER = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f"
REQ = "req-1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
REQ2 = "req-9c096d12-ae68-4717-8907-5b3ff6cea8ad"
USER = "9942eb4321644336a0c7383d9f1c2bed"
PROJ = "a7d812868cb74f1a978035530f55f1d0"
UUID_USER = "4b1e7c2a-9d3f-4e8b-a6c5-1f2e3d4c5b6a"      # LDAP/federated users have uuid-shaped ids
CTX = f"[{REQ} {USER} {PROJ} - default default]"
CTX_JUNO = f"[{REQ} None]"
CTX_ZED = f"[None {REQ} {USER} {PROJ} - - default default]"
T = "2019-07-03 16:22:41.093"
T_JUNO = "2015-10-29 10:51:13.294"


def rec(logger: str, msg: str, *, level: str = "INFO", ctx: str = CTX, t: str = T,
        pid: int = 4411, instance: str | None = None) -> str:
    """``msg`` in an oslo.log record (context format; ``[instance: X] `` when ``instance``)."""
    prefix = f"[instance: {instance}] " if instance else ""
    return f"{t} {pid} {level} {logger} {ctx} {prefix}{msg}"


def real(path: str, contains: str) -> str:
    """The line of fixture ``path`` that contains ``contains`` (byte-exact)."""
    for line in (FIXTURES / path).read_text().splitlines():
        if contains in line:
            return line
    raise AssertionError(f"{path} has no line with {contains!r}")


class Row(NamedTuple):
    service: str
    source: str          # template source: repo path:line (at COMMITS[repo] unless a tag is named)
    line: str
    want: dict           # resources by kind, and instance_id / source_ip when set
    host: str | None = None   # the host the template names (no event field; must not leak)


ROWS = [
    # ---------------------------------------------------------------- nova: instances
    Row("nova", "oslo.log oslo_log/_options.py instance_format '[instance: %(uuid)s] '; "
        "nova/compute/manager.py 'Took %0.2f seconds to build instance.'",
        rec("nova.compute.manager", "Took 5.20 seconds to build instance.", instance=INST),
        {"instance_id": INST}),
    Row("nova", "real: seeds/S01 (nova/compute/resource_tracker.py:1767 'Instance %(uuid)s has "
        "allocations against this compute host but is not found in the database.')",
        real("seeds/S01/compute/nova-compute.log", "has allocations"),
        {"instance": ["620cd801-8849-481a-80e0-2980b6c8dba6"]}),
    Row("nova", "nova/exception.py:1456 InstanceNotFound 'Instance %(instance_id)s could not be found.'",
        rec("nova.api.openstack.wsgi", f"HTTP exception thrown: Instance {INST} could not be found."),
        {"instance": [INST]}),
    Row("nova", "nova/exception.py:510 InstanceInvalidState",
        rec("nova.api.openstack.wsgi", f"HTTP exception thrown: Instance {INST} in vm_state error. "
            "Cannot stop while the instance is in this state."),
        {"instance": [INST]}),
    Row("nova", "nova/filters.py:110-113 'Filtering removed all hosts for the request with instance "
        "ID '%(inst_uuid)s'. Filter results: %(str_results)s'",
        rec("nova.filters", f"Filtering removed all hosts for the request with instance ID '{INST}'. "
            "Filter results: ['RetryFilter: (start: 3, end: 3)', 'ComputeFilter: (start: 3, end: 0)']"),
        {"instance": [INST]}),
    Row("nova", "nova/conductor/manager.py:713-717 MaxRetriesExceeded reason, via "
        "nova/scheduler/utils.py 'Failed to %(service)s_%(method)s: %(ex)s'",
        rec("nova.scheduler.utils", "Failed to compute_task_build_instances: Exceeded maximum number "
            f"of retries. Exhausted all hosts available for retrying build failures for instance {INST}.",
            level="WARNING"),
        {"instance": [INST]}),
    Row("nova", "nova/exception.py:1618 'Build of instance %(instance_uuid)s was re-scheduled: %(reason)s'",
        rec("nova.compute.manager", f"Build of instance {INST} was re-scheduled: internal error: qemu "
            "unexpectedly closed the monitor", level="DEBUG", instance=INST),
        {"instance_id": INST, "instance": [INST]}),
    Row("nova", "nova/exception.py:908 NetworkNotFoundForInstance",
        rec("nova.compute.manager", f"Network could not be found for instance {INST}.", level="ERROR"),
        {"instance": [INST]}),
    Row("nova", "nova/compute/manager.py:3658 'Received event %(event)s for instance %(uuid)s'-family: "
        "nova/api/openstack/compute/server_external_events.py:135 'Creating event %(name)s:%(tag)s for "
        "instance %(instance_uuid)s on %(host)s'",
        rec("nova.api.openstack.compute.server_external_events",
            f"Creating event network-vif-plugged:{PORT} for instance {INST} on compute-3"),
        {"instance": [INST], "port": [PORT]}, host="compute-3"),
    Row("nova", "nova/compute/resource_tracker.py:1741 'Instance %s actively managed on this compute "
        "host and has allocations in placement: %s.'",
        rec("nova.compute.resource_tracker", f"Instance {INST} actively managed on this compute host and "
            "has allocations in placement: {'resources': {'DISK_GB': 1, 'MEMORY_MB': 512, 'VCPU': 1}}.",
            level="DEBUG", ctx="[-]"),
        {"instance": [INST]}),
    Row("nova", "nova/virt/libvirt/driver.py:13514 'Deleting instance files %s' (the instance directory)",
        rec("nova.virt.libvirt.driver", f"Deleting instance files /var/lib/nova/instances/{INST}_del",
            instance=INST),
        {"instance_id": INST, "instance": [INST]}),
    Row("nova", "nova/api/openstack/requestlog.py:39 '%(REMOTE_ADDR)s \"%(REQUEST_METHOD)s "
        "%(REQUEST_URI)s\" status: %(status)s len: %(len)s microversion: %(microversion)s time: ...'",
        rec("nova.api.openstack.requestlog", f"198.51.100.7 \"GET /compute/v2.1/servers/{INST}\" "
            "status: 404 len: 111 microversion: 2.1 time: 0.031285"),
        {"instance": [INST], "source_ip": "198.51.100.7"}),
    Row("nova", "nova/exception.py:1831 'server \"%(instance_uuid)s\" with status ...' (quoted id)",
        rec("nova.api.openstack.wsgi", f"HTTP exception thrown: The server \"{INST}\" with status "
            "\"ERROR\" is not in a valid state"),
        {"instance": [INST]}),
    Row("nova", "nova/exception.py:595 'Unable to migrate instance (%(instance_id)s) to current host "
        "(%(host)s).' (parenthesised id)",
        rec("nova.conductor.manager", f"Unable to migrate instance ({INST}) to current host (compute-2).",
            level="ERROR"),
        {"instance": [INST]}, host="compute-2"),
    Row("nova", "nova/virt/ironic/driver.py:1610 'plug: instance_uuid=%(uuid)s vif=%(network_info)s'",
        rec("nova.virt.ironic.driver", f"plug: instance_uuid={INST} vif=[]", level="DEBUG"),
        {"instance": [INST]}),
    # ---------------------------------------------------------------- nova: volumes, images
    Row("nova", "real: seeds/S20 (nova/exception.py:361-364 VolumeNotCreated)",
        real("seeds/S20/compute/nova-compute.log", "VolumeNotCreated: Volume dd04f3d2"),
        {"instance_id": "30e8a024-d1c0-4a64-aae7-a830e8c6be94", "volume": [VOL]}),
    Row("nova", "nova/compute/manager.py:1818 'Volume id: %(vol_id)s finished being created but its "
        "status is %(vol_status)s.'",
        rec("nova.compute.manager", f"Volume id: {VOL} finished being created but its status is error.",
            level="WARNING", instance=INST),
        {"instance_id": INST, "volume": [VOL]}),
    Row("nova", "nova/compute/manager.py:8201 'Attaching volume %(volume_id)s to %(mountpoint)s'",
        rec("nova.compute.manager", f"Attaching volume {VOL} to /dev/vdb", instance=INST),
        {"instance_id": INST, "volume": [VOL]}),
    Row("nova", "nova/virt/block_device.py:952 'Booting with volume snapshot %(snapshot_id)s at "
        "%(mountpoint)s'",
        rec("nova.virt.block_device", f"Booting with volume snapshot {SNAP} at /dev/vda", instance=INST),
        {"instance_id": INST, "snapshot": [SNAP]}),
    Row("nova", "nova/virt/block_device.py:958 'Booting with volume-backed-image %(image_id)s at "
        "%(mountpoint)s'",
        rec("nova.virt.block_device", f"Booting with volume-backed-image {IMG} at /dev/vda", instance=INST),
        {"instance_id": INST, "image": [IMG]}),
    Row("nova", "real: seeds/S10 (nova/exception.py:218-219 ImageNotAuthorized 'Not authorized for "
        "image %(image_id)s.')",
        real("seeds/S10/compute/nova-compute.log", "ImageNotAuthorized: Not authorized"),
        {"instance_id": "d5739cf7-9830-47fd-9a75-e9b1cb4bb421",
         "image": ["dcd85799-92f6-4294-91ec-48670a218651"]}),
    Row("nova", "nova/exception.py:874-875 ImageNotFound 'Image %(image_id)s could not be found.' "
        "inside nova/compute/api.py:2544 'Failed to delete snapshot from shelved instance (%s).'",
        rec("nova.compute.api", f"Failed to delete snapshot from shelved instance (Image {IMG} could not "
            "be found.).", level="WARNING", instance=INST),
        # the parenthesis holds the image's error, not an instance id
        {"instance_id": INST, "image": [IMG]}),
    # ---------------------------------------------------------------- nova: ports, networks
    Row("nova", "queens-eol:nova/virt/libvirt/driver.py:5755 'Timeout waiting for %(events)s for "
        "instance with vm_state ...' (events = [(name, port id)], Python 2 repr)",
        rec("nova.virt.libvirt.driver", f"Timeout waiting for [('network-vif-plugged', u'{PORT}')] for "
            "instance with vm_state building and task_state spawning.", level="WARNING", instance=INST),
        {"instance_id": INST, "port": [PORT]}),
    Row("nova", "train-eol:nova/virt/libvirt/driver.py:6421 (same, Python 3 repr)",
        rec("nova.virt.libvirt.driver", f"Timeout waiting for [('network-vif-plugged', '{PORT}')] for "
            "instance with vm_state building and task_state spawning.", level="WARNING", instance=INST),
        {"instance_id": INST, "port": [PORT]}),
    Row("nova", "nova/compute/manager.py:588 'Timeout waiting for %(events)s ... Event states are: "
        "%(event_states)s' (event keys 'network-vif-plugged-<port>')",
        rec("nova.compute.manager", f"Timeout waiting for ['network-vif-plugged-{PORT}'] for instance "
            "with vm_state building and task_state spawning. Event states are: "
            f"network-vif-plugged-{PORT}: timed out after 300.00 seconds", level="WARNING",
            ctx=CTX_ZED, instance=INST),
        {"instance_id": INST, "port": [PORT]}),
    Row("nova", "nova/compute/manager.py:11753 'Received unexpected event %(event)s for instance with "
        "vm_state %(vm_state)s and task_state %(task_state)s.'",
        rec("nova.compute.manager", f"Received unexpected event network-vif-unplugged-{PORT} for "
            "instance with vm_state active and task_state None.", level="WARNING", instance=INST),
        {"instance_id": INST, "port": [PORT]}),
    Row("nova", "nova/exception.py:959-960 PortNotUsable 'Port %(port_id)s not usable for instance "
        "%(instance)s.' in 'Instance failed network setup after %(attempts)d attempt(s)'",
        rec("nova.compute.manager", "Instance failed network setup after 1 attempt(s): "
            f"nova.exception.PortNotUsable: Port {PORT} not usable for instance {INST}.", level="ERROR"),
        {"port": [PORT], "instance": [INST]}),
    Row("nova", "nova/exception.py:899-900 PortNotFound 'Port id %(port_id)s could not be found.'",
        rec("nova.api.openstack.wsgi", f"HTTP exception thrown: Port id {PORT} could not be found."),
        {"port": [PORT]}),
    Row("nova", "nova/exception.py:1017-1018 NoMoreFixedIps 'No fixed IP addresses available for "
        "network: %(net)s'",
        rec("nova.compute.manager", "Instance failed network setup after 1 attempt(s): "
            f"nova.exception.NoMoreFixedIps: No fixed IP addresses available for network: {NET}",
            level="ERROR"),
        {"network": [NET]}),
    Row("nova", "os-vif os_vif/__init__.py:95 'Successfully plugged vif %s' (VIF repr: id = port, "
        "network=Network(<id>))",
        rec("os_vif", "Successfully plugged vif VIFBridge(active=False,address=fa:16:3e:1e:6a:71,"
            "bridge_name='brq0a9b8c7d-6e',has_traffic_filtering=True,"
            f"id={PORT},network=Network({NET}),plugin='linux_bridge',port_profile=<?>,"
            "preserve_on_delete=False,vif_name='tap6f1d2c3b-4a')"),
        {"port": [PORT], "network": [NET]}),
    Row("nova", "nova/network/neutron.py: neutronclient error '%(msg)s\\n%(id)s' (python-neutronclient "
        "neutronclient/common/exceptions.py:73-86): the downstream request id is a request, not an id",
        rec("nova.network.neutron", f"Neutron error creating port on network {NET}\n"
            f"Neutron server returns request_ids: ['{REQ2}']", level="ERROR"),
        {"network": [NET], "request": [REQ2]}),
    # ---------------------------------------------------------------- nova: negatives and hosts
    Row("nova", "nova/conductor/tasks/live_migrate.py:346 'Unable to migrate %(instance_uuid)s to "
        "%(dest)s: ...' (a bare uuid names no kind: not extracted)",
        rec("nova.conductor.tasks.live_migrate", f"Unable to migrate {INST} to compute-2: Lack of "
            "memory(host:1024 <= instance:2048)", level="ERROR"),
        {}, host="compute-2"),
    Row("nova", "the request id of the context block and of the message ('Request-ID: req-...', "
        "keystoneauth1/exceptions/http.py:84-88) is never a resource id",
        rec("nova.compute.manager", "Failed to update port: Conflict (HTTP 409) "
            f"(Request-ID: {REQ2})", level="ERROR"),
        {"request": [REQ2]}),
    Row("nova", "a uuid-shaped user id in the context block (LDAP/federated users) is no instance",
        rec("nova.api.openstack.compute.servers", "Create server request accepted",
            ctx=f"[{REQ} {UUID_USER} {PROJ} - default default]"),
        {}),
    Row("nova", "nova/conductor/manager.py:1694 'No host-to-cell mapping found for selected host "
        "%(host)s. Setup is incomplete.'",
        rec("nova.conductor.manager", "No host-to-cell mapping found for selected host compute-3. "
            "Setup is incomplete.", level="ERROR"),
        {}, host="compute-3"),
    Row("nova", "nova/exception.py:1084-1085 ComputeHostNotFound 'Compute host %(host)s could not be found.'",
        rec("nova.api.openstack.wsgi", "HTTP exception thrown: Compute host compute-3 could not be found."),
        {}, host="compute-3"),
    Row("nova", "nova/scheduler/utils.py:1096 'Error from last host: %(last_host)s (node %(last_node)s): "
        "%(exc)s'",
        rec("nova.scheduler.utils", "Error from last host: compute-2 (node compute-2.example.org): "
            f"[u'Traceback (most recent call last):\\n', u'RescheduledException: Build of instance {INST} "
            "was re-scheduled: Timed out\\n']", level="ERROR", instance=INST),
        {"instance_id": INST, "instance": [INST]}, host="compute-2"),
    # ---------------------------------------------------------------- nova: client addresses
    Row("nova", "real: corpus/olm_juno_nova-api_L2150-2160.log (nova wsgi_log_format, pike-eol "
        "nova/conf/wsgi.py)",
        real("corpus/olm_juno_nova-api_L2150-2160.log", "status: 401"),
        {"source_ip": "10.12.27.29"}),
    Row("nova", "pike-eol nova/conf/wsgi.py wsgi_log_format '%(client_ip)s ...': eventlet writes "
        "'X-Forwarded-For,REMOTE_ADDR', the forwarded list keeps its ', ' (first = client)",
        rec("nova.osapi_compute.wsgi.server", f"203.0.113.5, 10.0.0.9,10.0.0.1 \"GET /v2.1/servers/{INST} "
            "HTTP/1.1\" status: 200 len: 1893 time: 0.2477829"),
        {"instance": [INST], "source_ip": "203.0.113.5"}),
    Row("nova", "nova/api/metadata/handler.py:154 'Failed to get metadata for IP %s: no metadata'",
        rec("nova.api.metadata.handler", "Failed to get metadata for IP 10.0.0.15: no metadata",
            level="ERROR", ctx="[-]"),
        {"source_ip": "10.0.0.15"}),
    Row("nova", "nova/api/metadata/handler.py:147 'Failed to get metadata for IP %s' (IPv6)",
        rec("nova.api.metadata.handler", "Failed to get metadata for IP fd00::15", level="ERROR", ctx="[-]"),
        {"source_ip": "fd00::15"}),
    Row("nova", "nova/api/metadata/handler.py:233-236 'Failed to get instance id for metadata request, "
        "provider %(provider)s networks %(networks)s requester %(requester)s. Error: %(error)s'",
        rec("nova.api.metadata.handler", "Failed to get instance id for metadata request, provider "
            f"None networks ['{NET}'] requester 10.0.0.15. Error: Connection refused",
            level="ERROR", ctx="[-]"),
        {"source_ip": "10.0.0.15"}),
    # ---------------------------------------------------------------- cinder
    Row("cinder", "cinder/exception.py:335-336 VolumeNotFound 'Volume %(volume_id)s could not be found.'",
        rec("cinder.api.openstack.wsgi", f"HTTP exception thrown: Volume {VOL} could not be found."),
        {"volume": [VOL]}),
    Row("cinder", "cinder/scheduler/base_filter.py:80-81 'Filtering removed all hosts for the request "
        "with volume ID '%(vol_id)s'. Filter results: %(str_results)s'",
        rec("cinder.scheduler.base_filter", f"Filtering removed all hosts for the request with volume ID "
            f"'{VOL}'. Filter results: CapacityFilter: (start: 2, end: 0)"),
        {"volume": [VOL]}),
    Row("cinder", "cinder/volume/flows/manager/create_volume.py:1250 'Volume %(volume_id)s: being "
        "created as %(create_type)s with specification: %(volume_spec)s'",
        rec("cinder.volume.flows.manager.create_volume", f"Volume {VOL}: being created as image with "
            f"specification: {{'status': u'creating', 'volume_name': u'volume-{VOL}', 'volume_size': 10, "
            f"'image_id': u'{IMG}', 'image_location': (u'rbd://fsid/images/{IMG}/snap', None)}}"),
        {"volume": [VOL], "image": [IMG]}),
    Row("cinder", "cinder/volume/flows/manager/create_volume.py:160 'Volume %(volume_id)s: "
        "re-scheduling %(method)s attempt %(num)d due to %(reason)s'",
        rec("cinder.volume.flows.manager.create_volume", f"Volume {VOL}: re-scheduling create_volume "
            "attempt 1 due to Volume group cinder-volumes has insufficient space", level="DEBUG"),
        {"volume": [VOL]}),
    Row("cinder", "cinder/exception.py:445-446 VolumeIsBusy 'deleting volume %(volume_name)s that has "
        "snapshot' (volume_name_template 'volume-%s', cinder/objects/volume.py:188)",
        rec("cinder.volume.manager", f"Unable to delete busy volume: deleting volume volume-{VOL} that "
            "has snapshot", level="ERROR"),
        {"volume": [VOL]}),
    Row("cinder", "real: corpus elastic-recheck bug-1225664 (LVM lvremove of cinder's hidden "
        "'_snapshot-%s' LV, cinder/brick/local_dev/lvm.py)",
        "@corpus/elastic-recheck_logstash_oslofmt_events_2013.jsonl:_snapshot-8e782749",
        {"snapshot": [SNAP]}),
    Row("cinder", "cinder/exception.py:433-434 SnapshotNotFound 'Snapshot %(snapshot_id)s could not be found.'",
        rec("cinder.api.openstack.wsgi", f"HTTP exception thrown: Snapshot {SNAP} could not be found."),
        {"snapshot": [SNAP]}),
    Row("cinder", "cinder/exception.py:263-265 ImageTooBig 'Image %(image_id)s size exceeded available "
        "disk space: %(reason)s'",
        rec("cinder.volume.flows.manager.create_volume", f"Failed to create volume: Image {IMG} size "
            "exceeded available disk space: There is no space on /var/lib/cinder/conversion to convert "
            "image. Requested: 21474836480, available: 1073741824.", level="ERROR"),
        {"image": [IMG]}),
    Row("cinder", "cinder/volume/volume_utils.py:1213 'Failed to copy image %(image_id)s to volume: "
        "%(volume_id)s'",
        rec("cinder.volume.volume_utils", f"Failed to copy image {IMG} to volume: {VOL}", level="ERROR"),
        {"image": [IMG], "volume": [VOL]}),
    Row("cinder", "oslo.service wsgi_log_format (two spaces before len:), cinder-api eventlet",
        rec("eventlet.wsgi.server", f"10.0.0.7 \"POST /v3/{PROJ}/volumes/{VOL}/action HTTP/1.1\" "
            "status: 202  len: 252 time: 0.1430271"),
        {"volume": [VOL], "source_ip": "10.0.0.7"}),
    Row("cinder", "cinder/scheduler/filter_scheduler.py:255 'Error scheduling %(volume_id)s from last "
        "vol-service: %(last_backend)s : %(exc)s' (bare uuid: not extracted)",
        rec("cinder.scheduler.filter_scheduler", f"Error scheduling {VOL} from last vol-service: "
            "cinder-2@lvm#lvm : ['Traceback...']", level="ERROR"),
        {}, host="cinder-2@lvm#lvm"),
    # ---------------------------------------------------------------- glance
    Row("glance", "glance/api/middleware/cache.py:160 \"Cache hit for image '%s'\"",
        rec("glance.api.middleware.cache", f"Cache hit for image '{IMG}'", level="DEBUG"),
        {"image": [IMG]}),
    Row("glance", "glance/api/v2/images.py:925 'Failed to find image %(image_id)s to delete'",
        rec("glance.api.v2.images", f"Failed to find image {IMG} to delete"),
        {"image": [IMG]}),
    Row("glance", "glance/notifier.py:482 'Failed to upload image data for image %(image_id)s due to "
        "HTTP error: %(error)s'",
        rec("glance.notifier", f"Failed to upload image data for image {IMG} due to HTTP error: "
            "Request Entity Too Large", level="ERROR"),
        {"image": [IMG]}),
    Row("glance", "glance/location.py:714 'Get image %(id)s data failed: %(err)s.'",
        rec("glance.location", f"Get image {IMG} data failed: Image {IMG} not found in store.",
            level="WARNING"),
        {"image": [IMG]}),
    Row("glance", "glance_store filesystem store: image file path /var/lib/glance/images/<id>",
        rec("glance_store._drivers.filesystem", f"Wrote 13287936 bytes to /var/lib/glance/images/{IMG} "
            "with checksum 443b7623e27ecf03dc9e01ee93f67afe", level="DEBUG"),
        {"image": [IMG]}),
    Row("glance", "eventlet wsgi DEFAULT_LOG_FORMAT (glance/common/wsgi.py passes no log_format)",
        rec("eventlet.wsgi.server", f"10.0.0.7,10.0.0.1 - - [03/Jul/2019 16:22:41] \"GET /v2/images/{IMG}"
            "/file HTTP/1.1\" 200 13287936 0.512043", ctx="[-]"),
        {"image": [IMG], "source_ip": "10.0.0.7"}),
    # ---------------------------------------------------------------- neutron
    Row("neutron", "neutron/plugins/ml2/managers.py:875 'Failed to bind port %(port)s on host %(host)s "
        "for vnic_type %(vnic_type)s using segments %(segments)s'",
        rec("neutron.plugins.ml2.managers", f"Failed to bind port {PORT} on host compute-3 for vnic_type "
            f"normal using segments [{{'network_id': '{NET}', 'segmentation_id': 412, "
            "'physical_network': 'physnet1', 'id': '1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e', "
            "'network_type': 'vlan'}]", level="ERROR"),
        {"port": [PORT], "network": [NET]}, host="compute-3"),
    Row("neutron", "neutron/plugins/ml2/drivers/openvswitch/agent/ovs_neutron_agent.py:2126 "
        "'Port %(device)s updated. Details: %(details)s'",
        rec("neutron.plugins.ml2.drivers.openvswitch.agent.ovs_neutron_agent", f"Port {PORT} updated. "
            f"Details: {{'device': '{PORT}', 'device_id': '{INST}', 'network_id': '{NET}', "
            f"'port_id': '{PORT}', 'admin_state_up': True}}"),
        # device_id is the instance here, a router or a DHCP agent elsewhere: not an instance id
        {"port": [PORT], "network": [NET]}),
    Row("neutron", "neutron-lib neutron_lib/exceptions/__init__.py:414 IpAddressGenerationFailure "
        "'No more IP addresses available on network %(net_id)s.'",
        rec("neutron.pecan_wsgi.hooks.translation", "POST failed (client error): No more IP addresses "
            f"available on network {NET}."),
        {"network": [NET]}),
    Row("neutron", "neutron-lib neutron_lib/exceptions/__init__.py:108-116 NetworkNotFound "
        "'Network %(net_id)s could not be found.'",
        rec("neutron.pecan_wsgi.hooks.translation", f"GET failed (client error): Network {NET} could not "
            "be found."),
        {"network": [NET]}),
    Row("neutron", "neutron/agent/dhcp/agent.py:322 'Network %s has been removed from the agent or "
        "deleted from DB.'",
        rec("neutron.agent.dhcp.agent", f"Network {NET} has been removed from the agent or deleted from "
            "DB.", level="DEBUG"),
        {"network": [NET]}),
    Row("neutron", "neutron/agent/dhcp/agent.py:689 'Trigger reload_allocations for port %s on network %s'",
        rec("neutron.agent.dhcp.agent", f"Trigger reload_allocations for port {PORT} on network {NET}"),
        {"port": [PORT], "network": [NET]}),
    Row("neutron", "neutron/notifiers/nova.py:266,316 '%s response: %s' (event dict: the tag of a "
        "network-* event is the port)",
        rec("neutron.notifiers.nova", f"Nova event response: {{'server_uuid': '{INST}', 'name': "
            f"'network-vif-plugged', 'status': 'completed', 'tag': '{PORT}', 'code': 200}}"),
        {"instance": [INST], "port": [PORT]}),
    Row("neutron", "neutron-lib neutron_lib/exceptions/__init__.py:119-127 SubnetNotFound (a subnet is "
        "not a network)",
        rec("neutron.pecan_wsgi.hooks.translation", f"GET failed (client error): Subnet {SUBNET} could "
            "not be found."),
        {}),
    Row("neutron", "neutron-lib neutron_lib/exceptions/l3.py:20-21 RouterNotFound; neutron/agent/l3/"
        "agent.py:823 (routers are no resource kind)",
        rec("neutron.agent.l3.agent", f"Failed to process compatible router: {ROUTER}", level="ERROR"),
        {}),
    Row("neutron", "real: corpus/olm_juno_neutron-server_L1-30.log (eventlet DEFAULT_LOG_FORMAT, "
        "Juno-Ocata neutron.wsgi)",
        real("corpus/olm_juno_neutron-server_L1-30.log", "firewalls.json HTTP/1.1\" 404"),
        {"source_ip": "10.12.27.29"}),
    Row("neutron", "oslo.service wsgi_log_format (neutron.wsgi, Pike-2024.1)",
        rec("neutron.wsgi", f"10.0.0.7 \"PUT /v2.0/ports/{PORT} HTTP/1.1\" status: 200  len: 1059 "
            "time: 0.3117120"),
        {"port": [PORT], "source_ip": "10.0.0.7"}),
    # ---------------------------------------------------------------- keystone
    Row("keystone", "keystone/server/flask/application.py:138-141 'Authorization failed. %(exception)s "
        "from %(remote_addr)s' (exception.py:314-315 Unauthorized)",
        rec("keystone.server.flask.application", "Authorization failed. The request you have made "
            "requires authentication. from 203.0.113.45", level="WARNING", ctx=CTX_ZED),
        {"source_ip": "203.0.113.45"}),
    Row("keystone", "juno-eol:keystone/common/wsgi.py:226-228 + juno-eol:keystone/exception.py:143 "
        "(debug mode details)",
        rec("keystone.common.wsgi", "Authorization failed. Invalid user / password (Disable debug mode to "
            "suppress these details.) from 192.0.2.10", level="WARNING", ctx="[-]", t=T_JUNO),
        {"source_ip": "192.0.2.10"}),
    Row("keystone", "queens-eol:keystone/common/wsgi.py:228-231 + exception.py insecure_debug amendment "
        "(IPv6 client)",
        rec("keystone.common.wsgi", "Authorization failed. Could not find user: alice. (Disable "
            "insecure_debug mode to suppress these details.) from 2001:db8::45", level="WARNING",
            ctx=f"[{REQ} - - - - -]"),
        {"source_ip": "2001:db8::45"}),
    Row("keystone", "keystone/server/flask/application.py:140 (flask remote_addr None: no address)",
        rec("keystone.server.flask.application", "Authorization failed. The request you have made "
            "requires authentication. from None", level="WARNING", ctx=CTX_ZED),
        {}),
    Row("keystone", "oslo.log JSONFormatter record of the same template (oslo_log/formatters.py)",
        json.dumps({"message": "Authorization failed. The request you have made requires authentication. "
                    "from 203.0.113.46", "asctime": "2019-07-03 16:22:41", "msecs": 93.0,
                    "name": "keystone.server.flask.application", "levelname": "WARNING", "process": 27,
                    "context": {"request_id": REQ, "user_id": None}, "traceback": None}),
        {"source_ip": "203.0.113.46"}),
    Row("keystone", "devstack files/apache-keystone.template keystone_combined LogFormat "
        "'%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D(us)'",
        "203.0.113.45 - - [03/Jul/2019:16:22:41 +0000] \"POST /identity/v3/auth/tokens HTTP/1.1\" 401 "
        "114 \"-\" \"python-keystoneclient\" 28741(us)",
        {"source_ip": "203.0.113.45"}),
    Row("keystone", "uwsgi core/logging.c:742 request log '[pid: %d|app: %d|req: %d/%llu] %s (%s) "
        "{%d vars in %llu bytes} [%s] %s %s => generated ...' in devstack's journal",
        "Jul 03 16:22:41.093412 devstack devstack@keystone.service[93418]: [pid: 93418|app: 0|req: 1/2] "
        "203.0.113.45 () {58 vars in 1205 bytes} [Wed Jul  3 16:22:41 2019] POST /identity/v3/auth/tokens "
        "=> generated 114 bytes in 287 msecs (HTTP/1.1 401) 6 headers in 230 bytes (1 switches on core 0)",
        {"source_ip": "203.0.113.45"}),
    Row("keystone", "keystone/auth/plugins/core.py:180 'Could not find user: %(user_id)s.' (a user id "
        "is no resource)",
        rec("keystone.auth.plugins.core", f"Could not find user: {UUID_USER}.", level="WARNING",
            ctx=CTX_ZED),
        {}),
]

HTTP = {
    "requestlog": ("GET", "/compute/v2.1/servers/" + INST, 404),
    "uwsgi": ("POST", "/identity/v3/auth/tokens", 401),
    "apache-keystone": ("POST", "/identity/v3/auth/tokens", 401),
}


def _event(row: Row):
    line = row.line
    if line.startswith("@"):
        path, contains = line[1:].split(":", 1)
        evs = [e for e in parse_text(real(path, contains) + "\n", service=None)
               if contains in (e.text() or "")]
        assert len(evs) == 1, evs
        return evs[0]
    evs = [e for e in parse_text(line + "\n", host="h1", service=None) if e.kind != "unparsed"]
    assert len(evs) == 1, [e.kind for e in evs]
    return evs[0]


def _id(row: Row) -> str:
    return f"{row.service}:{row.source.split(' ')[0]}:{ROWS.index(row)}"


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_fields_of_every_template(row: Row):
    ev = _event(row)
    want = dict(row.want)
    instance_id = want.pop("instance_id", None)
    source_ip = want.pop("source_ip", None)
    assert (ev.resources or {}) == want, row.source
    assert ev.instance_id == instance_id, row.source
    assert ev.source_ip == source_ip, row.source
    assert ev.host in ("h1", "devstack"), "a host the message names never replaces the logging host"
    if row.host:
        assert row.host not in json.dumps(ev.resources or {})


def test_access_lines_keep_their_http_fields():
    by_source = {"requestlog": ROWS[11], "uwsgi": next(r for r in ROWS if r.source.startswith("uwsgi")),
                 "apache-keystone": next(r for r in ROWS if "apache-keystone" in r.source)}
    for name, row in by_source.items():
        ev = _event(row)
        assert (ev.http_method, ev.url_path, ev.status_code) == HTTP[name], name
    uwsgi = _event(by_source["uwsgi"])
    assert uwsgi.duration_ns == 287_000_000 and uwsgi.body_bytes == 114


def test_the_table_covers_every_service_and_kind():
    services = {r.service for r in ROWS}
    assert services == {"nova", "cinder", "glance", "neutron", "keystone"}
    kinds = {k for r in ROWS for k in r.want}
    assert {"instance", "volume", "image", "port", "network", "snapshot", "request",
            "instance_id", "source_ip"} <= kinds
    assert any(r.host for r in ROWS)
    assert sum(1 for r in ROWS if not r.want) >= 6          # negative rows: nothing is made up
