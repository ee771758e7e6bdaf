"""The signature library: every file valid, its examples and near-misses behave,
each seed case yields its incident, healthy logs none, the matcher's state round-trips
(the command line: tests/cli/test_signatures.py)."""
from __future__ import annotations

import datetime as dt
import json
import re
import tomllib

import pytest

from support import engine as support_engine, CORPUS, FIXTURES, ROOT, SAMPLES, parse_text
from detectors.known_issues import KnownIssues
from pipeline.signatures import SignatureError, load_signatures, schema_errors, semantic_errors

SIG_DIR = ROOT / "detectors" / "signatures"
SEEDS = FIXTURES / "seeds"
SCHEMA = json.loads((ROOT / "schemas" / "signature.schema.json").read_text())
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def _service_for(doc: dict) -> str | None:
    """A service name the signature applies to (globs made concrete), for parsing examples."""
    first = (doc.get("services") or [None])[0]
    return first.replace("*", "x").replace("?", "x") if first else None


def _events(text: str, doc: dict):
    return parse_text(text, host="h1", service=_service_for(doc))


# --- the library, file by file: all failures reported together ------------------
def test_every_signature_file_is_valid_and_its_examples_match_and_near_misses_do_not():
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(SCHEMA)
    files = sorted(SIG_DIR.glob("*.toml"))
    assert len(files) >= 30
    failures: list[str] = []
    docs = {}
    for path in files:
        name = f"detectors/signatures/{path.name}"
        try:
            doc = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            failures.append(f"{name}: (TOML): {exc}")
            continue
        for err in validator.iter_errors(doc):
            failures.append(f"{name}: {'.'.join(map(str, err.absolute_path)) or '(top level)'}: {err.message}")
        # the runtime validator must agree with jsonschema
        if bool(schema_errors(doc, SCHEMA)) != bool(list(validator.iter_errors(doc))):
            failures.append(f"{name}: built-in validator disagrees with jsonschema: {schema_errors(doc, SCHEMA)}")
        failures.extend(f"{name}: {e}" for e in semantic_errors(doc, path.stem))
        docs[path] = doc
    for path, doc in docs.items():
        name = f"detectors/signatures/{path.name}"
        try:
            lib = KnownIssues([doc])
        except Exception as exc:          # noqa: BLE001 - report, do not stop
            failures.append(f"{name}: cannot compile: {exc}")
            continue
        sig = lib.signatures[doc["id"]]
        for field in ("examples", "near_misses", "recovery_examples"):
            for i, text in enumerate(doc.get(field, [])):
                events = _events(text, doc)
                if len(events) != 1 or events[0].kind == "unparsed":
                    failures.append(f"{name}: {field}[{i}]: parses into {len(events)} record(s) "
                                    f"({[e.kind for e in events]}), expected one log record")
                    continue
                ev = events[0]
                if field == "recovery_examples":
                    hit = sig.recovered(ev, ev.text()) is not None and bool(lib.candidates(ev)[1])
                else:
                    hit = bool(lib.match(ev))
                if field == "near_misses" and hit:
                    failures.append(f"{name}: {field}[{i}]: matches but must not: {text[:120]!r}")
                elif field != "near_misses" and not hit:
                    failures.append(f"{name}: {field}[{i}]: does not match: {text[:120]!r}")
                elif field == "examples" and not doc.get("persist_seconds"):
                    for inc in KnownIssues([doc]).feed(ev):
                        for part in ("title", "probable_cause", "remediation"):
                            left = PLACEHOLDER.findall(inc[part])
                            if left:
                                failures.append(f"{name}: {part}: {left} not filled by examples[{i}]")
    assert not failures, f"{len(failures)} signature problem(s):\n  " + "\n  ".join(failures)


