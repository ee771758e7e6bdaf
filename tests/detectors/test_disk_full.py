"""disk_full: a record that names no path is the same ENOSPC failure one frame
up (one incident per host and filesystem); glance's StorageFull is its store.
Error suffixes: Python 2 era bare exception classes get error.type, prose does not."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from support import engine as support_engine, by_time, ev, parse_text
from detectors import Engine
from detectors.disk_full import DiskFull

INSTANCE = "2c5a8e62-62d0-430d-8747-795350bb6939"
NOVA_REQ = "req-1e5b9d4a-3c2f-4b8e-9a6d-7f0c1b2a3d4e"
CINDER_REQ = "req-8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d"
GLANCE_REQ = "req-3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9"
ENOSPC = "[Errno 28] No space left on device"


def _t(clock: str) -> dt.datetime:
    """``clock`` (HH:MM:SS.mmm) on the day of these logs."""
    return dt.datetime.fromisoformat(f"2018-03-12 {clock}")


# Pike: glance download into the image cache fails, then the build fails one frame up.
def nova_path(clock: str = "14:02:11.412", host: str = "cmp1"):
    return ev(_t(clock), "ERROR", "nova.image.glance",
              f"Error writing to /var/lib/nova/instances/_base/f5797db00aacfbe240bbfb0f53c2da80e4be6dfc.part: {ENOSPC}",
              host=host, service="nova-compute", req=NOVA_REQ, instance=INSTANCE)


def nova_spawn(clock: str = "14:02:11.530", host: str = "cmp1", **fields):
    """The spawn failure one frame up: it names no path (``stack_trace=None``: logged without its traceback)."""
    fields.setdefault("stack_trace", "Traceback (most recent call last):\n"
                                     '  File "/usr/lib/python2.7/site-packages/nova/compute/manager.py", line 2192, '
                                     "in _build_resources\n    yield resources\n"
                                     f"IOError: {ENOSPC}")
    return ev(_t(clock), "ERROR", "nova.compute.manager", f"Instance failed to spawn: IOError: {ENOSPC}",
              host=host, service="nova-compute", req=NOVA_REQ, instance=INSTANCE,
              error_type="IOError", error_message=ENOSPC, **fields)


def nova_pair(host: str = "cmp1"):
    return [nova_path(host=host), nova_spawn(host=host)]


# cinder: conversion dir too small, then the create-from-image flow fails naming no path.
def cinder_pair(host: str):
    cause = "Failed to copy image to volume: qemu-img: error while writing at byte 2147483648: No space left on device"
    return [
        ev(_t("15:10:04.118"), "ERROR", "cinder.image.image_utils",
           "Insufficient free space on /var/lib/cinder/conversion for image conversion.",
           host=host, service="cinder-volume", req=CINDER_REQ),
        ev(_t("15:10:04.126"), "ERROR", "cinder.volume.flows.manager.create_volume",
           "Failed to copy image 9d4f2c59-7d3a-4c1e-8f2b-6a5e4d3c2b1a to volume: 0e2f6a1c-5b4d-4e3f-9a8b-7c6d5e4f3a2b: "
           f"cinder.exception.ImageCopyFailure: {cause}",
           host=host, service="cinder-volume", req=CINDER_REQ,
           error_type="cinder.exception.ImageCopyFailure", error_message=cause,
           resources={"image": ["9d4f2c59-7d3a-4c1e-8f2b-6a5e4d3c2b1a"],
                      "volume": ["0e2f6a1c-5b4d-4e3f-9a8b-7c6d5e4f3a2b"]}),
    ]


def glance_media_full(host: str = "ctl1"):
    return ev(_t("16:20:00.301"), "ERROR", "glance.api.v2.image_data",
              "Image storage media is full: There is not enough disk space on the image storage media.",
              host=host, service="glance-api", req=GLANCE_REQ)


def glance_store_full(host: str = "ctl1"):
    return ev(_t("16:25:00.044"), "ERROR", "glance_store._drivers.filesystem",
              "There is no enough disk space left on the image storage media. requested=10737418240",
              host=host, service="glance-api", req="req-5e4d3c2b-1a0f-4e9d-8c7b-a6f5e4d3c2b1")


def _incidents(evs, engine=None):
    engine = engine or support_engine()
    latest = {}
    for e in evs:
        for doc in engine.feed(e).incidents:
            latest[doc["id"]] = doc
    return [d for d in latest.values() if d["type"] == "disk_full"]


def test_nova_enospc_and_the_spawn_failure_are_one_incident():
    (inc,) = _incidents(by_time(nova_pair("cmp1")))
    assert (inc["host"], inc["count"]) == ("cmp1", 2)
    assert inc["details"]["filesystem"] == "/var/lib/nova/instances"
    assert inc["resources"]["instance"] == [INSTANCE]
    assert inc["last_seen"] == "2018-03-12T14:02:11.530+00:00"


def test_cinder_conversion_dir_and_the_copy_failure_are_one_incident():
    (inc,) = _incidents(by_time(cinder_pair("blk1")))
    assert (inc["host"], inc["count"]) == ("blk1", 2)
    assert inc["details"]["filesystem"] == "/var/lib/cinder"
    assert inc["resources"]["volume"] == ["0e2f6a1c-5b4d-4e3f-9a8b-7c6d5e4f3a2b"]


def test_a_record_without_path_on_another_host_gets_its_own_incident():
    spawn_only = [nova_spawn("14:03:00.530", host="cmp2")]
    incidents = _incidents(by_time(nova_pair("cmp1"), spawn_only))
    got = sorted((i["host"], i["details"]["filesystem"], i["count"]) for i in incidents)
    assert got == [("cmp1", "/var/lib/nova/instances", 2), ("cmp2", "unknown", 1)]


def test_a_record_without_path_prefers_the_incident_of_its_request():
    # cinder's pair on a host whose nova incident was updated more recently
    nova = [nova_path("15:10:04.120", host="aio")]
    incidents = _incidents(by_time(cinder_pair("aio"), nova))
    got = sorted((i["details"]["filesystem"], i["count"]) for i in incidents)
    assert got == [("/var/lib/cinder", 2), ("/var/lib/nova/instances", 1)]


def test_a_record_without_path_after_the_quiet_period_is_a_new_unknown_incident():
    incidents = _incidents(by_time([nova_path(), nova_spawn("14:40:00.000", stack_trace=None)]))
    got = sorted((i["details"]["filesystem"], i["status"], i["count"]) for i in incidents)
    assert got == [("/var/lib/nova/instances", "resolved", 1), ("unknown", "open", 1)]


def _reversed_pair(delay: str = "14:02:12.001"):
    """The nova pair with the path record logged after the pathless one."""
    return [nova_spawn(), nova_path(delay)]


def test_the_path_record_coming_second_names_the_filesystem_of_the_same_incident():
    evs = by_time(_reversed_pair())
    (inc,) = _incidents(evs)
    assert (inc["host"], inc["count"]) == ("cmp1", 2)
    assert inc["details"]["filesystem"] == "/var/lib/nova/instances"
    assert inc["title"] == "Disk full on cmp1 (/var/lib/nova/instances)"
    assert "/var/lib/nova/instances" in inc["probable_cause"]
    assert "_base" in inc["remediation"] and "names no path" not in inc["remediation"]
    assert inc["first_seen"] == "2018-03-12T14:02:11.530+00:00"
    # the id is the one the guessed incident was opened with: same logs, same id
    (first_doc,) = [d for d in Engine([DiskFull()]).feed(evs[0]).incidents]
    assert inc["id"] == first_doc["id"] and first_doc["details"]["filesystem"] == "unknown"
    # and it stays the same incident through a snapshot between the two
    det = DiskFull()
    _incidents(evs[:1], Engine([det]))
    again = DiskFull()
    again.restore(json.loads(json.dumps(det.snapshot())))
    assert _incidents(evs[1:], Engine([again])) == [inc]


def test_a_path_record_does_not_take_over_a_guess_that_has_gone_quiet():
    evs = by_time(_reversed_pair("14:40:00.000"))
    got = sorted((i["details"]["filesystem"], i["status"], i["count"]) for i in _incidents(evs))
    assert got == [("/var/lib/nova/instances", "open", 1), ("unknown", "resolved", 1)]


def test_a_path_record_of_another_service_does_not_take_over_glances_assumed_store():
    incidents = _incidents(by_time([glance_media_full("ctl1")], [nova_path("16:21:00.000", host="ctl1")]))
    got = sorted((i["details"]["filesystem"], "filesystem_assumed" in i["details"]) for i in incidents)
    assert got == [("/var/lib/glance/images", True), ("/var/lib/nova/instances", False)]


def test_another_services_path_does_not_take_over_glances_store_through_a_shared_request():
    """All-in-one host: nova's pathless spawn failure joins glance's incident
    (the host's most recent); nova's record with the path then shares that
    request, but glance's store is still glance's."""
    nova = [nova_spawn("16:21:00.000", host="aio"), nova_path("16:21:00.100", host="aio")]
    incidents = _incidents(by_time([glance_media_full("aio")], nova))
    got = sorted((i["details"]["filesystem"], i["services"][0], i["count"]) for i in incidents)
    assert got == [("/var/lib/glance/images", "glance-api", 2), ("/var/lib/nova/instances", "nova-compute", 1)]


def test_glance_naming_its_store_replaces_the_assumed_default():
    image = "8a4c2f7e-1b3d-4e5f-a6b7-c8d9e0f1a2b3"
    store = ev(_t("16:20:00.412"), "ERROR", "glance_store._drivers.filesystem",
               f"{ENOSPC}: '/srv/glance/images/{image}'",
               host="ctl1", service="glance-api", req=GLANCE_REQ, resources={"image": [image]})
    (inc,) = _incidents(by_time([glance_media_full(), store]))
    assert inc["details"]["filesystem"] == "/srv/glance/images" and inc["count"] == 2
    assert "filesystem_assumed" not in inc["details"]
    assert inc["title"] == "Disk full on ctl1 (/srv/glance/images)"
    assert "default store directory" not in inc["summary"]


def test_glance_storage_full_is_the_default_glance_store():
    (inc,) = _incidents(by_time([glance_media_full(), glance_store_full()]))
    assert (inc["host"], inc["count"]) == ("ctl1", 2)
    assert inc["details"]["filesystem"] == "/var/lib/glance/images"
    assert inc["title"] == "Disk full on ctl1 (/var/lib/glance/images)"
    assert "default" in inc["details"]["filesystem_assumed"]
    assert "filesystem_store_datadir" in inc["details"]["filesystem_assumed"]
    assert "default [glance_store] filesystem_store_datadir" in inc["remediation"]
    assert "default store directory" in inc["summary"]


def test_snapshot_restore_between_the_pair_continues_the_same_incident():
    evs = by_time(nova_pair("cmp1"))
    (whole,) = _incidents(evs, Engine([DiskFull()]))
    first = DiskFull()
    _incidents(evs[:1], Engine([first]))
    second = DiskFull()
    second.restore(json.loads(json.dumps(first.snapshot())))
    (resumed,) = _incidents(evs[1:], Engine([second]))
    assert resumed == whole and resumed["count"] == 2


# --- error.type from ``: ExcClass: summary`` suffixes -------------------------
# These check the parser's extraction, so they parse real lines on purpose.
CTX = "[req-{0} c49d86f8a39148bb809d2da44811ca3b f19126d9035d4209b363386e8e267129 - default default]"


def _ctx(req: str) -> str:
    return CTX.format(req[4:])


def _one(msg: str, level: str = "ERROR", logger: str = "nova.compute.manager"):
    (parsed,) = parse_text(f"2017-09-04 10:00:00.000 2311 {level} {logger} {_ctx(NOVA_REQ)} {msg}\n")
    return parsed


BARE_CLASSES = [
    ("NoValidHost", "nova.scheduler.utils",
     "Failed to compute_task_build_instances: No valid host was found. There are not enough hosts available.: "
     "NoValidHost: No valid host was found. There are not enough hosts available.",
     "No valid host was found. There are not enough hosts available."),
    ("InvalidBDM", "nova.compute.manager",
     f"[instance: {INSTANCE}] Instance failed block device setup: InvalidBDM: Block Device Mapping is Invalid.",
     "Block Device Mapping is Invalid."),
    ("InvalidBDMVolume", "nova.compute.manager",
     f"[instance: {INSTANCE}] Instance failed block device setup: InvalidBDMVolume: Block Device Mapping is "
     "Invalid: failed to get volume 0e2f6a1c-5b4d-4e3f-9a8b-7c6d5e4f3a2b.",
     "Block Device Mapping is Invalid: failed to get volume 0e2f6a1c-5b4d-4e3f-9a8b-7c6d5e4f3a2b."),
    ("StorageFull", "glance.api.v2.image_data",
     "Image storage media is full: There is not enough disk space on the image storage media.: "
     "StorageFull: There is not enough disk space on the image storage media.",
     "There is not enough disk space on the image storage media."),
    ("GlanceConnectionFailed", "nova.image.glance",
     "Error contacting glance server 'http://10.0.0.5:9292' for 'data', done trying.: GlanceConnectionFailed: "
     "Connection to glance host http://10.0.0.5:9292 failed: Error finding address for http://10.0.0.5:9292",
     "Connection to glance host http://10.0.0.5:9292 failed: Error finding address for http://10.0.0.5:9292"),
    ("MaxRetriesExceeded", "nova.scheduler.utils",
     f"[instance: {INSTANCE}] Failed to compute_task_build_instances: Exceeded maximum number of retries. "
     f"Exhausted all hosts available for retrying build failures for instance {INSTANCE}.: MaxRetriesExceeded: "
     f"Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {INSTANCE}.",
     f"Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {INSTANCE}."),
    ("ImageNotAuthorized", "nova.compute.manager",
     f"[instance: {INSTANCE}] Build of instance {INSTANCE} aborted: Not authorized for image "
     "dcd85799-92f6-4294-91ec-48670a218651.: ImageNotAuthorized: Not authorized for image dcd85799-92f6-4294-91ec-48670a218651.",
     "Not authorized for image dcd85799-92f6-4294-91ec-48670a218651."),
    ("VolumeNotCreated", "nova.compute.manager",
     f"[instance: {INSTANCE}] Instance failed block device setup: VolumeNotCreated: Volume "
     "dd04f3d2-63cb-45f2-9a31-9ecc523bd40f did not finish being created even after we waited 189 seconds "
     "or 61 attempts. And its status is downloading.",
     "Volume dd04f3d2-63cb-45f2-9a31-9ecc523bd40f did not finish being created even after we waited 189 "
     "seconds or 61 attempts. And its status is downloading."),
    ("NoValidBackend", "cinder.scheduler.flows.create_volume",
     "Failed to run task cinder.scheduler.flows.create_volume.ScheduleCreateVolumeTask;volume:create: "
     "No valid backend was found. No weighed backends available: NoValidBackend: No valid backend was found. "
     "No weighed backends available",
     "No valid backend was found. No weighed backends available"),
]


@pytest.mark.parametrize("cls,logger,msg,summary", BARE_CLASSES, ids=[c[0] for c in BARE_CLASSES])
def test_bare_exception_class_suffix_gives_error_type(cls, logger, msg, summary):
    ev = _one(msg, logger=logger)
    assert (ev.error_type, ev.error_message) == (cls, summary)


PROSE = [
    "Failed: Some text",
    "Note: compute host cmp1 is disabled, skipping",
    "NOTE: the image cache manager is disabled",
    "Invalid: the request body could not be decoded",
    "Exceeded: 3 scheduling attempts",
    "Full: 100% of the pool is allocated",
    "Nova: periodic task skipped",
    "Periodic task _heal_instance_info_cache failed: Not enough space: 10 GB free",
    "Quota exceeded for cores: Requested 4, but already used 20 of 20 cores",
    "Unable to attach volume: Invalid input received: Invalid volume: Volume status must be available (HTTP 400)",
    "Task failed: No valid host: see scheduler log",
]


@pytest.mark.parametrize("msg", PROSE)
@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_prose_near_misses_give_no_error_type(msg, level):
    ev = _one(msg, level=level)
    assert (ev.error_type, ev.error_message) == (None, None)


def test_an_earlier_suffix_match_keeps_its_fields():
    """ERR_SUFFIX's match is kept: the bare-class pattern only fills a gap."""
    ev = _one("Failed to consume message from queue: ConnectionForced: (0, 0): (320) CONNECTION_FORCED"
              " - broker forced connection closure with reason 'shutdown': NoValidHost: x")
    assert ev.error_type == "ConnectionForced"
