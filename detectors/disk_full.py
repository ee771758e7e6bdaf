"""disk_full: ENOSPC on a host's filesystem.

One incident per (host, filesystem) while it keeps happening: count and
last_seen grow; after ``quiet_period`` without ENOSPC it resolves, and a
recurrence opens a new incident. Seed case S04 (qemu-img convert into
instances/_base running out of space), cinder image conversion, glance
filesystem store.

Capacity *planning* messages (cinder's CapacityFilter "Insufficient free
space for volume creation", nova's DiskFilter) are not ENOSPC and do not fire.
"""
from __future__ import annotations

import posixpath
import re

from .base import Detector
from .incident import Incident
from .model import UUID, Event

TRIGGER = re.compile(
    r"No space left on device|\[Errno 28\]|\bENOSPC\b"
    r"|error while writing (?:sector|at byte)"
    r"|Insufficient free space on \S+ for image conversion"
    r"|There is no space on \S+ to convert image"
    r"|Image storage media is full|\bStorageFull\b"
    r"|not enough disk space on the image storage media"
    r"|no enough disk space left on the image storage media"
)

# One of these is in every TRIGGER match (tested inline in DiskFull.feed).
KEYWORDS = ("space", "Errno 28", "ENOSPC", "while writing", "StorageFull", "storage media")

_PATH_PATTERNS = (
    re.compile(r"Insufficient free space on (/\S+?)\.? for image conversion"),
    re.compile(r"There is no space on (/\S+?) to convert image"),
    re.compile(r"Error writing to (/\S+?):"),
    re.compile(r"\[Errno 28\] No space left on device: u?'(/[^']+)'"),
    # qemu-img convert ... SRC DEST: the destination is what filled up.
    re.compile(r"Command: (?:\S*/)?qemu-img convert .*? (/\S+)\s*$", re.M),
)
_ANY_PATH = re.compile(r"(/(?:var|srv|tmp|data|mnt|opt|home|export)/[\w.\-/]+)")

# Data roots that are usually their own filesystem on OpenStack hosts.
KNOWN_ROOTS = (
    "/var/lib/nova/instances", "/var/lib/cinder", "/var/lib/glance/images",
    "/var/lib/glance", "/var/lib/mysql", "/var/lib/rabbitmq", "/var/log",
    "/var/tmp", "/tmp", "/var/lib/docker", "/var/lib/libvirt",
)

_VOLUME = re.compile(r"\b[Vv]olume[ _-](?:id[: ]+)?(" + UUID + ")")
_IMAGE = re.compile(r"\b[Ii]mage (" + UUID + ")")

PROBABLE_CAUSE = (
    "The filesystem behind {fs} on {host} is full (ENOSPC). On compute hosts "
    "this is usually the image cache in instances/_base (qemu-img converts "
    "the downloaded image to raw there, which needs the image's full virtual "
    "size); on cinder hosts the image_conversion_dir; on glance the "
    "filesystem store. Builds and uploads fail until space is freed."
)
REMEDIATION = {
    "/var/lib/nova/instances": (
        "On {host}: `df -h /var/lib/nova/instances` and `du -sh /var/lib/nova/instances/_base`; "
        "remove unused cached base images (nova's image cache manager: [image_cache] "
        "remove_unused_base_images=True, remove_unused_original_minimum_age_seconds), delete "
        "orphaned instance directories, or grow the filesystem. Then rebuild the failed instances."
    ),
    "/var/lib/cinder": (
        "On {host}: `df -h` on cinder's [DEFAULT] image_conversion_dir (default "
        "/var/lib/cinder/conversion); point it at a larger filesystem or free space, "
        "and retry the volume create from image."
    ),
    "/var/lib/glance/images": (
        "On {host}: free space or grow glance's [glance_store] filesystem_store_datadir; "
        "delete unused images (`openstack image list --status killed`), consider a "
        "ceph/swift store; then retry the upload."
    ),
}
REMEDIATION_DEFAULT = (
    "On {host}: `df -h {fs}` and `du -xsh {fs}/* | sort -h`; free space (rotate or "
    "compress logs, remove stale files) or grow the filesystem, then retry the failed "
    "operations listed in the evidence."
)


def filesystem_of(path: str | None) -> str:
    if not path:
        return "unknown"
    for root in KNOWN_ROOTS:
        if path == root or path.startswith(root + "/"):
            return "/var/lib/glance/images" if root == "/var/lib/glance" else root
    return posixpath.dirname(path.rstrip("/")) or "/"


def path_of(text: str) -> str | None:
    for pat in _PATH_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1).rstrip("'\",.")
    m = _ANY_PATH.search(text)
    return m.group(1).rstrip("'\",.") if m else None


class DiskFull(Detector):
    name = "disk_full"
    quiet_period = 1800.0   # resolves after 30 minutes without ENOSPC

    def feed(self, ev: Event) -> list[dict]:
        if ev.kind == "unparsed" or ev.level == "DEBUG":
            return []      # ENOSPC surfaces at WARNING and above
        text = ev.text()
        # substring checks first: far cheaper than the alternation on long text
        if not ("space" in text or "Errno 28" in text or "ENOSPC" in text or "while writing" in text
                or "StorageFull" in text or "storage media" in text) or not TRIGGER.search(text):
            return []
        path = path_of(text)
        fs = filesystem_of(path)
        host = ev.host or "unknown"
        out: list[dict] = []
        key = (host, fs)
        ts = ev.ts or 0.0

        def new() -> Incident:
            remediation = REMEDIATION.get(fs, REMEDIATION_DEFAULT).format(host=host, fs=fs)
            return Incident(
                rule="disk_full.enospc", type="disk_full", key=key, window_start=ts,
                severity="critical", title=f"Disk full on {host} ({fs})",
                probable_cause=PROBABLE_CAUSE.format(host=host, fs=fs),
                remediation=remediation,
            )

        inc = self.book.touch(key, ts, new, out)
        resources: dict[str, list] = {"path": [path] if path else []}
        resources["volume"] = _VOLUME.findall(text)[:5]
        resources["image"] = _IMAGE.findall(text)[:5]
        inc.add(ev, resources=resources)
        inc.details["filesystem"] = fs
        hit = inc.resources["instance"] + inc.resources["volume"]
        inc.summary = (
            f"{inc.count} ENOSPC error(s) on {host} in {fs} from {inc.first_seen} to "
            f"{inc.last_seen}" + (f"; affected: {', '.join(hit[:5])}" if hit else "")
        )
        out.append(inc.to_doc())
        return out