def test_the_loader_reports_every_problem_of_every_file_with_file_and_field(tmp_path):
    good = (SIG_DIR / "messaging_timeout.toml").read_text()
    (tmp_path / "messaging_timeout.toml").write_text(good)
    (tmp_path / "bad_one.toml").write_text(good.replace('id = "messaging_timeout"', 'id = "bad_one"')
                                           .replace('severity = "error"', 'severity = "fatal"')
                                           .replace("'''\\bMessagingTimeout\\b'''", "'''(unclosed'''"))
    (tmp_path / "Bad-Two.toml").write_text('id = "Bad-Two"\ntitle = "x"\nsurprise = 1\n')
    (tmp_path / "broken.toml").write_text('id = "broken\n')
    with pytest.raises(SignatureError) as info:
        load_signatures([tmp_path])
    errors = info.value.errors
    text = "\n".join(errors)
    assert f"{tmp_path}/bad_one.toml: severity: 'fatal' is not one of" in text
    assert f"{tmp_path}/bad_one.toml: patterns[2]: invalid regex" in text
    assert f"{tmp_path}/Bad-Two.toml: id: 'Bad-Two' does not match" in text
    assert f"{tmp_path}/Bad-Two.toml: surprise: unknown field" in text
    assert f"{tmp_path}/Bad-Two.toml: patterns: required field missing" in text
    assert f"{tmp_path}/broken.toml: (TOML):" in text
    assert not any("messaging_timeout.toml" in e for e in errors)
    # one signature explaining an unknown one is an error too
    (tmp_path / "bad_one.toml").unlink()
    (tmp_path / "Bad-Two.toml").unlink()
    (tmp_path / "broken.toml").unlink()
    (tmp_path / "messaging_timeout.toml").write_text(good.replace('dedupe_key = ["host", "service"]',
                                                                  'dedupe_key = ["host", "nope"]\nexplains = ["ghost"]'))
    with pytest.raises(SignatureError) as info:
        load_signatures([tmp_path])
    assert {e.split(": ")[1] for e in info.value.errors} == {"dedupe_key[1]", "explains[0]"}


def test_bundled_library_loads_and_ids_are_rule_safe():
    sigs = load_signatures()
    assert [s["id"] for s in sigs] == sorted(p.stem for p in SIG_DIR.glob("*.toml"))
    for s in sigs:
        assert KnownIssues([s]).signatures[s["id"]].rule.count(".") == 1
    seeds = {s.get("seed") for s in sigs}
    assert {"S00", "S01", "S02", "S03", "S05", "S07", "S08", "S09", "S11", "S12", "S14", "S15",
            "S17", "S21", "S22", "S23"} <= seeds


# --- golden: each seed case's real lines -> exactly its incident --------------------
def _known_issues(*paths):
    from pipeline.local.analyze import analyze
    from pipeline.sources.files import discover

    result = analyze(discover([str(p) for p in paths]), engine=support_engine())
    return [i for i in result.incidents if i["type"] == "known_issue"], result.incidents


@pytest.mark.parametrize("case,sig,host,needle", [
    ("S01", "compute_host_not_mapped_to_cell", "compute", "nova-manage cell_v2 discover_hosts --verbose"),
    ("S05", "evacuate_without_shared_storage", "compute", "--on-shared-storage"),
    ("S08", "python_module_import_error", "controller", "chmod 644"),
    ("S09", "httpd_bind_permission_denied", "controller0", "semanage port"),
    ("S11", "libvirt_ide_bus_unsupported", "compute", "hw_disk_bus=virtio"),
    ("S12", "qemu_cirrus_vga_unavailable", "compute", "hw_video_model"),
    ("S20", "placement_not_configured", "compute", "[placement]"),        # seed case S21
    ("S22", "libvirt_domain_not_found", "compute", "virsh define"),
    ("S23", "glanceclient_attributeerror_id", "controller", "python-glanceclient"),
])
def test_seed_case_yields_exactly_its_known_issue(case, sig, host, needle, incident_validator):
    found, everything = _known_issues(SEEDS / case)
    assert [i["rule"] for i in found] == [f"known_issue.{sig}"]
    (inc,) = found
    assert inc["host"] == host and inc["status"] == "open"
    assert needle in inc["remediation"]
    assert inc["details"]["signature"] == sig
    assert "{" not in inc["title"] + inc["probable_cause"] + inc["remediation"]
    for doc in everything:
        assert not [e.message for e in incident_validator.iter_errors(doc)]


