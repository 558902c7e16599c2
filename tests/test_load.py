"""``koosim load``, run as a subprocess: Locust's gevent monkey-patching must never reach pytest.

Every run is short (a few seconds, a handful of users), sends traffic only to 127.0.0.1, is
bounded by a timeout and killed if it outlives it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from simulator.reference import PRODUCE_PATH
from simulator.serving import BackgroundServer

pytestmark = pytest.mark.skipif(find_spec("locust") is None, reason="needs Locust: the [load] extra")

RUN_TIMEOUT = 60
"""No koosim process of this file may live longer, whatever happens."""
DUPLICATES = re.compile(r"(\d+) orders with more than one instanceId \(of (\d+) orders\)")
ACTIVITIES = (
    "newInstance",
    "newInstance resend",
    "newInstance concurrent copies",
    "refreshInstance RENEWAL",
    "queryInstance",
)


def koosim_env(**extra: str) -> dict[str, str]:
    """Our environment (conftest.py has unset every KOOSIM_*), plus ``extra``."""
    return dict(os.environ) | {"PYTHONUNBUFFERED": "1", "COLUMNS": "120"} | extra


def koosim(*args: str) -> list[str]:
    return [sys.executable, "-m", "simulator", *args]


def run_load(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``koosim load ARGS`` to completion (killed by subprocess.run if it outlives RUN_TIMEOUT)."""
    return subprocess.run(
        koosim("load", *args),
        cwd=tmp_path,
        env=koosim_env(**env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def assert_report(stdout: str) -> tuple[int, int]:
    """The summary is complete; returns (orders with more than one instanceId, orders)."""
    assert re.search(r"activity\s+.*requests.*failures.*p50.*p95.*p99", stdout), stdout
    for activity in ACTIVITIES:
        assert activity in stdout, stdout
    assert re.search(r"error rate: \d+\.\d\d% \(\d+ of \d+ requests failed", stdout), stdout
    match = DUPLICATES.search(stdout)
    assert match, stdout
    return int(match[1]), int(match[2])


def test_a_short_run_against_the_reference_merchant(tmp_path: Path) -> None:
    done = run_load(tmp_path, "--users", "5", "--spawn-rate", "5", "--run-time", "5s")
    assert done.returncode == 0, done.stdout + done.stderr
    duplicates, orders = assert_report(done.stdout)
    assert duplicates == 0 and orders > 0
    assert "0 orders with more than one instanceId" in done.stdout
    assert "the bundled reference merchant" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


class CheckThenInsertMerchant:
    """newInstance looks the order line up, provisions for a moment, then inserts, unguarded.

    One copy at a time it is idempotent; copies that arrive together each create an instance.
    It checks no signature: only what load exposes is under test.
    """

    def __init__(self, provisioning: float = 0.05) -> None:
        self.provisioning = provisioning
        self.lines: dict[tuple[str, str], str] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        fields = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
        answer: dict[str, Any] = {"resultCode": "000000", "resultMsg": "success"}
        if fields.get("activity") == "newInstance":
            line = (fields["orderId"], fields["orderLineId"])
            if line not in self.lines:
                time.sleep(self.provisioning)
                self.lines[line] = f"inst-{uuid.uuid4().hex}"
            answer["instanceId"] = self.lines[line]
        elif fields.get("activity") == "queryInstance":
            answer["info"] = [{"instanceId": i} for i in fields["instanceId"].split(",")]
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def test_load_exposes_a_check_then_insert_race(tmp_path: Path) -> None:
    with BackgroundServer(CheckThenInsertMerchant()) as server:
        done = run_load(
            tmp_path,
            *(
                "--url",
                server.base_url + PRODUCE_PATH,
                "--users",
                "5",
                "--spawn-rate",
                "5",
                "--run-time",
                "4s",
            ),
            KOOSIM_ACCESS_KEY="koosim-load-test-key",
        )
    assert done.returncode == 1, done.stdout + done.stderr
    duplicates, _ = assert_report(done.stdout)
    assert duplicates > 0
    assert "Traceback" not in done.stderr, done.stderr


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Popen objects registered here are killed at the end of the test, whatever happened."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_one_master_and_one_worker_on_this_machine(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    master = subprocess.Popen(
        koosim(
            "load",
            *("--users", "4", "--spawn-rate", "4", "--run-time", "4s"),
            *("--master", "--master-bind-host", "127.0.0.1", "--master-port", "0", "--expect-workers", "1"),
        ),
        cwd=tmp_path,
        env=koosim_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(master)
    master_out: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(master.stdout, master_out), daemon=True)
    reader.start()
    seen: list[str] = []
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        try:
            seen.append(master_out.get(timeout=1))
        except queue.Empty:
            assert master.poll() is None, "".join(seen) + master.stderr.read()
            continue
        if match := re.search(r"master listening on port (\d+)", seen[-1]):
            port = match[1]
    assert port is not None, "".join(seen)

    worker = subprocess.Popen(
        koosim("load", "--worker", "--master-host", "127.0.0.1", "--master-port", port),
        cwd=tmp_path,
        env=koosim_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(worker)
    assert master.wait(timeout=RUN_TIMEOUT) is not None
    worker_stdout, worker_stderr = worker.communicate(timeout=30)
    reader.join(timeout=10)
    master_stdout = "".join(seen + list(master_out.queue))
    master_stderr = master.stderr.read()

    assert master.returncode == 0, master_stdout + master_stderr
    duplicates, orders = assert_report(master_stdout)
    assert duplicates == 0 and orders > 0
    assert "worker(s) did not report" not in master_stdout
    assert worker.returncode == 0, worker_stdout + worker_stderr
    sent = re.search(r"done, (\d+) requests sent", worker_stdout)
    assert sent and int(sent[1]) > 0, worker_stdout
    assert "Traceback" not in master_stderr + worker_stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--master", "--worker"), 2, "exclude each other"),
        (("--run-time", "2h"), 2, "at most 3600 s"),
        (("--run-time", "soon"), 2, "not a duration"),
        (("--url", "http://127.0.0.1:9/produceAPI"), 3, "could not be reached"),
    ],
)
def test_mistakes_end_in_a_message_and_an_exit_code(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    done = run_load(tmp_path, *args, KOOSIM_ACCESS_KEY="koosim-load-test-key")
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_koosim_starts_without_locust() -> None:
    """Locust (and with it gevent's monkey-patching) is imported by the load command only."""
    probe = "import sys, simulator.cli; sys.exit(int('locust' in sys.modules or 'gevent' in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], env=koosim_env(), timeout=RUN_TIMEOUT)
    assert done.returncode == 0
