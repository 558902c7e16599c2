"""Helpers for the tests that run shell commands the way a user would: templates, docs, scripts.

Every command runs with bash in a temporary directory, with the ``koosim`` of this test
environment first on PATH, with no KOOSIM_* setting of the developer's shell, in its own
process group (so whatever it starts in the background is killed with it), and bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN_DIR = Path(sys.executable).parent
"""Where this environment's ``koosim`` and ``python`` are: first on the PATH of every command."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any KOOSIM_* variable, this environment's bin first, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KOOSIM_")}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    output: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n{self.output[-6000:]}"


def run_bash(script: str, cwd: Path, env: dict[str, str], timeout: float, errexit: bool = True) -> Finished:
    """Run ``script`` with ``bash [-e]`` in ``cwd``; kill its whole process group when it ends.

    A background job the script starts (``koosim merchant … &``) holds the output pipe open, so
    the output goes to a file rather than a pipe, and the group is killed even when the script
    succeeded.
    """
    log = cwd / ".bash-output.log"
    options = ["-e"] if errexit else []
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", *options, "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text(errors="replace")
    log.unlink()
    if returncode == -1:
        output += f"\n[killed: still running after {timeout} s]"
    return Finished(returncode, output)
