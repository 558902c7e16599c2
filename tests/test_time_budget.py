"""The whole-run time budget (``--max-time``, KOOSIM_MAX_TIME, ``max_time`` in koosim.toml): a
merchant that never answers costs the budget plus at most one per-call deadline, not every
call's deadline over the whole catalog; what the budget left unrun is reported as not run and
the command exits 1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hostile import Connection, RawServer
from hostile.cli import koosim_env, run_koosim

from simulator.checks import Verdict, catalog
from simulator.engine.run import run_checks
from simulator.errors import BudgetSpent, TimeBudget
from simulator.transport import Target, Transport

ACCESS_KEY = "budget-access-key-0001"
DEADLINE = 0.5
"""The per-call deadline (--timeout) of every run here."""
BUDGET = 2.0
SLACK_S = 1.0
"""Past budget + deadline: the watchdog's wake-up, closing sockets, a loaded CI machine."""
STARTUP_S = 4.0
"""A subprocess also pays for Python, the imports and the run history before the budget starts."""


def never_answers(conn: Connection) -> None:
    """Reads the call and says nothing until the server closes."""
    conn.wait(60)


@pytest.fixture
def silent() -> RawServer:
    with RawServer(never_answers) as server:
        yield server


def test_a_spent_budget_stops_the_transport_before_it_sends(silent: RawServer) -> None:
    target = Target(url=silent.url, access_key=ACCESS_KEY, timeout=DEADLINE, budget=TimeBudget(0.0))
    transport = Transport(target)
    try:
        with pytest.raises(BudgetSpent, match="whole-run time budget of 0 s spent"):
            transport.send({"activity": "newInstance"})
    finally:
        transport.close()
    assert silent.received == 0


def test_the_run_ends_within_the_budget_plus_one_deadline(silent: RawServer) -> None:
    checks = catalog()
    target = Target(url=silent.url, access_key=ACCESS_KEY, timeout=DEADLINE, budget=TimeBudget(BUDGET))
    started = time.monotonic()
    run = run_checks(target, checks)
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + DEADLINE + SLACK_S, elapsed
    assert len(run.results) == len(checks)
    assert run.budget_spent == BUDGET
    not_run = run.not_run
    assert not_run, "the budget is far too small for the catalog against a silent merchant"
    assert all(r.verdict is Verdict.SKIPPED for r in not_run)
    assert {r.skip_reason for r in not_run} == {"whole-run time budget of 2 s spent"}
    assert not any(r.check.per_exchange for r in not_run), "judging what was gathered sends nothing"
    assert run.exit_code == 1


def test_without_a_budget_nothing_is_skipped_for_time(silent: RawServer) -> None:
    (check,) = [c for c in catalog() if c.id == "security.v2-signature-wrong"]
    target = Target(url=silent.url, access_key=ACCESS_KEY, timeout=DEADLINE)
    run = run_checks(target, [check])
    assert run.budget_spent is None and run.not_run == []
    assert all(r.skip_reason is None or "time budget" not in r.skip_reason for r in run.results)


def _run(silent: RawServer, tmp_path: Path, *args: str, **env: str) -> tuple[float, str, int | None]:
    finished = run_koosim(
        [*args, "--url", silent.url, "--timeout", f"{DEADLINE:g}"],
        cwd=tmp_path,
        env=koosim_env(tmp_path, KOOSIM_ACCESS_KEY=ACCESS_KEY, **env),
        hard_timeout=60,
    )
    assert "Traceback" not in finished.output, finished
    return finished.seconds, finished.flat, finished.returncode


def test_verify_reports_what_the_budget_left_unrun_and_exits_1(silent: RawServer, tmp_path: Path) -> None:
    seconds, output, code = _run(
        silent, tmp_path, "verify", "--max-time", f"{BUDGET:g}", "--json", str(tmp_path / "r.json")
    )
    assert code == 1, output
    assert seconds < STARTUP_S + BUDGET + DEADLINE + SLACK_S, output
    assert "whole-run time budget of 2 s spent:" in output and "not run" in output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    evidence = [result["evidence"] for result in report["checks"] if result["verdict"] == "skipped"]
    assert "whole-run time budget of 2 s spent" in evidence, evidence
    assert report["exit_code"] == 1


def test_the_budget_may_come_from_the_environment(silent: RawServer, tmp_path: Path) -> None:
    seconds, output, code = _run(silent, tmp_path, "verify", KOOSIM_MAX_TIME="1.5")
    assert code == 1, output
    assert seconds < STARTUP_S + 1.5 + DEADLINE + SLACK_S, output
    assert "whole-run time budget of 1.5 s spent" in output


@pytest.mark.parametrize(
    ("command", "args"),
    [("play", ("new-order", "renewal")), ("explore", ("--max-examples", "500"))],
)
def test_play_and_explore_stop_when_the_budget_is_spent(
    command: str, args: tuple[str, ...], silent: RawServer, tmp_path: Path
) -> None:
    # less than one deadline: the first call goes out, the budget is spent when it times out
    seconds, output, code = _run(silent, tmp_path, command, *args, "--max-time", "0.3")
    assert code == 1, output
    assert seconds < STARTUP_S + 0.3 + DEADLINE + SLACK_S, output
    assert "whole-run time budget of 0.3 s spent" in output, output
    assert "every expectation met" not in output and "every invariant held" not in output
    assert silent.received <= 2, "one call, and any copy sent with it, before the budget stopped the run"
