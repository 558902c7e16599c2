"""The wheel installs and works where merchants work: a fresh environment, an empty directory.

The README tells users to build a wheel (``python -m build``) and install it (pip, pipx, uv).
This test does exactly that, offline: it builds the wheel from this checkout without build
isolation (hatchling comes from the ``test`` extra), installs it with ``--no-index --no-deps``
into a new venv that sees this environment's packages (``--system-site-packages``, plus a
``.pth`` naming this environment's site-packages when the tests run in a venv themselves: a
venv's "system" is the base interpreter; the dependencies come from here, nothing is
downloaded), and runs that venv's ``koosim verify``
in an empty directory, where only the data inside the wheel can supply the contracts and
scenarios.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from shell import clean_env

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("dist")
    build = (sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, ROOT)
    built = run(*build, cwd=outdir)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(outdir.glob("koogallery_simulator-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_the_contracts_and_scenarios(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "simulator/_data/contracts/v2/newInstance.request.json" in names
    assert "simulator/_data/scenarios/renewal.yaml" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "koosim = simulator.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.timeout(300)
def test_the_installed_wheel_verifies_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True, clear=True).create(environment)
    python = environment / "bin" / "python"
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    # Plain directory lines: sys.path gets them after the venv's own site-packages, and the
    # editable install's .pth files in them are not run, so the wheel is what gets imported.
    (Path(purelib.stdout.strip()) / "test-environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    # --ignore-installed: the test environment's own copy (seen through the .pth) must not make
    # pip call the wheel "already satisfied" (tox installs the package as a wheel, not editable)
    installed = run(
        python, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", wheel, cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    # The new venv's own copy wins over the editable install this test environment has.
    where = run(python, "-c", "import simulator; print(simulator.__file__)", cwd=empty)
    assert Path(where.stdout.strip()).is_relative_to(environment), where.stdout + where.stderr

    verified = run(environment / "bin" / "koosim", "verify", cwd=empty, timeout=180)
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-4000:]
    assert "0 failed" in verified.stdout
    assert "Traceback" not in verified.stdout + verified.stderr
    assert sorted(path.name for path in empty.iterdir()) == [".koosim"], "only the run history is written"
