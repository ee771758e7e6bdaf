"""disk_full: ENOSPC on a host's filesystem.

One incident per (host, filesystem) while it keeps happening: count and
last_seen grow; after ``quiet_period`` without ENOSPC it resolves, and a
recurrence opens a new incident. Seed case S04 (qemu-img convert into
instances/_base running out of space), cinder image conversion, glance
filesystem store.

A record that names no path ("Instance failed to spawn: IOError: [Errno 28]
No space left on device" after glance's "Error writing to /var/lib/nova/
instances/_base/...") is the same failure seen one frame up: it joins the
open incident of its host (one sharing its request, instance or volume
first, else the most recently updated), and opens one for an ``unknown``
filesystem only when its host has none open. glance-api names no path for
a full filesystem store (StorageFull): it gets glance's default store
directory, marked as an assumption. When the record with the path comes
second (files merged by time, or a service that logs the failure before
the cause), that guessed incident takes the path's filesystem: it keeps its
id, and its title, cause and remediation name the real filesystem.

Capacity *planning* messages (cinder's CapacityFilter "Insufficient free
space for volume creation", nova's DiskFilter) are not ENOSPC and do not fire.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from . import texts
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

TEXTS = texts.load("disk_full")        # detectors/texts/disk_full.toml
PROBABLE_CAUSE = TEXTS["probable_cause"]
GLANCE_STORE = "/var/lib/glance/images"     # [glance_store] filesystem_store_datadir default


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


@dataclass(frozen=True)
class DiskFullConfig:
    quiet_period: float = 1800.0     # resolves after this many seconds without ENOSPC


class DiskFull(Detector):
    name = "disk_full"

    def __init__(self, config: DiskFullConfig = DiskFullConfig()) -> None:
        self.config = config
        self.quiet_period = config.quiet_period
        super().__init__()

    def feed(self, ev: Event) -> list[dict]:
        if ev.kind == "unparsed" or ev.level == "DEBUG":
            return []      # ENOSPC surfaces at WARNING and above
        text = ev.text()
        # substring checks first: far cheaper than the alternation on long text
        if not ("space" in text or "Errno 28" in text or "ENOSPC" in text or "while writing" in text
                or "StorageFull" in text or "storage media" in text):
            return []
        if not TRIGGER.search(text):
            return []
        path = path_of(text)
        host = ev.host or "unknown"
        out: list[dict] = []
        ts = ev.ts or 0.0
        resources: dict[str, list] = {"path": [path] if path else []}
        resources["volume"] = _VOLUME.findall(text)[:5]
        resources["image"] = _IMAGE.findall(text)[:5]
        assumed = False          # filesystem is glance's default store, not read from the log
        if path:
            fs = filesystem_of(path)
            if self.book.get((host, fs), ts) is None:
                self._adopt_guess(ev, host, fs, ts, resources["volume"], out)
        else:
            glance = ev.service == "glance-api"
            joined = self._open_on_host(ev, host, ts, resources["volume"], glance)
            if joined is not None:
                fs = joined.key[1]
            elif glance:
                fs, assumed = GLANCE_STORE, True
            else:
                fs = "unknown"
        key = (host, fs)

        def new() -> Incident:
            return Incident(
                rule="disk_full.enospc", type="disk_full", key=key, window_start=ts,
                severity="critical", title=f"Disk full on {host} ({fs})",
                probable_cause=PROBABLE_CAUSE.format(host=host, fs=fs),
                remediation=remediation_of(host, fs, assumed),
            )

        inc = self.book.touch(key, ts, new, out)
        inc.details["filesystem"] = fs
        if path and inc.details.get("filesystem_assumed"):
            # a record of the same filesystem names its path: no longer a guess
            del inc.details["filesystem_assumed"]
            inc.remediation = remediation_of(host, fs, False)
        elif assumed and inc.count == 0:
            inc.details["filesystem_assumed"] = TEXTS["glance_store_note"].format(fs=fs).strip()
        inc.add(ev, resources=resources)
        hit = inc.resources["instance"] + inc.resources["volume"]
        inc.summary = (
            f"{inc.count} ENOSPC error(s) on {host} in {fs}"
            + (" (glance's default store directory; the log names no path)"
               if inc.details.get("filesystem_assumed") else "")
            + f" from {inc.first_seen} to {inc.last_seen}"
            + (f"; affected: {', '.join(hit[:5])}" if hit else "")
        )
        out.append(inc.to_doc())
        return out

    def _adopt_guess(self, ev: Event, host: str, fs: str, ts: float, volumes: list[str],
                     out: list[dict]) -> None:
        """A record naming ``fs`` on ``host``, where no incident for ``fs`` is
        open: an open incident of that host whose filesystem was a guess
        (``unknown``, or glance's assumed default store) is this one seen
        earlier without its path; it becomes the incident of ``fs``."""
        glance = ev.service == "glance-api"
        guess = self._open_on_host(ev, host, ts, volumes, glance, guessed_only=True)
        if guess is None:
            return
        self.book.rekey(guess.key, (host, fs), out)
        guess.details["filesystem"] = fs
        guess.details.pop("filesystem_assumed", None)
        guess.title = f"Disk full on {host} ({fs})"
        guess.probable_cause = PROBABLE_CAUSE.format(host=host, fs=fs)
        guess.remediation = remediation_of(host, fs, False)

    def _open_on_host(self, ev: Event, host: str, ts: float, volumes: list[str],
                      glance: bool, guessed_only: bool = False) -> Incident | None:
        """The open incident of ``host`` a record without a path belongs to:
        one sharing its request, instance or volume; else (glance-api: one
        glance-api is part of) the most recently updated; None if none is open
        within the quiet period. ``guessed_only``: only incidents whose
        filesystem the log did not name."""
        requests = {r for r in (ev.request_id, ev.global_request_id) if r}
        if ev.resources and "request" in ev.resources:
            requests.update(ev.resources["request"])
        things = set(volumes)
        if ev.instance_id:
            things.add(ev.instance_id)
        if ev.resources:
            things.update(ev.resources.get("instance", ()))
            things.update(ev.resources.get("volume", ()))
        best = best_rank = None
        for inc in self.book.open.values():
            if inc.key[0] != host or ts - inc.last_ts > self.quiet_period:
                continue
            assumed = bool(inc.details.get("filesystem_assumed"))
            if guessed_only and inc.key[1] != "unknown" and not assumed:
                continue
            shares = bool(requests.intersection(inc.request_ids)) or bool(
                things.intersection(inc.resources["instance"])
                or things.intersection(inc.resources["volume"]))
            if glance and not shares and "glance-api" not in inc.services:
                continue
            if guessed_only and assumed and not glance:
                # glance's store is a guess only glance can correct: another service's
                # path is not its path, even when that service's pathless records joined it
                continue
            rank = (shares, inc.last_ts)
            if best_rank is None or rank >= best_rank:   # ties: the later touched
                best, best_rank = inc, rank
        return best


def remediation_of(host: str, fs: str, assumed: bool) -> str:
    if fs == "unknown":
        return TEXTS["remediation_unknown"].format(host=host)
    text = TEXTS["remediation_by_filesystem"].get(fs, TEXTS["remediation"]).format(host=host, fs=fs)
    return TEXTS["glance_store_note"].format(fs=fs) + text if assumed else text