def test_seed_incidents_carry_the_extracted_fields_and_resources():
    (s01,), _ = _known_issues(SEEDS / "S01")
    assert s01["resources"]["instance"] == ["620cd801-8849-481a-80e0-2980b6c8dba6"]
    assert s01["details"]["seed"] == "S01"
    (s08,), _ = _known_issues(SEEDS / "S08")
    assert s08["details"]["fields"] == {"module": "simplegeneric", "app": "glance-registry-keystone",
                                        "config": "/usr/share/glance/glance-registry-dist-paste.ini"}
    assert s08["title"] == "glance-registry on controller cannot import Python module simplegeneric"
    (s09,), _ = _known_issues(SEEDS / "S09")
    assert s09["count"] == 2 and s09["details"]["fields"]["port"] == "5000"   # [::] and 0.0.0.0: one cause
    (s23,), _ = _known_issues(SEEDS / "S23")
    assert s23["request_ids"] == ["req-e359221b-6be3-4ac2-bb55-5310f5bb0bb2"]


@pytest.mark.parametrize("case", ["S04", "S10", "S16"])
def test_cases_owned_by_other_detectors_get_no_duplicate_known_issue(case):
    found, everything = _known_issues(SEEDS / case)
    assert found == [] and everything       # disk_full / auth_failure fire, the library stays quiet


def test_s20_volume_not_created_stays_retry_exhaustion_only_s21_is_added():
    found, everything = _known_issues(SEEDS / "S20")
    assert [i["rule"] for i in found] == ["known_issue.placement_not_configured"]
    assert sum(i["rule"] == "retry_exhausted.volume_not_created" for i in everything) == 1


# --- healthy traffic --------------------------------------------------------------
def test_the_healthy_corpus_yields_no_known_issue():
    """The RabbitMQ restart (6 s, reconnects), SQL retries forever, a 401, neutron's
    `Caught error` in nova-api, live migration refused for shared storage: no known issue."""
    found, _ = _known_issues(*sorted(CORPUS.glob("*.log")))
    assert found == []


def test_elastic_recheck_samples_yield_only_their_production_signatures():
    """The 2013 events are samples of failures, not healthy traffic: the MySQL lock-wait timeout
    and the LVM volume in use are production problems with a signature; PKI token verify,
    the neutron/PostgreSQL races and SubnetInUse have none (see the signature README)."""
    found, _ = _known_issues(CORPUS / "elastic-recheck_logstash_oslofmt_events_2013.jsonl")
    assert {i["rule"] for i in found} == {"known_issue.db_lock_wait_timeout",
                                          "known_issue.lvm_volume_not_deactivated"}


def test_demo_sample_yields_only_the_seed_issues_it_contains():
    """deploy/samples embeds the real S20 excerpt (with S21's placement warning) and S23's
    nova-api record; nothing else in it is a known issue."""
    found, _ = _known_issues(SAMPLES)
    assert sorted(i["rule"] for i in found) == ["known_issue.glanceclient_attributeerror_id",
                                                "known_issue.placement_not_configured"]


# --- behaviour on synthetic streams built from the real templates -------------------
T0 = dt.datetime(2019, 3, 12, 10, 15, 0)
REQ = "[req-1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9 9942eb4321644336a0c7383d9f1c2bed a7d812868cb74f1a978035530f55f1d0 - default default]"


def _line(t: dt.datetime, pid: int, level: str, logger: str, ctx: str, msg: str) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {pid} {level} {logger} {ctx} {msg}\n"


def _library() -> KnownIssues:
    return KnownIssues(load_signatures())


