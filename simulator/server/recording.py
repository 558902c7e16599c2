"""Calls sent outside a verify run (a single call, an order notification, a scenario played
step by step from the console or by ``koosim play``), recorded into the history as a run, so the
history, ``koosim show`` and the console render them like any verify run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from simulator.checks import Check
from simulator.engine.run import CheckResult, Run, exchange_result
from simulator.store import RunRecorder, Store
from simulator.transport import Exchange, Target, Transport


class RecordedRun:
    """A run begun at once, a transport whose exchanges are committed as they complete, and one
    check result per call judged; :meth:`finish` closes the transport and the run."""

    def __init__(self, store: Store, target: Target, *, kind: str, planned: int, command: str = "") -> None:
        self.run = Run(target=target, seed=0)
        self.recorder = RunRecorder(store, kind=kind, planned=planned, command=command)
        self.recorder.begin(self.run)
        self.transport = Transport(target, on_exchange=self.recorder.exchange)

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def problem(self) -> str | None:
        """Why the history could not keep all of the run, if it could not."""
        return self.recorder.problem

    def add(self, result: CheckResult) -> CheckResult:
        """Record one check's result and the exchanges it judged."""
        self.run.exchanges.extend(result.exchanges)
        self.run.results.append(result)
        self.recorder.result(result)
        return result

    def judge(self, check: Check, exchange: Exchange, problems: Sequence[str]) -> CheckResult:
        """Record ``check``'s verdict on one exchange in which it found ``problems``."""
        return self.add(exchange_result(check, exchange, problems))

    def finish(self) -> None:
        self.transport.close()
        self.run.finished_at = time.time()
        self.recorder.finish(self.run)
