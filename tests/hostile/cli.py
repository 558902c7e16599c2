"""Run ``koosim`` in a subprocess the way a user does, with a hard timeout and its peak memory.

A hang must fail the test, not hang CI: every run is killed after ``hard_timeout`` seconds.
The child is reaped with ``os.wait4``, which gives *its own* resource usage (peak RSS), not
the sum over every child the test process ever had.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HARD_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Finished:
    """How one ``koosim`` process ended."""

    args: tuple[str, ...]
    returncode: int | None
    """None: killed at the hard timeout."""
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def flat(self) -> str:
        """The output with rich's panel borders and line wrapping undone, for phrase matching."""
        return " ".join(self.output.replace("│", " ").split())

    def __str__(self) -> str:
        head = f"koosim {' '.join(self.args)} -> {self.returncode} in {self.seconds:.1f} s"
        return f"{head}\n{self.output[-6000:]}"


def koosim_env(tmp: Path, **variables: str) -> dict[str, str]:
    """The environment of a run: ours (conftest.py has unset every KOOSIM_*), a wide terminal,
    the given variables."""
    return dict(os.environ) | {"COLUMNS": "400", "KOOSIM_DB": str(tmp / "koosim.db")} | variables


def run_koosim(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    hard_timeout: float = HARD_TIMEOUT_S,
) -> Finished:
    """``python -m simulator *args`` in ``cwd``; killed after ``hard_timeout`` seconds."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "simulator", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        killer = threading.Timer(hard_timeout, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    killed = process.returncode == -9 and seconds >= hard_timeout
    return Finished(
        tuple(args),
        None if killed else process.returncode,
        out_path.read_text(encoding="utf-8", errors="replace"),
        err_path.read_text(encoding="utf-8", errors="replace"),
        seconds,
        usage.ru_maxrss / 1024,  # Linux: kilobytes
    )


def run_id(output: str) -> str:
    """The run id ``koosim verify`` prints in ``koosim show <id>``."""
    found = re.search(r"koosim show (\S+)", output)
    assert found, output
    return found.group(1)
