"""The native redaction (pipeline/rust/src/redact.rs): exactly what
pipeline.redact gives, on the corpus and on generated ASCII text full of
keys, separators and values; and the native parser masks events as the
Python parser does."""
from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from detectors.hints import hints_of
from pipeline import accel, redact
from pipeline.extract import Source
from pipeline.parser import Parser
from tests.support import CORPUS, FIXTURES, SAMPLES, oslo_line, require_shared
from tests.test_native_parser import _doc

_native = accel._native


def test_the_native_redaction_is_built():
    assert _native is not None and hasattr(_native, "redact_text") and hasattr(_native, "needs_redaction"), \
        "pipeline._native (with redact_text/needs_redaction) is not built"


def _check(text: str) -> None:
    assert _native.needs_redaction(text) == redact.needs_redaction(text), text
    assert _native.redact_text(text) == redact.redact_text(text), text


def _ascii_files():
    require_shared()
    out = []
    for path in (sorted(CORPUS.glob("*.log")) + sorted(FIXTURES.glob("**/*.log")) + sorted(SAMPLES.glob("**/*.log"))):
        data = path.read_bytes()
        if data.isascii():
            out.append((path, data.decode("ascii")))
    return out


def test_every_corpus_line_and_record():
    files = _ascii_files()
    assert len(files) >= 10
    texts = set()
    for path, text in files:
        texts.update(text.splitlines())
        texts.add(text)
        p = Parser("UTC", redact=False, native=False)
        src = Source("h1", None, str(path))
        evs = list(p.feed_lines(text.encode().splitlines(keepends=True), src, 0)) + p.flush()
        for ev in evs:
            for name in redact.FIELDS:
                value = getattr(ev, name)
                if isinstance(value, str) and value.isascii():
                    texts.add(value)
            texts.add(ev.text())
    hits = 0
    for t in texts:
        _check(t)
        hits += redact.redact_text(t) != t
    assert hits >= 10          # the corpus does hold secrets


def test_edge_cases():
    for t in ["", "pass", "password=>***x", "password=>", "password=> ''", "password=>'***", "password=>***",
              "password= ***", "--os-password ***x", "--password=", "--password  x", "--os-password\tx",
              "token=" + "a" * 15, "token=" + "a" * 16, "token:'" + "A" * 20 + "'", "x-auth-token : \"" + "b" * 30,
              "secret_key=1", "secret_key_x=1", "apikey:v", "api_key =v", "credentials\x1c=\x1fv", "credential's=v",
              "mysql://u:p@h", "mysql://u:p", "a://u:p@h,v:w@h2 x", "://:p@h", "://u:@h", ",u:p@h", "x://u:p:q@h",
              "PASSWORD=Hunter2", "PassWd: 'x'", "pwd=\"a b\"", "password = \"***\"", "password=>>x",
              "password'=x", "password\"  :  'x", "password==x", "--os-password=--password=x", "---password x",
              "password=a;password=b", "token=" + "=" * 20, "https://user:p@ss@host/", "http://a:b@c'd:e@f"]:
        _check(t)


KEYS = ["pass", "password", "passwd", "pwd", "secret", "secret_key", "api_key", "apikey", "credential",
        "credentials", "x-auth-token", "x-subject-token", "x-service-token", "auth_token", "admin_token",
        "token", "--os-password", "--password", "Password", "X-Auth-Token", "TOKEN", "---password",
        "://", "mysql+pymysql://nova:", "rabbit://u:", ",", "@", ":"]
SEPS = ["=", "=>", ":", " = ", " : ", "'", '"', "': '", '": "', "' => '", " ", "\t", "\x1c", "\x1d", "\x1e",
        "\x1f", "==", "=>>", "=> ", "", "\x0b", "'='", "@"]
VALUES = ["***", "***x", "****", "**", "*", "x", "hunter2", "S3cr3t!", "'", '"', ",", ";", "{", "}", "[", "]",
          "&", ")", "(", ">", "gAAAAABk1x2y3z4abcdefghijklmnop", "7202fb95db2449268229c3bc8acb014d",
          "abc+/=def-ghi_jkl0123456789", "A" * 16, "a" * 15, "pw@host/db", "u:p@h", "user:pa:ss@h,u2:p2@h2",
          "", " ", "\n"]

_token = st.one_of(st.sampled_from(KEYS), st.sampled_from(SEPS), st.sampled_from(VALUES),
                   st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=6))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_token, max_size=30))
def test_hypothesis_built_from_keys_separators_and_values(parts):
    _check("".join(parts))


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=200))
def test_hypothesis_random_ascii(text):
    _check(text)


def test_seeded_random_structured_texts():
    rng = random.Random(11)
    pool = KEYS + SEPS + VALUES
    for _ in range(30000):
        _check("".join(rng.choice(pool) for _ in range(rng.randrange(1, 25))))


def test_non_ascii_is_refused():
    with pytest.raises(ValueError):
        _native.redact_text("password=ü")


def test_native_parser_masks_as_python_does():
    rng = random.Random(5)
    t0 = dt.datetime(2024, 3, 1, 12, 0, 0)
    lines = []
    secret_bits = ["password=hunter2", "'password': 'x y'", "X-Auth-Token: 7202fb95db2449268229c3bc8acb014d",
                   "mysql+pymysql://nova:N0vaPw@db/nova", "--os-password Adm1n", "password=>***x",
                   "admin_token=" + "f" * 32, "rabbit://a:b@h1,c:d@h2/", "secret_key: 'k'", "token revoked",
                   "Authorization failed for user admin password=x", "ENOSPC on password=y disk space",
                   "retry password=z", "no secret here", "apikey=abc; credentials: def"]
    for n in range(3000):
        t = t0 + dt.timedelta(milliseconds=37 * n)
        msg = " ".join(rng.choice(secret_bits) for _ in range(rng.randrange(1, 5)))
        level = rng.choice(["DEBUG", "INFO", "ERROR", "WARNING"])
        lines.append(oslo_line(t, 1234, level, "keystone.auth", "[req-1 - - - - -]", msg))
        if level == "ERROR" and rng.random() < 0.3:
            lines.append(oslo_line(t, 1234, level, "keystone.auth", "", "Traceback (most recent call last):"))
            lines.append(oslo_line(t, 1234, level, "keystone.auth", "", '  File "x.py", line 3, in f'))
            lines.append(oslo_line(t, 1234, level, "keystone.auth", "",
                                   "ValueError: " + rng.choice(secret_bits)))
    data = [ln.encode() for ln in lines]
    src = Source("h1", None, "/var/log/keystone/keystone.log")

    def run(native):
        p = Parser("UTC", native=native)
        out = []
        for i in range(0, len(data), 64):
            out.extend(p.feed_lines(data[i:i + 64], src, None))
        return out + p.flush()

    nat, py = run(True), run(False)
    assert [_doc(e) for e in nat] == [_doc(e) for e in py]
    assert sum("***" in (e.message or "") for e in py) > 1000
    hinted = 0
    for ev in nat:
        assert ev.hints is None or ev.hints == hints_of(ev.text())
        hinted += ev.hints is not None or ev.level == "DEBUG"   # DEBUG records get no bits
    assert hinted == len(nat)        # redacted events keep their (recomputed) bits


def test_native_parser_tests_still_pass():
    import subprocess
    import sys
    from tests.support import ROOT
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        "tests/test_native_parser.py"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