def _run(events, lib: KnownIssues, advance_to: float | None = None) -> dict:
    latest: dict = {}
    for ev in events:
        for doc in lib.feed(ev):
            latest[doc["id"]] = doc
    if advance_to is not None:
        for doc in lib.advance(advance_to):
            latest[doc["id"]] = doc
    return latest


def _parse(lines: list[tuple[str, str, str]]):
    """[(service, host, text)] -> events in timestamp order."""
    evs = []
    for service, host, text in lines:
        evs.extend(parse_text(text, host=host, service=service))
    return sorted(evs, key=lambda e: e.ts or 0)


NOVALID = "Failed to compute_task_build_instances: No valid host was found. There are not enough hosts available."


def test_a_specific_scheduler_signature_absorbs_the_generic_novalidhost_of_the_same_request():
    events = _parse([
        ("nova-scheduler", "ctl1", _line(T0, 10, "INFO", "nova.filters", REQ, "Filter DiskFilter returned 0 hosts")),
        ("nova-conductor", "ctl1", _line(T0 + dt.timedelta(seconds=1), 11, "WARNING", "nova.scheduler.utils", REQ, NOVALID)),
    ])
    (inc,) = _run(events, _library()).values()
    assert inc["rule"] == "known_issue.disk_filter_no_hosts" and inc["count"] == 1
    assert inc["details"]["explains"] == ["no_valid_host"]
    assert any("No valid host" in e["message"] for e in inc["evidence"])
    # another request without a scheduler explanation is the generic incident
    other = REQ.replace("req-1f2e3d4c", "req-2f2e3d4c")
    events += _parse([("nova-conductor", "ctl1", _line(T0 + dt.timedelta(seconds=5), 11, "WARNING",
                                                       "nova.scheduler.utils", other, NOVALID))])
    rules = sorted(d["rule"] for d in _run(events, _library()).values())
    assert rules == ["known_issue.disk_filter_no_hosts", "known_issue.no_valid_host"]


def _amqp(t, pid=28139, msg="AMQP server on 10.12.27.29:5672 is unreachable: [Errno 111] ECONNREFUSED. "
                            "Trying again in 30 seconds.", level="ERROR"):
    return _line(t, pid, level, "oslo.messaging._drivers.impl_rabbit", "[-]", msg)


def test_an_amqp_loop_fires_only_when_it_does_not_recover_and_resolves_on_reconnect():
    loop = [("nova-conductor", "ctl1", _amqp(T0 + dt.timedelta(seconds=30 * i))) for i in range(4)]
    assert _run(_parse(loop), _library()) == {}                        # 90 s: a broker restart
    loop += [("nova-conductor", "ctl1", _amqp(T0 + dt.timedelta(seconds=30 * i))) for i in range(4, 6)]
    (inc,) = _run(_parse(loop), _library()).values()                   # 150 s without reconnect
    assert (inc["rule"], inc["severity"], inc["status"]) == ("known_issue.amqp_unreachable_persistent", "critical", "open")
    assert inc["count"] == 6 and inc["first_seen"].startswith("2019-03-12T10:15:00")
    assert inc["details"]["fields"]["broker"] == "10.12.27.29:5672"
    assert "10.12.27.29:5672" in inc["title"] and "nova-conductor on ctl1" in inc["probable_cause"]
    assert inc["details"]["component"] == "rabbitmq"
    loop.append(("nova-conductor", "ctl1", _line(T0 + dt.timedelta(seconds=200), 28139, "INFO",
                 "oslo.messaging._drivers.impl_rabbit", "[-]", "Connected to AMQP server on 10.12.27.29:5672")))
    (inc,) = _run(_parse(loop), _library()).values()
    assert inc["status"] == "resolved"


def _fleet_run(lines) -> dict:
    """The registry's engine (fleet-wide signatures routed by cause), latest doc per id."""
    from detectors import registry
    eng = registry.engine("all", None, load_signatures(), windows=False)
    latest: dict = {}
    for ev in _parse(lines):
        for doc in eng.feed(ev).incidents:
            latest[doc["id"]] = doc
    return latest


