"""Verify runs started from the console or the API: the same suite as ``koosim verify``, in a
background thread, recorded into the history as it goes so a page can watch it progress."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from simulator.checks import select
from simulator.engine.run import Run, probe, reproduce_command, run_checks
from simulator.server.state import MarketState
from simulator.store import RunRecorder

START_TIMEOUT_S = 10.0
"""How long the request waits for the background thread to give the new run its id."""


def start_verify(market: MarketState, patterns: Iterable[str] = (), seed: int = 0) -> str:
    """Start a verify run of the checks matching ``patterns``; return its id at once.

    Raises NotConfigured without a target, LookupError when no check matches, and
    TargetUnreachable when nothing listens at the target's address (then no run is recorded).
    """
    target = market.run_target()
    checks = select(list(patterns))
    probe(target)
    flags = {
        "url": target.url,
        "protocol": target.protocol,
        "sync_url": target.sync_url,
        "timeout": target.timeout,
        "seed": seed,
    }
    recorder = RunRecorder(
        market.store,
        kind="verify",
        planned=len(checks),
        command="verify started from koosim serve",
        reproduce=lambda check_id: reproduce_command(flags, check_id),
    )
    begun = threading.Event()
    failure: list[str] = []

    def on_begin(run: Run) -> None:
        recorder.begin(run)
        begun.set()

    def work() -> None:
        try:
            run = run_checks(
                target,
                checks,
                seed=seed,
                on_result=recorder.result,
                on_begin=on_begin,
                on_exchange=recorder.exchange,
                delivery=market.settings.delivery,
                inbound=market.open_api_log,
            )
        except Exception as exc:  # the history must say why the run stopped, not leave it "running"
            failure.append(f"{type(exc).__name__}: {exc}")
            if recorder.run_id is not None:
                market.store.history.finish_run(
                    recorder.run_id, exit_code=2, error=failure[0], secrets=target.secrets
                )
        else:
            recorder.finish(run)
        finally:
            begun.set()

    thread = threading.Thread(target=work, name="koosim-verify", daemon=True)
    thread.start()
    begun.wait(START_TIMEOUT_S)
    if recorder.run_id is None:
        raise RuntimeError(failure[0] if failure else "the run did not start")
    market.track(recorder.run_id, thread)
    return recorder.run_id
