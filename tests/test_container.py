"""The container image, checked without a docker engine (none runs here or in CI).

What needs an engine (build, verify inside, serve with a token) is scripts/docker-smoke.sh;
this file checks the Dockerfile and .dockerignore as text, and that the smoke script is valid
bash that skips cleanly when no engine answers (docs/docker.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from shell import clean_env

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scripts" / "docker-smoke.sh"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|^KOOSIM_", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            logical.append(pending)
            pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [Instruction(*(part.strip() for part in ([*line.split(None, 1), ""])[:2])) for line in logical]


def stages(steps: list[Instruction]) -> list[list[Instruction]]:
    split: list[list[Instruction]] = []
    for step in steps:
        if step.keyword.upper() == "FROM":
            split.append([])
        assert split, f"{step.keyword} before the first FROM"
        split[-1].append(step)
    return split


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(ROOT / "Dockerfile")


def test_every_stage_starts_from_a_pinned_python_3_11_or_later(dockerfile: list[Instruction]) -> None:
    bases = [step.arguments.split()[0] for step in dockerfile if step.keyword.upper() == "FROM"]
    assert len(bases) >= 2, "a multi-stage build: the wheel is built in a stage of its own"
    for base in bases:
        pinned = re.fullmatch(r"python:3\.(\d+)(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base)
        assert pinned, f"{base}: not a python:3.X-slim image pinned to a minor version"
        assert int(pinned.group(1)) >= 11, f"{base}: koosim needs Python 3.11+"


def test_the_runtime_stage_runs_koosim_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    runtime = stages(dockerfile)[-1]
    keywords = [step.keyword.upper() for step in runtime]
    assert any(step.keyword.upper() == "COPY" and "--from=" in step.arguments for step in runtime)
    assert keywords.count("ENTRYPOINT") == 1
    assert json.loads(runtime[keywords.index("ENTRYPOINT")].arguments) == ["koosim"]
    assert "CMD" in keywords, "a default command, so a bare docker run prints help"
    users = [step.arguments for step in runtime if step.keyword.upper() == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert last_user < keywords.index("ENTRYPOINT"), "USER is set before ENTRYPOINT"
    exposed = [step.arguments.split() for step in runtime if step.keyword.upper() == "EXPOSE"]
    assert ["8000"] in exposed


def test_no_secret_is_baked_into_the_image(dockerfile: list[Instruction]) -> None:
    for step in dockerfile:
        if step.keyword.upper() in {"ENV", "ARG", "LABEL"}:
            assigned = re.findall(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*=", step.arguments)
            names = assigned or step.arguments.split()[:1]
            leaking = [name for name in names if SECRET_NAME.search(name)]
            assert not leaking, f"{step.keyword} {step.arguments}: secrets are passed with -e at run time"
    text = (ROOT / "Dockerfile").read_text()
    assert "koosim-demo" not in text and "koosim.toml" not in text


def test_the_build_context_lets_in_only_what_the_dockerfile_copies(dockerfile: list[Instruction]) -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert rules[0] == "*", "everything is excluded first, then what the build needs let in"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied: set[str] = set()
    for step in dockerfile:
        if step.keyword.upper() == "COPY" and "--from=" not in step.arguments:
            copied.update(source.rstrip("/") for source in step.arguments.split()[:-1])
    assert copied == allowed
    for name in allowed:
        assert (ROOT / name).exists(), name
    for secret in (".git", "koosim.toml", ".koosim", ".venv", "tests", "dist"):
        assert not any(fnmatch.fnmatch(secret, pattern) for pattern in allowed), secret


def test_the_smoke_script_is_valid_bash() -> None:
    checked = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert SMOKE.stat().st_mode & 0o111, "executable"


@pytest.mark.parametrize("engine", ["no docker command", "no engine answers"])
def test_the_smoke_script_skips_cleanly_without_an_engine(engine: str, tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "docker-calls"
    if engine == "no engine answers":
        # A docker client whose engine does not answer, like this machine's: `docker info` fails.
        (fake_bin / "docker").write_text(
            f'#!/bin/sh\necho "$*" >> {calls}\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n'
        )
        (fake_bin / "docker").chmod(0o755)
    env = clean_env(PATH=f"{fake_bin}:/usr/bin:/bin")
    if engine == "no docker command" and any(
        (Path(directory) / "docker").exists() for directory in ("/usr/bin", "/bin")
    ):
        pytest.skip("a docker command lives in /usr/bin or /bin here")
    skipped = subprocess.run(
        ["bash", str(SMOKE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert skipped.stdout.startswith("docker-smoke: skipped: "), skipped.stdout
    if engine == "no engine answers":
        assert calls.read_text().split("\n")[:-1] == ["info"], "nothing but docker info was tried"