def test_a_broker_outage_is_one_incident_for_every_host_it_hits():
    """One broker, three services on three hosts: one incident listing them all
    (the blast radius). Each (host, service) must fail for persist_seconds by
    itself, and the incident resolves only when every one of them reconnected."""
    who = [("nova-conductor", "ctl1", 28139), ("nova-compute", "cmp1", 3101), ("nova-compute", "cmp2", 3102)]
    lines = [(svc, host, _amqp(T0 + dt.timedelta(seconds=30 * i + k), pid=pid))
             for i in range(6) for k, (svc, host, pid) in enumerate(who)]
    (inc,) = _fleet_run(lines).values()
    assert inc["status"] == "open" and inc["count"] == 18
    assert sorted(inc["hosts"]) == ["cmp1", "cmp2", "ctl1"]
    assert sorted(inc["services"]) == ["nova-compute", "nova-conductor"]
    assert inc["title"] == "Services cannot reach RabbitMQ at 10.12.27.29:5672 and do not recover"
    assert "3 host(s)" in inc["summary"] and "likely cause in: rabbitmq" in inc["summary"]

    def up(svc, host, pid, sec):
        return (svc, host, _line(T0 + dt.timedelta(seconds=sec), pid, "INFO",
                                 "oslo.messaging._drivers.impl_rabbit", "[-]",
                                 "Reconnected to AMQP server on 10.12.27.29:5672 via [amqp] client"))
    lines += [up(*who[0], 200), up(*who[1], 201)]
    (inc,) = _fleet_run(lines).values()
    assert inc["status"] == "open" and inc["details"]["still_failing"] == ["cmp2|nova-compute"]
    lines.append(up(*who[2], 260))
    (inc,) = _fleet_run(lines).values()
    assert inc["status"] == "resolved" and inc["details"]["still_failing"] == []

    # one host alone, 90 s: a blip on that host, not a persistent outage -- even while
    # the others' lines would make the broker key last long enough together
    blips = [(svc, host, _amqp(T0 + dt.timedelta(seconds=30 * i + 60 * k), pid=pid))
             for k, (svc, host, pid) in enumerate(who) for i in range(4)]
    assert _fleet_run(blips) == {}


def test_a_recovery_line_clears_the_pending_loop():
    lines = [("nova-conductor", "ctl1", _amqp(T0 + dt.timedelta(seconds=30 * i))) for i in range(3)]
    lines.append(("nova-conductor", "ctl1", _line(T0 + dt.timedelta(seconds=95), 28139, "INFO",
                  "oslo.messaging._drivers.impl_rabbit", "[-]", "Connected to AMQP server on 10.12.27.29:5672")))
    lines += [("nova-conductor", "ctl1", _amqp(T0 + dt.timedelta(seconds=100 + 30 * i))) for i in range(4)]
    assert _run(_parse(lines), _library()) == {}      # 90 s, reconnect, 90 s: two short outages


def test_one_incident_per_dedupe_key_with_count_and_a_new_one_after_the_quiet_period():
    def vif(t, host, port):
        return ("nova-compute", host, _line(t, 2711, "WARNING", "nova.virt.libvirt.driver", REQ,
                f"[instance: 3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b] Timeout waiting for "
                f"[('network-vif-plugged', u'{port}')] for instance with vm_state building and "
                f"task_state spawning.: Timeout: 300 seconds"))
    ports = ["6f1d2c3b-4a5e-4f60-9b7c-8d9e0f1a2b3c", "7f1d2c3b-4a5e-4f60-9b7c-8d9e0f1a2b3c"]
    lines = [vif(T0, "cmp1", ports[0]), vif(T0 + dt.timedelta(minutes=5), "cmp1", ports[1]),
             vif(T0 + dt.timedelta(minutes=6), "cmp2", ports[0])]
    docs = _run(_parse(lines), _library())
    assert sorted((d["host"], d["count"]) for d in docs.values()) == [("cmp1", 2), ("cmp2", 1)]
    cmp1 = next(d for d in docs.values() if d["host"] == "cmp1")
    assert cmp1["resources"]["port"] == ports
    lines.append(vif(T0 + dt.timedelta(minutes=50), "cmp1", ports[0]))
    docs = _run(_parse(lines), _library())
    cmp1 = sorted((d for d in docs.values() if d["host"] == "cmp1"), key=lambda d: d["first_seen"])
    assert [(d["status"], d["count"]) for d in cmp1] == [("resolved", 2), ("open", 1)]
    assert cmp1[0]["id"] != cmp1[1]["id"]


