"""osloscope installed from its wheel, outside the source tree, works as from
the checkout: the schemas (signature validation), the signatures, the
detector texts, the Kibana objects and the service templates are package
data, not files next to the source."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from support import ROOT, SAMPLES



@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with only the wheel installed (its dependencies come
    from this interpreter's site-packages through a .pth line)."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp / "dist"), str(ROOT)],
                           capture_output=True, text=True, cwd=tmp)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("osloscope-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = _py(env_dir, "import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp, check=True).stdout.strip()
    # the dependencies (orjson, faust, kafka, elasticsearch) of the test interpreter, but not the
    # editable osloscope: a plain directory on sys.path processes no .pth files of its own
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", site,
                              str(wheel)], capture_output=True, text=True, cwd=tmp)
    assert install.returncode == 0, install.stderr[-2000:]
    return env_dir


def _clean_env() -> dict:
    """No PYTHONPATH or settings of the test run leak into the installed copy."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OSLOSCOPE_"))}


def _py(env_dir: Path, code: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=_clean_env(), check=check)


def _run(env_dir: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "python"), "-c",
                           "import sys; from pipeline.cli import main; sys.exit(main())", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=_clean_env())


def test_the_code_comes_from_the_wheel_not_the_checkout(installed, tmp_path):
    r = _run(installed, "config", "check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where = _py(installed, "import pipeline, detectors; print(pipeline.__file__); print(detectors.__file__)",
                tmp_path, check=True).stdout.split()
    assert all(str(installed) in w and str(ROOT) not in w for w in where), where


def test_package_data_is_installed_and_read(installed, tmp_path):
    code = ("from pipeline import resources; from pipeline.signatures import bundled;"
            "from detectors import texts;"
            "print(len(bundled()), sorted(resources.schema('signature')['required'])[:2],"
            " resources.path('kibana', 'osloscope.ndjson').stat().st_size > 0,"
            " resources.path('services', 'kafka-pom.xml').is_file(),"
            " bool(texts.load('disk_full')['probable_cause']))")
    r = _py(installed, code, tmp_path)
    assert r.returncode == 0, r.stderr
    n, *rest = r.stdout.split(" ", 1)
    assert int(n) == len(list((ROOT / "detectors" / "signatures").glob("*.toml")))
    assert rest[0].strip().endswith("True True True"), r.stdout


def test_analyze_on_the_samples_finds_what_the_checkout_finds(installed, tmp_path):
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLES, samples)
    r = _run(installed, "analyze", samples, "--format", "jsonl", "--dead-letter", "-", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    got = sorted((d["id"], d["type"], d["count"]) for d in map(json.loads, r.stdout.splitlines()))
    here = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", samples, "--format", "jsonl",
                           "--dead-letter", "-"], capture_output=True, text=True, cwd=tmp_path)
    want = sorted((d["id"], d["type"], d["count"]) for d in map(json.loads, here.stdout.splitlines()))
    assert got == want and len(got) >= 5


def test_a_missing_schema_is_an_error_not_a_skipped_check(installed, tmp_path):
    site = Path(_py(installed, "import pipeline, os; print(os.path.dirname(pipeline.__file__))", tmp_path,
                    check=True).stdout.strip())
    schema = site / "_data" / "schemas" / "signature.schema.json"
    saved = schema.read_bytes()
    schema.unlink()
    try:
        r = _run(installed, "analyze", SAMPLES, "--dead-letter", "-", cwd=tmp_path)
    finally:
        schema.write_bytes(saved)
    assert r.returncode != 0 and "signature.schema.json" in r.stderr
