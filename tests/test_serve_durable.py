"""Durable deliveries across processes (issue 15 item 3): ``koosim serve`` runs as a subprocess on
an ephemeral port with a scaled marketplace clock; a test merchant fails, then succeeds.

- SIGKILL between two scheduled attempts, restart: the next attempt goes out once, at its
  marketplace instant (measured on the merchant's side too);
- two ``serve`` processes on one history file: every attempt is delivered by exactly one of them.

The clock is scaled, not slept through: 3 minutes of marketplace time (V1 subscription's published
gap, §10.1) pass in 18 or 3 wall seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Serve
from shell import clean_env, free_port
from test_messages import Scripted

ACCESS_KEY = "durable-test-access-key-3"
SERVE_TOKEN = "durable-test-serve-token-0123456789"
GAP_MINUTES = 3  # V1 newInstance: 60 resends, every 3 minutes [S38]


class Koosim:
    """One ``koosim serve`` subprocess and a client for its JSON API."""

    def __init__(self, tmp_path: Path, merchant_url: str, scale: float | str, name: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{name}.log"
        command = [
            "koosim", "serve", "--port", str(self.port), "--url", merchant_url, "--protocol", "v1",
            "--time-scale", str(scale), "--db", str(tmp_path / "koosim.db"),
        ]  # fmt: skip
        env = clean_env(KOOSIM_ACCESS_KEY=ACCESS_KEY, KOOSIM_SERVE_TOKEN=SERVE_TOKEN)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {SERVE_TOKEN}"
        wait_for(self._up, 60, lambda: f"koosim serve did not start:\n{self.log.read_text()}")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"koosim serve exited {self.process.returncode}:\n{self.log.read_text()}")
        with contextlib.suppress(requests.ConnectionError):
            return self.session.get(f"{self.base}/api/target", timeout=5).status_code == 200
        return False

    def get(self, path: str) -> Any:
        response = self.session.get(self.base + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = self.session.post(self.base + path, json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """Ctrl+C, as a person stops it: the scheduler must stop and the process end cleanly."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"koosim serve did not stop on SIGINT:\n{self.log.read_text()}"
                ) from None


def wait_for(condition: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        time.sleep(0.05)


@pytest.fixture
def servers() -> Iterator[list[Koosim]]:
    started: list[Koosim] = []
    yield started
    for server in started:
        server.kill()


def _market(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


def test_a_sigkill_between_two_attempts_loses_nothing_and_repeats_nothing(
    tmp_path: Path, serve: Serve, servers: list[Koosim]
) -> None:
    scale = 10.0  # the 3-minute gap is 18 s of wall time: room for a restart under load
    merchant = Scripted("000005", "000000")
    url = serve(merchant.app)
    first = Koosim(tmp_path, url, scale, "first")
    servers.append(first)
    fields = first.get("/api/activities/newInstance/template")["fields"]
    outcome = first.post("/api/calls", {"activity": "newInstance", "fields": fields})
    assert outcome["result_code"] == "000005" and "pending after 1 attempt(s)" in outcome["delivery"]
    first.kill()  # between attempt 1 and attempt 2
    assert len(merchant.received) == 1
    second = Koosim(tmp_path, url, scale, "second")
    servers.append(second)
    assert len(merchant.received) == 1  # restarted before attempt 2 was due: not sent early
    assert "1 scheduled delivery(ies) pending in the history" in second.log.read_text()
    gap_wall = GAP_MINUTES * 60 / scale
    wait_for(lambda: len(merchant.received) >= 2, gap_wall + 30, lambda: second.log.read_text())
    message = second.get(f"/api/messages/{outcome['delivery_id']}")
    wait_for(
        lambda: second.get(f"/api/messages/{outcome['delivery_id']}")["state"] == "delivered",
        10,
        lambda: str(message),
    )
    time.sleep(1)  # 10 s of marketplace time: nothing more may come
    assert len(merchant.received) == 2
    message = second.get(f"/api/messages/{outcome['delivery_id']}")
    assert [a["number"] for a in message["attempts"]] == [1, 2]
    sent = [_market(a["sent"]["market"]) for a in message["attempts"]]
    late = (sent[1] - sent[0]).total_seconds() - GAP_MINUTES * 60
    assert 0 <= late <= 30, f"attempt 2 went out {late:+.1f} s (marketplace) off its published instant"
    # and as the merchant saw it, in wall time
    wall_gap = merchant.received[1]["at"] - merchant.received[0]["at"]
    assert gap_wall - 0.5 <= wall_gap <= gap_wall + 3, wall_gap
    assert merchant.received[0]["body"]["orderId"] == merchant.received[1]["body"]["orderId"]
    second.stop()
    assert second.process.returncode == 0, second.log.read_text()


def test_two_servers_on_one_history_never_deliver_the_same_attempt_twice(
    tmp_path: Path, serve: Serve, servers: list[Koosim]
) -> None:
    scale = 60.0  # 3 minutes of marketplace time in 3 wall seconds
    merchant = Scripted("000005", "000005", "000005", "000000")
    url = serve(merchant.app)
    one = Koosim(tmp_path, url, scale, "one")
    servers.append(one)
    two = Koosim(tmp_path, url, scale, "two")
    servers.append(two)
    fields = one.get("/api/activities/newInstance/template")["fields"]
    outcome = one.post("/api/calls", {"activity": "newInstance", "fields": fields})
    delivery = f"/api/messages/{outcome['delivery_id']}"
    wait_for(lambda: two.get(delivery)["state"] == "delivered", 60, lambda: str(two.get(delivery)))
    time.sleep(1)
    assert len(merchant.received) == 4, merchant.received
    message = one.get(delivery)
    assert [a["number"] for a in message["attempts"]] == [1, 2, 3, 4]
    sent = [_market(a["sent"]["market"]) for a in message["attempts"]]
    offsets = [(instant - sent[0]).total_seconds() for instant in sent]
    for number, offset in enumerate(offsets):
        assert 0 <= offset - number * GAP_MINUTES * 60 <= 60, offsets  # the timetable, at most 1 s wall late
    for server in (one, two):
        server.stop()
        assert server.process.returncode == 0, server.log.read_text()


def test_a_frozen_clock_advanced_through_the_api_fires_the_attempt_due(
    tmp_path: Path, serve: Serve, servers: list[Koosim]
) -> None:
    merchant = Scripted("000005", "000000")
    koosim = Koosim(tmp_path, serve(merchant.app), "frozen", "frozen")
    servers.append(koosim)
    fields = koosim.get("/api/activities/newInstance/template")["fields"]
    outcome = koosim.post("/api/calls", {"activity": "newInstance", "fields": fields})
    koosim.post("/api/clock/advance", {"by": "2m"})
    time.sleep(1)  # five scheduler passes: attempt 2 is not due before +3m
    assert len(merchant.received) == 1
    koosim.post("/api/clock/advance", {"by": "1m"})
    wait_for(lambda: len(merchant.received) == 2, 20, lambda: koosim.log.read_text())
    message = koosim.get(f"/api/messages/{outcome['delivery_id']}")
    wait_for(
        lambda: koosim.get(f"/api/messages/{outcome['delivery_id']}")["state"] == "delivered",
        10,
        lambda: str(message),
    )
    message = koosim.get(f"/api/messages/{outcome['delivery_id']}")
    sent = [_market(a["sent"]["market"]) for a in message["attempts"]]
    assert (sent[1] - sent[0]).total_seconds() == GAP_MINUTES * 60  # exactly: the clock stood still
    koosim.stop()