def test_levels_the_signature_excludes_are_skipped():
    debug = _line(T0, 5, "DEBUG", "nova.compute.manager", REQ,
                  "MessagingTimeout: Timed out waiting for a reply to message ID 7c4e9a1f0b2d4e6a8c3f5b7d9e1a2c4e")
    assert _run(parse_text(debug, service="nova-compute"), _library()) == {}
    assert len(_run(parse_text(debug.replace(" DEBUG ", " ERROR "), service="nova-compute"), _library())) == 1


def test_snapshot_and_restore_round_trip_mid_stream():
    lines = [("nova-conductor", "ctl1", _amqp(T0 + dt.timedelta(seconds=30 * i))) for i in range(6)]
    lines += [
        ("nova-scheduler", "ctl1", _line(T0 + dt.timedelta(seconds=40), 10, "INFO", "nova.filters", REQ,
                                         "Filter DiskFilter returned 0 hosts")),
        ("nova-conductor", "ctl1", _line(T0 + dt.timedelta(seconds=41), 11, "WARNING", "nova.scheduler.utils", REQ, NOVALID)),
    ]
    lines += [("nova-compute", "cmp1", _line(T0 + dt.timedelta(seconds=50 + i), 4411, "ERROR", "nova.compute.manager",
                                             "[-]", "MessagingTimeout: Timed out waiting for a reply to message "
                                             f"ID 0e5b1f3c7a9d4b2e8f6a4c2e0b8d6f4{i}")) for i in range(3)]
    events = _parse(lines)
    whole = _run(events, _library())
    assert len(whole) == 3
    for cut in range(1, len(events)):
        first = _library()
        part1 = _run(events[:cut], first)
        state = json.loads(json.dumps(first.snapshot()))          # JSON-safe
        second = _library()
        second.restore(state)
        assert second.snapshot() == state
        part2 = _run(events[cut:], second)
        assert {**part1, **part2} == whole, cut


def test_restore_drops_state_of_retired_signatures():
    lib = _library()
    _run(_parse([("nova-compute", "cmp1", _line(T0, 4411, "ERROR", "nova.compute.manager", "[-]",
                  "MessagingTimeout: Timed out waiting for a reply to message ID 0e5b1f3c7a9d4b2e8f6a4c2e0b8d6f4a"))]), lib)
    state = lib.snapshot()
    assert list(state["books"]) == ["messaging_timeout"]
    fewer = KnownIssues([s for s in load_signatures() if s["id"] != "messaging_timeout"])
    fewer.restore(state)
    assert fewer.snapshot()["books"] == {}


def test_the_prefilter_rejects_healthy_records_before_any_signature():
    lib = _library()
    ev = parse_text(_line(T0, 5, "INFO", "nova.compute.manager", REQ, "Took 12.10 seconds to build instance."))[0]
    assert lib.candidates(ev)[1] == []
    ev = parse_text(_amqp(T0))[0]
    assert [s.id for s in lib.candidates(ev)[1]] == ["amqp_unreachable_persistent"]


# --- diagnoses never claim more than the evidence (issue 15) ----------------------
DIAGNOSES = FIXTURES / "diagnoses"
_FIXED = {"host", "service", "logger"}


