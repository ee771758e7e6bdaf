"""The detectors: the one list every path builds them from.

``osloscope analyze`` and ``watch`` run every detector in one engine; the
worker splits them by the key their state needs (../shared/DESIGN.md, "Data
flow"): ``host`` detectors run in the parse stage, next to the per-file order
of the raw topic; ``request`` detectors run in the correlate stage on events
keyed by request id. Tests and benchmarks build them here too, so every path
runs the same detectors with the same parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .auth_failures import AuthFailures, AuthFailuresConfig, AuthRateRouter, FleetAuthRates
from .base import Detector
from .disk_full import DiskFull, DiskFullConfig
from .engine import Engine
from .base import Router
from .new_error import NewErrorAggregator, NewErrorConfig, TemplateLearner
from .known_issues import FleetKnownIssues, KnownIssueRouter, KnownIssues, KnownIssuesConfig, split_signatures
from .request_stalled import RequestStalled, RequestStalledConfig
from .request_windows import RequestWindows
from .retry_exhaustion import RetryExhaustion, RetryExhaustionConfig
from .service_silent import ServiceSilent, ServiceSilentConfig

SCOPES = ("all", "host", "request")

# Where each scope's state lives in the worker (../shared/DESIGN.md, "Data flow"):
#   host     the parse stage, next to each host's records (the raw topic is keyed by host);
#   request  the correlate stage, keyed by request id;
#   fleet    the correlate stage too, keyed by a fleet-wide key (a shared cause, an error
#            template): a Router in the parse stage routes the records there.
# engine("host") holds host detectors and every fleet detector's router; engine("request")
# the request and fleet detectors; engine("all") (analyze, watch) all of them.


@dataclass(frozen=True)
class DetectorConfig:
    """Every detector's parameters (each detector reads its own part)."""
    retry_exhaustion: RetryExhaustionConfig = RetryExhaustionConfig()
    auth_failures: AuthFailuresConfig = AuthFailuresConfig()
    disk_full: DiskFullConfig = DiskFullConfig()
    known_issues: KnownIssuesConfig = KnownIssuesConfig()
    request_stalled: RequestStalledConfig = RequestStalledConfig()
    service_silent: ServiceSilentConfig = ServiceSilentConfig()
    new_error: NewErrorConfig = NewErrorConfig()
    request_window_gap: float = 120.0       # a request's window closes after this much quiet
    request_window_max: float = 3600.0      # and at the latest this long after it opened


@dataclass(frozen=True)
class Entry:
    type: str            # the incident type it emits
    scope: str           # "host", "request" or "fleet": the key its state lives under
    fires_on: str        # one line for the CLI's description ("" for the fleet half of a type)
    make: Callable[[DetectorConfig, Sequence[dict]], Detector]
    router: Callable[[DetectorConfig, Sequence[dict]], Router] | None = None   # fleet scope


ENTRIES: tuple[Entry, ...] = (
    Entry("retry_exhausted", "request", "a retry budget that ran out (volume creation, scheduling, DB, "
          "glance, keystoneauth, network setup, ...)", lambda c, s: RetryExhaustion(c.retry_exhaustion)),
    Entry("request_stalled", "request", "an API accepted work that no worker service ever picked up",
          lambda c, s: RequestStalled(c.request_stalled)),
    Entry("auth_failure", "host", "bursts of rejected logins per source address and user; database, "
          "RabbitMQ, image and service credentials rejected",
          lambda c, s: AuthFailures(c.auth_failures, rates=False)),
    # the rates per source address and user: fleet-wide keys (a load balancer spreads one
    # client's failures over every keystone)
    Entry("auth_failure", "fleet", "", lambda c, s: FleetAuthRates(c.auth_failures),
          router=lambda c, s: AuthRateRouter(c.auth_failures)),
    Entry("disk_full", "host", "a filesystem out of space (ENOSPC, qemu-img write errors, glance "
          "store full)", lambda c, s: DiskFull(c.disk_full)),
    Entry("service_silent", "host", "a service that logged steadily and fell silent while the fleet "
          "keeps logging", lambda c, s: ServiceSilent(c.service_silent)),
    Entry("known_issue", "host", "a record that matches a signature of the library "
          "(detectors/signatures/, one TOML file per signature; `osloscope signatures list`)",
          lambda c, s: KnownIssues(split_signatures(s)[0], c.known_issues)),
    # signatures of a cause the whole fleet shares (dedupe_key without host): one incident
    # for every host it hits
    Entry("known_issue", "fleet", "", lambda c, s: FleetKnownIssues(s, c.known_issues),
          router=lambda c, s: KnownIssueRouter(s)),
    Entry("new_error", "fleet", "an ERROR or CRITICAL record no signature explains, of a template its "
          "service had not logged while learning (24 h and 200 records per host and service; Drain3): "
          "one incident per new template across the fleet",
          lambda c, s: NewErrorAggregator(c.new_error),
          router=lambda c, s: TemplateLearner(c.new_error, explained_by=_explained_by(s))),
)


def _explained_by(signatures: Sequence[dict]):
    """Whether a signature of the library matches a record (new_error leaves those alone)."""
    library = KnownIssues(signatures)
    return lambda ev: bool(library.match(ev))


def build(scope: str = "all", config: DetectorConfig | None = None,
          signatures: Sequence[dict] = ()) -> list[Detector]:
    """The detectors of ``scope``, request-scoped first."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    config = config or DetectorConfig()
    wanted = {"all": ("request", "host", "fleet"), "host": ("host",), "request": ("request", "fleet")}[scope]
    return [e.make(config, signatures) for kind in wanted for e in ENTRIES if e.scope == kind]


def routers(scope: str = "all", config: DetectorConfig | None = None,
            signatures: Sequence[dict] = ()) -> list[Router]:
    """The fleet detectors' routers: where the host's records are (host, all)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    if scope == "request":
        return []
    config = config or DetectorConfig()
    return [e.router(config, signatures) for e in ENTRIES if e.scope == "fleet" and e.router]


def engine(scope: str = "all", config: DetectorConfig | None = None, signatures: Sequence[dict] = (),
           *, windows: bool | None = None) -> Engine:
    """An engine with the detectors of ``scope``; request windows (and root
    causes) wherever request-scoped detectors run, unless ``windows`` says."""
    if windows is None:
        windows = scope != "host"
    config = config or DetectorConfig()
    return Engine(build(scope, config, signatures), routers=routers(scope, config, signatures),
                  windows=RequestWindows(gap=config.request_window_gap,
                                         max_length=config.request_window_max) if windows else None)
