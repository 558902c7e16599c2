"""Hostile merchants (``tests/hostile/``): whatever a merchant does on the wire, ``koosim verify``,
``play`` and ``explore`` end in bounded time, report a finding that names what happened, exit 1
and print no traceback, in bounded memory.

The commands run in subprocesses exactly as a user runs them, each against its own instance of
the hostile merchant (the three at once, to keep the file fast) and killed after a hard timeout,
so a hang fails the test instead of hanging CI. The transport's bounds are also measured in
process: the total deadline against answers that trickle, the byte cap against 10 MB and an
endless body, and redirects, which are never followed.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hostile import GALLERY, Connection, Hostile, RawServer, http_response, serving
from hostile.cli import Finished, koosim_env, run_koosim
from hostile.gallery import (
    endless_chunks,
    slow_endless_chunks,
    ten_megabytes,
    trickles_body,
    trickles_headers,
)

from simulator.transport import MAX_RESPONSE_BYTES, Target, Transport

ACCESS_KEY = "hostile-access-key-0001"
COMMANDS = ("verify", "play", "explore")
WALL_LIMIT_S = 30.0
"""Generous: each command needs a few seconds, most under one (docs/hostile.md has the figures)."""
RSS_GROWTH_LIMIT_MB = 50.0
DEADLINE_SLACK_S = 1.0
"""How far past its deadline a call may end: the watchdog's wake-up and the socket's teardown
(measured: a few milliseconds; generous for a loaded CI machine)."""


def _arguments(command: str, hostile: Hostile, url: str, workdir: Path) -> list[str]:
    common = ["--url", url, "--timeout", f"{hostile.timeout:g}"]
    if command == "verify":
        checks = [word for check in hostile.checks for word in ("--checks", check)]
        return ["verify", *common, *checks, "--json", str(workdir / "report.json")]
    if command == "play":
        return ["play", "new-order", *common]
    return ["explore", *common, "--max-examples", "3"]


def _run_against(hostile: Hostile, command: str, workdir: Path) -> tuple[Finished, int | None]:
    """Run ``command`` against a fresh instance of ``hostile``; also return the requests it read."""
    with serving(hostile, ACCESS_KEY) as merchant:
        finished = run_koosim(
            _arguments(command, hostile, merchant.url, workdir),
            cwd=workdir,
            env=koosim_env(workdir, KOOSIM_ACCESS_KEY=ACCESS_KEY),
        )
        received = merchant.received if isinstance(merchant, RawServer) else None
    return finished, received


@pytest.mark.parametrize("hostile", GALLERY, ids=lambda hostile: hostile.name)
def test_every_command_ends_in_time_names_what_happened_and_exits_1(hostile: Hostile, tmp_path: Path) -> None:
    with ThreadPoolExecutor(len(COMMANDS)) as pool:
        outcomes = dict(
            zip(
                COMMANDS,
                pool.map(lambda command: _run_against(hostile, command, tmp_path / command), COMMANDS),
                strict=True,
            )
        )
    for command, (finished, _) in outcomes.items():
        if not hostile.warning_only:
            assert finished.returncode == 1, finished
        elif command == "verify":  # the warning alone; play and explore go on to calls a raw server fails
            assert finished.returncode == 0, finished
        assert finished.seconds < WALL_LIMIT_S, finished
        assert "Traceback" not in finished.output, finished
        assert "\x1b" not in finished.output, finished  # no merchant byte drives the terminal
        if not (hostile.warning_only and command == "explore"):
            assert hostile.reports in finished.flat, f"{command}: expected {hostile.reports!r} in\n{finished}"

    # verify's report holds every call the merchant read: nothing lost, nothing made up
    finished, received = outcomes["verify"]
    report = json.loads((tmp_path / "verify" / "report.json").read_text(encoding="utf-8"))
    assert report["exit_code"] == (0 if hostile.warning_only else 1)
    if received is not None:
        assert len(report["exchanges"]) == received, finished


def test_the_gallery_covers_every_hostile_merchant_of_the_issue() -> None:
    names = {hostile.name for hostile in GALLERY}
    assert len(names) == len(GALLERY)
    assert {
        "never-answers",
        "trickles-headers",
        "resets",
        "closes-mid-body",
        "garbage",
        "html-502",
        "ten-megabytes",
        "invalid-utf8",
        "wrong-content-type",
        "redirect-loop",
        "redirect-elsewhere",
        "endless-chunks",
        "duplicate-keys",
        "deep-nesting",
        "huge-float",
        "huge-integer",
        "random-instance-ids",
        "crossed-instance-ids",
    } <= names


# --- memory ---------------------------------------------------------------------------------------


def _verify_peak_rss(behaviour_name: str, tmp_path: Path) -> Finished:
    hostile = next(h for h in GALLERY if h.name == behaviour_name)
    finished, _ = _run_against(hostile, "verify", tmp_path / behaviour_name)
    assert finished.returncode == 1, finished
    return finished


@pytest.mark.parametrize("name", ["ten-megabytes", "endless-chunks"])
def test_koosim_verify_memory_stays_bounded(name: str, tmp_path: Path) -> None:
    baseline = _verify_peak_rss("html-502", tmp_path)
    hostile = _verify_peak_rss(name, tmp_path)
    growth = hostile.peak_rss_mb - baseline.peak_rss_mb
    assert growth < RSS_GROWTH_LIMIT_MB, (baseline.peak_rss_mb, hostile.peak_rss_mb)


@pytest.mark.parametrize("behaviour", [ten_megabytes, endless_chunks], ids=["10-MB", "endless"])
def test_the_transport_stops_reading_at_the_byte_cap(behaviour: object) -> None:
    with RawServer(behaviour) as merchant:  # type: ignore[arg-type]
        transport = Transport(Target(url=merchant.url, access_key=ACCESS_KEY, timeout=10))
        tracemalloc.start()
        try:
            exchange = transport.send({"activity": "newInstance"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            transport.close()
    assert exchange.error == f"the answer is larger than {MAX_RESPONSE_BYTES} bytes"
    assert exchange.response_body == b"" and exchange.status is None
    assert exchange.elapsed < 5
    assert peak < 4 * MAX_RESPONSE_BYTES, f"{peak / 2**20:.1f} MiB traced while reading"


# --- the total deadline ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [trickles_headers, trickles_body, slow_endless_chunks],
    ids=["headers-trickle", "body-trickles", "slow-endless-chunks"],
)
def test_the_total_deadline_ends_an_answer_that_trickles_in_time(behaviour: object) -> None:
    deadline = 1.5  # longer than the gap between bytes: the per-read timeout never fires
    with RawServer(behaviour) as merchant:  # type: ignore[arg-type]
        transport = Transport(Target(url=merchant.url, access_key=ACCESS_KEY, timeout=deadline))
        try:
            started = time.monotonic()
            exchange = transport.send({"activity": "newInstance"})
            wall = time.monotonic() - started
        finally:
            transport.close()
    assert exchange.timed_out and exchange.error == "no complete answer within 1.5 s"
    assert deadline <= exchange.elapsed < deadline + DEADLINE_SLACK_S
    assert wall < deadline + DEADLINE_SLACK_S


def test_a_call_that_ends_in_time_is_never_cut_later_on_its_kept_alive_connection() -> None:
    """The watchdog forgets a call that ended: when its deadline passes, the next call is under
    way on the same (kept-alive) connection, and must not be cut."""

    def half_a_second(conn: Connection) -> None:
        conn.wait(0.5)
        conn.send(http_response(b'{"resultCode":"000000","resultMsg":"ok"}', close=False))

    with RawServer(half_a_second, keep_alive=True) as merchant:
        transport = Transport(Target(url=merchant.url, access_key=ACCESS_KEY, timeout=0.8))
        try:
            answers = [transport.send({"activity": "queryInstance"}) for _ in range(3)]
        finally:
            transport.close()
    assert [exchange.result_code for exchange in answers] == ["000000"] * 3, [e.error for e in answers]
    assert merchant.connections == 1


# --- redirects ------------------------------------------------------------------------------------


def test_a_redirect_to_another_host_is_never_followed() -> None:
    """The signed call would go to a stranger: the 302 is the merchant's answer, judged as such."""
    with RawServer(lambda conn: None) as stranger:

        def redirect(conn: object) -> None:
            location = {"Location": f"{stranger.base_url}/steal"}
            conn.send(http_response(b"", status="302 Found", headers=location))  # type: ignore[attr-defined]

        with RawServer(redirect) as merchant:
            transport = Transport(Target(url=merchant.url, access_key=ACCESS_KEY, timeout=2))
            try:
                exchange = transport.send({"activity": "newInstance"})
            finally:
                transport.close()
    assert exchange.status == 302 and exchange.response_headers["Location"].endswith("/steal")
    assert merchant.received == 1
    assert stranger.connections == 0