def test_every_placeholder_of_title_cause_and_fix_is_given_by_every_pattern():
    """A text must never print a literal {field}: each placeholder is {host}/{service}/{logger}
    or a named group of every pattern (ip_address_pool_exhausted had a floating-pool pattern
    without the {network} its title names)."""
    problems = []
    for path in sorted(SIG_DIR.glob("*.toml")):
        doc = tomllib.loads(path.read_text("utf-8"))
        used = {n for part in ("title", "probable_cause", "remediation")
                for n in PLACEHOLDER.findall(doc[part])}
        for i, pattern in enumerate(doc["patterns"]):
            missing = {n[1:-1] for n in used} - _FIXED - set(re.compile(pattern).groupindex)
            if missing:
                problems.append(f"{path.name}: patterns[{i}] gives no {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_configurable_timeouts_are_never_stated_as_the_value_in_use():
    """'within rpc_response_timeout (60 s)' claims the setting; the record does not show it."""
    claims = []
    for path in sorted(SIG_DIR.glob("*.toml")):
        doc = tomllib.loads(path.read_text("utf-8"))
        for part in ("title", "probable_cause", "remediation"):
            for m in re.finditer(r"\((\d+(?:\.\d+)?) s\)", " ".join(doc[part].split())):
                claims.append(f"{path.name}: {part}: {m.group(0)}")
    assert not claims, claims


def test_nova_network_records_get_the_nova_network_remedy_never_neutrons():
    found, everything = _known_issues(DIAGNOSES / "nova-network-floating-pool")
    (inc,) = found
    assert inc["rule"] == "known_issue.nova_network_floating_ip_pool_exhausted"
    assert inc["title"] == "nova-network cannot allocate floating IPs: Zero floating ips available"
    assert inc["count"] == 2 and inc["hosts"] == ["network-1"]     # the dispatcher's and the RPC reply's record
    assert "nova-manage floating" in inc["remediation"]
    assert not re.search(r"openstack (?:ip availability|subnet|port|network)", inc["remediation"])
    # nova-compute's side is retry_exhausted.network_setup's, worded for nova-network as well
    (setup,) = [i for i in everything if i["type"] == "retry_exhausted"]
    assert setup["rule"] == "retry_exhausted.network_setup" and "nova-manage floating" in setup["remediation"]


@pytest.mark.parametrize("line,sig", [
    # Juno-Mitaka nova-api wording ('ips'): missed before, matched now
    ("2015-03-12 14:05:02.110 4470 INFO nova.api.openstack.wsgi [req-9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d None] "
     "HTTP exception thrown: No more floating ips in pool public.", "floating_ip_pool_exhausted"),
    ("2016-09-14 08:51:30.420 9301 INFO nova.api.openstack.wsgi [req-2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a - - -] "
     "HTTP exception thrown: No more floating IPs available.", "floating_ip_pool_exhausted"),
    # neutron's own exhaustion of an external network stays with the neutron remedy
    ("2019-07-03 16:22:41.093 27 INFO neutron.pecan_wsgi.hooks.translation [req-8f7e6d5c-4b3a-4291-8f0e-1d2c3b4a5f6e "
     "- - - - -] POST failed (client error): No more IP addresses available on network "
     "0a9b8c7d-6e5f-4a3b-8c1d-0e9f8a7b6c5d.", "ip_address_pool_exhausted"),
])
def test_floating_pool_records_name_no_network_they_do_not_have(line, sig):
    service = "neutron-server" if "neutron." in line else "nova-api"
    (ev,) = parse_text(line + "\n", host="ctl01", service=service)
    lib = KnownIssues(load_signatures())
    (inc,) = lib.feed(ev)
    assert inc["rule"] == f"known_issue.{sig}"
    assert not PLACEHOLDER.search(inc["title"] + inc["probable_cause"] + inc["remediation"])
    if sig == "floating_ip_pool_exhausted":
        # the record does not say which backend answered: both remedies, each labelled
        assert "With neutron:" in inc["remediation"] and "With nova-network" in inc["remediation"]
