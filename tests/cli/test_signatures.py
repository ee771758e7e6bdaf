"""``osloscope signatures list|test`` (pipeline/cli/signatures.py; ``rules`` is its old name)."""
from __future__ import annotations

import json
import tomllib

from support import FIXTURES, ROOT, osloscope, run_main

SIG_DIR = ROOT / "detectors" / "signatures"
SEEDS = FIXTURES / "seeds"


def test_signatures_list_table_and_json():
    r = osloscope("signatures", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "SEVERITY", "SEED"]
    n = len(list(SIG_DIR.glob("*.toml")))
    assert lines[-1] == f"{n} signature(s)"
    assert any(line.startswith("placement_not_configured ") and " S21 " in line for line in lines)
    r = osloscope("signatures", "list", "--format", "json")
    docs = json.loads(r.stdout)
    assert len(docs) == n and {"id", "patterns", "remediation"} <= set(docs[0])


def test_signatures_list_ends_with_the_count_per_service():
    expected: dict[str, int] = {}
    for path in SIG_DIR.glob("*.toml"):
        for service in tomllib.loads(path.read_text()).get("services") or ["any"]:
            expected[service] = expected.get(service, 0) + 1
    r = osloscope("signatures", "list")
    assert r.returncode == 0, r.stderr
    table = r.stdout.split("\nSERVICE ", 1)[1].splitlines()
    assert table[0].split() == ["SIGNATURES"]
    counts = {row.split()[0]: int(row.split()[1]) for row in table[1:-1]}
    assert counts == expected and counts["any"] > 0 and counts["nova-compute"] > 0
    assert list(counts)[-1] == "any"
    assert table[-1] == f"{len(list(SIG_DIR.glob('*.toml')))} signature(s)"


def test_signatures_test_prints_each_match_with_its_line_and_a_count_per_rule():
    r = osloscope("signatures", "test", SEEDS / "S09", SEEDS / "S23", SEEDS / "S04")
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "known_issue.httpd_bind_permission_denied" in out
    assert "(13)Permission denied: AH00072: make_sock: could not bind to address [::]:5000" in out
    assert "address=[::] port=5000" in out
    assert "Caught error: id" in out
    counts = dict(line.split() for line in out.split("MATCHES\n", 1)[1].splitlines()
                  if line.startswith("known_issue."))
    assert counts == {"known_issue.httpd_bind_permission_denied": "2",
                      "known_issue.glanceclient_attributeerror_id": "1"}


def test_signatures_test_selects_signatures(capsys):
    code, out, _ = run_main(capsys, "signatures", "test", SEEDS / "S09",
                            "--signature", "known_issue.glanceclient_attributeerror_id")
    assert code == 0 and "known_issue.glanceclient_attributeerror_id 0" in " ".join(out.split())
    assert "httpd" not in out.split("RULE")[0]
    code, out, _ = run_main(capsys, "signatures", "test", SEEDS / "S09", "--signature",
                            "httpd_bind_permission_denied")
    assert code == 1 and out.count("messages.log@") == 2


def test_the_old_names_still_work(capsys):
    """`rules` for `signatures` and `--rule` for `--signature`: old scripts keep running."""
    new = run_main(capsys, "signatures", "test", SEEDS / "S09", "--signature", "httpd_bind_permission_denied")
    old = run_main(capsys, "rules", "test", SEEDS / "S09", "--rule", "httpd_bind_permission_denied")
    assert old == new and new[0] == 1
    assert run_main(capsys, "rules", "list")[1] == run_main(capsys, "signatures", "list")[1]


def test_signatures_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = run_main(capsys, "signatures", "test", SEEDS / "S09", "--signature", "no_such_rule")
    assert code == 2 and "no signature no_such_rule" in err
    code, _, err = run_main(capsys, "signatures", "test", "/nonexistent/x.log")
    assert code == 2 and "no such file" in err
    (tmp_path / "x.toml").write_text('id = "y"\n')
    code, _, err = run_main(capsys, "signatures", "list", "--signatures", tmp_path)
    assert code == 2
    assert f"{tmp_path}/x.toml: id: 'y' must equal the file name 'x'" in err
