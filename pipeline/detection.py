"""Which detectors run where: the one place that assembles them.

Embedded mode (``analyze``, ``watch``) runs every detector in one engine.
The worker splits them by the key their state needs (../shared/DESIGN.md,
"Data flow"): ``host`` detectors run in the parse stage, next to the
per-file order of the raw topic (ENOSPC, auth bursts, known-issue
signatures, silent services); ``request`` detectors run in the correlate
stage on events keyed by request id (retry counting across hosts, request
windows, accepted-but-never-processed requests).

Settings come in as plain numbers so this stays usable without a settings
object; ``for_settings`` reads them from one.
"""
from __future__ import annotations

from detectors.absence import RequestStalled, ServiceSilent
from detectors.auth_failures import AuthFailures
from detectors.base import Detector
from detectors.disk_full import DiskFull
from detectors.known_issues import KnownIssues
from detectors.retry_exhaustion import RetryExhaustion

SCOPES = ("all", "host", "request")


_signatures: list[dict] | None = None


def signatures() -> list[dict]:
    """The bundled known-issue signatures, loaded and validated once per process."""
    global _signatures
    if _signatures is None:
        from pipeline.signatures import load_signatures
        _signatures = load_signatures()
    return _signatures


def build(scope: str = "all", *, auth_threshold: int = 10, auth_window: float = 300.0) -> list[Detector]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    host: list[Detector] = [AuthFailures(threshold=auth_threshold, window=auth_window), DiskFull(),
                            ServiceSilent(), KnownIssues(signatures())]
    request: list[Detector] = [RetryExhaustion(), RequestStalled()]
    if scope == "host":
        return host
    if scope == "request":
        return request
    return request + host


def for_settings(settings, scope: str = "all") -> list[Detector]:
    d = settings.detectors
    return build(scope, auth_threshold=d.auth_threshold, auth_window=d.auth_window)
