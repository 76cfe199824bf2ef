"""A wheel built from the checkout, installed into a fresh venv outside it, works and
finds its data (runbooks, templates)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_carries_packages_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "recorder/cli.py" in names
    assert "probes/http.py" in names
    assert "recorder/py.typed" in names and "probes/py.typed" in names
    assert any(n.startswith("recorder/runbooks/") and n.endswith(".yml") for n in names)
    assert any(n.startswith("recorder/templates/") for n in names)
    assert "recorder/postmortem-standard.md" in names
    # The docker lab's files (hatch_build.py), never the tokens a checkout's lab wrote.
    docker = {n for n in names if n.startswith("recorder/lab/docker_files/")}
    for rel in ("compose.yml", "lab/Dockerfile", "lab/entrypoint.sh", "recorder.yml"):
        assert f"recorder/lab/docker_files/{rel}" in docker, rel
    assert not any("/secrets/" in n for n in docker)
    assert not any(n.startswith("tests/") for n in names)
    # the compiled access-log counter (setup installs a compiler), without its source
    assert any(n.startswith("probes/_accesslog.") and n.endswith(".so") for n in names)
    assert "probes/_accesslog.c" not in names
    assert "-cp3" in wheel.name and not wheel.name.endswith("-none-any.whl")


def test_without_a_compiler_the_wheel_is_pure_python(tmp_path: Path) -> None:
    """The counter is optional: a failed compile warns and leaves the Python reader."""
    import os

    env = {**os.environ, "CC": "no-such-cc", "LDSHARED": "no-such-cc -shared"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v"]
        + ["-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the compiled log counter was not built" in done.stdout + done.stderr
    (built,) = tmp_path.glob("*.whl")
    assert built.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(built).namelist()
    assert not any(n.startswith("probes/_accesslog") and n.endswith(".so") for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    recorder = venv / "bin" / "recorder"
    out = subprocess.run(
        [str(recorder), "--help"], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert "incidents" in out.stdout
    code = (
        "from recorder.resources import data_path; import recorder;"
        "r = data_path('runbooks'); t = data_path('templates');"
        "assert str(r).startswith(recorder.__path__[0]), r;"
        "print(len(list(r.glob('*.yml'))), len(list(t.iterdir())))"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    runbooks, templates = map(int, found.stdout.split())
    assert runbooks >= 10 and templates >= 1
    standard = subprocess.run(
        [str(recorder), "lint", "--standard"], capture_output=True, text=True, cwd=tmp_path
    )
    assert standard.returncode == 0, standard.stderr
    assert standard.stdout == (ROOT / "docs" / "postmortem-standard.md").read_text()
    # The docker lab from the installed package: its files, and a wheel of this copy for
    # the lab image (the build context `recorder lab up --backend docker` stages).
    code = (
        "import sys, zipfile; from pathlib import Path; from recorder.lab import docker as d;"
        "assert d.checkout_root() is None; out = Path(sys.argv[1]);"
        "compose = d.stage_files(out); whl = d.repack_installed_wheel(out / 'src');"
        "names = zipfile.ZipFile(whl).namelist();"
        "assert 'recorder/cli.py' in names and 'probes/http.py' in names, names;"
        "print(compose.relative_to(out), (compose.parent / 'lab' / 'app.py').is_file())"
    )
    staged = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, str(tmp_path / "stage")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert staged.returncode == 0, staged.stderr[-2000:]
    assert staged.stdout.split() == ["docker/compose.yml", "True"]
    reader = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from probes.accesslog import READER; print(READER)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert reader.stdout.strip() == "compiled"
