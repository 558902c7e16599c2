"""The run history survives the process that writes it: ``koosim verify`` killed with SIGKILL in
the middle of a run leaves a sound database holding every exchange it completed, shown as
interrupted; two ``koosim verify`` writing to one database at once lose nothing.

The merchant is the reference merchant behind a delay, keeping a ledger of the calls it answered
(``hostile.slow``): what the history kept is compared with what the merchant saw, call by call.
``tests/test_store.py`` covers the store's side of this with a scripted writer; here it is the
real command, killed at a moment it does not choose.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hostile.cli import koosim_env, run_koosim
from hostile.slow import SlowLedgerMerchant

from simulator.reference import PRODUCE_PATH, MerchantConfig
from simulator.serving import BackgroundServer

ACCESS_KEY = "durability-access-key-0001"
SEQUENTIAL_CHECKS = ("lifecycle.*",)
"""One call at a time: at the kill, at most one call is in flight."""
KILL_AFTER_EXCHANGES = 6
DELAY_S = 0.1


@pytest.fixture
def merchant() -> Iterator[tuple[SlowLedgerMerchant, str]]:
    ledger = SlowLedgerMerchant(MerchantConfig(access_key=ACCESS_KEY), DELAY_S)
    with BackgroundServer(ledger) as server:
        yield ledger, server.base_url + PRODUCE_PATH


def _nonce(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("nonce", [""])[0]


def _stored(db: Path) -> list[tuple[str, str]]:
    """(run id, nonce) of every exchange in the history, in the order they were committed."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT run_id, record FROM exchanges ORDER BY seq").fetchall()
    return [(run, _nonce(json.loads(record)["request"]["url"])) for run, record in rows]


def _exchange_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM exchanges").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_verify_killed_mid_run_keeps_every_completed_exchange_and_reads_as_interrupted(
    merchant: tuple[SlowLedgerMerchant, str], tmp_path: Path
) -> None:
    ledger, url = merchant
    db = tmp_path / "koosim.db"
    env = koosim_env(tmp_path, KOOSIM_ACCESS_KEY=ACCESS_KEY)
    checks = [word for check in SEQUENTIAL_CHECKS for word in ("--checks", check)]
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "verify", "--url", url, "--timeout", "5", *checks],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _exchange_count(db) < KILL_AFTER_EXCHANGES:
            assert process.poll() is None, "verify ended before it could be killed"
            assert time.monotonic() < deadline, "verify recorded nothing"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    time.sleep(DELAY_S + 0.5)  # let the merchant finish the call it was answering, if any

    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    stored = _stored(db)
    answered = ledger.ledger()
    assert len(stored) >= KILL_AFTER_EXCHANGES
    stored_nonces = [nonce for _, nonce in stored]
    assert set(stored_nonces) <= set(answered), "the history holds a call the merchant never answered"
    missing = [nonce for nonce in answered if nonce not in stored_nonces]
    # at most the call in flight at the kill: answered, but not committed (or not even received)
    assert missing in ([], answered[-1:]), (len(answered), len(stored), missing)
    assert stored_nonces == [nonce for nonce in answered if nonce in stored_nonces]  # in order

    run_ids = {run for run, _ in stored}
    assert len(run_ids) == 1
    (run,) = run_ids
    listed = run_koosim(["runs"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed
    row = next(line for line in listed.stdout.splitlines() if run in line)
    assert "interrupted" in row and str(len(stored)) in row.split()
    shown = run_koosim(["show", run], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown
    assert f"run {run} interrupted" in " ".join(shown.stdout.split())


def test_two_verify_runs_writing_one_history_at_once_lose_nothing(
    merchant: tuple[SlowLedgerMerchant, str], tmp_path: Path
) -> None:
    ledger, url = merchant
    ledger.delay = 0.02
    env = koosim_env(tmp_path, KOOSIM_ACCESS_KEY=ACCESS_KEY)
    checks = ["--checks", "lifecycle.*", "--checks", "idempotency.new-instance-*", "--checks", "contract.*"]

    def verify(name: str) -> tuple[str, dict]:
        report = tmp_path / f"{name}.json"
        finished = run_koosim(
            ["verify", "--url", url, "--timeout", "5", *checks, "--json", str(report)],
            cwd=tmp_path / name,
            env=env,
        )
        assert finished.returncode == 0, finished
        return name, json.loads(report.read_text(encoding="utf-8"))

    with ThreadPoolExecutor(2) as pool:
        reports = dict(pool.map(verify, ["first", "second"]))

    first, second = reports["first"], reports["second"]
    assert first["started_at"] < second["finished_at"] and second["started_at"] < first["finished_at"], (
        "the runs did not overlap"
    )
    stored = _stored(tmp_path / "koosim.db")
    with sqlite3.connect(tmp_path / "koosim.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for report in (first, second):
            ids = {
                row[0]
                for row in connection.execute(
                    "SELECT id FROM exchanges WHERE run_id = ?", (report["run_id"],)
                )
            }
            assert ids == {exchange["id"] for exchange in report["exchanges"]}
            finished_at = connection.execute(
                "SELECT finished_at FROM runs WHERE id = ?", (report["run_id"],)
            ).fetchone()[0]
            assert finished_at is not None
    # and the merchant answered exactly the calls the two runs stored
    assert sorted(nonce for _, nonce in stored) == sorted(ledger.ledger())
