"""Run a selection of checks against one target and collect the outcome as a :class:`Run`."""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.checks import Check, Context, Finding, Verdict, judge_exchange
from simulator.checks.base import CheckAborted, CheckSkipped, applicability
from simulator.clock import isoformat
from simulator.delivery import DeliveryOverride
from simulator.errors import BudgetSpent, budget_reason
from simulator.model import OrderFactory
from simulator.openapi import InboundCall, InboundLog
from simulator.settings import TargetUnreachable, probe
from simulator.transport import DEADLINE_SOURCE, DEFAULT_TIMEOUT, Exchange, Target, Transport

__all__ = ["TargetUnreachable", "probe"]  # where the engine's callers have always found them


@dataclass
class CheckResult:
    check: Check
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    duration: float = 0.0
    skip_reason: str | None = None
    judged: int = 0
    """How many exchanges a per-exchange check looked at."""
    unanswered: int = 0
    """How many of those got no answer at all: no answer to judge, only its absence."""

    @property
    def evidence(self) -> str:
        """One line a person reads in a table."""
        if self.skip_reason:
            return self.skip_reason
        if self.findings:
            more = f" (+{len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
            return self.findings[0].message + more
        if self.check.per_exchange:
            got_none = f"; {self.unanswered} call(s) got none" if self.unanswered else ""
            return f"all {self.judged - self.unanswered} answer(s) conform{got_none}"
        return f"{len(self.exchanges)} exchange(s) as expected"


@dataclass
class Run:
    target: Target
    seed: int
    id: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
    )
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    results: list[CheckResult] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    delivery: DeliveryOverride | None = None
    """The user's change to the delivery policies (KOOSIM_DELIVERY_RESENDS / _INTERVAL), or None."""
    budget_spent: float | None = None
    """The whole-run time budget in seconds, when it was spent before every check had run."""
    inbound: list[InboundCall] = field(default_factory=list)
    """The calls the merchant made to the marketplace's open API during the run (direction
    "merchant → marketplace"), in arrival order, each with the gateway's verdict; appended from
    the open API's threads as they arrive (see ``openapi.InboundCall``)."""

    @property
    def assumptions(self) -> dict[str, str]:
        """The figures the marketplace does not publish, as this run took them (protocol.md §10)."""
        return {
            "deadline": deadline_note(self.target.timeout),
            "marketplace clock": self.clock,
            "resend schedule": delivery_note(self.delivery),
            "timestamp window": "60 s (doc)",
        }

    market_started_at: datetime | None = None
    """The marketplace instant the run began (its clock's, :attr:`Target.clock`)."""

    def __post_init__(self) -> None:
        if self.market_started_at is None:
            self.market_started_at = self.target.clock.now()

    @property
    def clock(self) -> str:
        """The run header's clock line: which clock, and the marketplace instant the run began
        ("marketplace time: scaled ×3600 (1h of marketplace time per wall second)")."""
        began = isoformat(self.market_started_at) if self.market_started_at is not None else "?"
        return f"{self.target.clock.describe()}; began at marketplace {began}"

    def count(self, verdict: Verdict) -> int:
        return sum(1 for result in self.results if result.verdict is verdict)

    @property
    def exit_code(self) -> int:
        """1 when a check failed, or when the time budget left checks unrun: a run that could not
        look at everything does not pass."""
        return 1 if self.count(Verdict.FAILED) or self.budget_spent is not None else 0

    @property
    def not_run(self) -> list[CheckResult]:
        """The checks the whole-run time budget left unrun (skipped with its reason)."""
        if self.budget_spent is None:
            return []
        reason = budget_reason(self.budget_spent)
        return [result for result in self.results if result.skip_reason == reason]


def reproduce_command(settings_flags: dict[str, Any], check_id: str) -> str:
    """The ``koosim verify`` command line that runs ``check_id`` alone against the same target."""
    words = ["koosim", "verify"]
    for name in ("url", "protocol", "sync_url", "timeout", "product", "billing", "license_call", "seed"):
        if settings_flags.get(name) is not None:
            words += [f"--{name.replace('_', '-')}", str(settings_flags[name])]
    if settings_flags.get("optional") is not None:
        words.append("--optional" if settings_flags["optional"] else "--no-optional")
    return shlex.join([*words, "--checks", check_id])


def run_checks(
    target: Target,
    checks: Sequence[Check],
    *,
    seed: int = 0,
    on_start: Callable[[Check], None] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    on_begin: Callable[[Run], None] | None = None,
    on_exchange: Callable[[Exchange], None] | None = None,
    delivery: DeliveryOverride | None = None,
    inbound: InboundLog | None = None,
    on_inbound: Callable[[InboundCall], None] | None = None,
) -> Run:
    """Run ``checks``: the active ones first, then the per-exchange ones over every exchange.

    ``inbound`` is the open API's log (``server.market``): each call the merchant makes during
    the run joins :attr:`Run.inbound` and is handed to ``on_inbound``.

    ``on_begin`` sees the new run before any call is sent; ``on_exchange`` sees each exchange of
    the shared transport as soon as it completes (the run history commits them one by one;
    copies a check sends on connections of their own arrive with its result instead).

    When the target's whole-run time budget is spent, the active checks not yet run are skipped
    with that reason (:attr:`Run.budget_spent`); the per-exchange checks, which send nothing,
    still judge the exchanges gathered so far.
    """
    run = Run(target=target, seed=seed, delivery=delivery)
    if on_begin is not None:
        on_begin(run)
    transport = Transport(target, on_exchange=on_exchange)
    orders = OrderFactory(seed)
    listening = nullcontext() if inbound is None else inbound.listen(_inbound_listener(run, on_inbound))
    try:
        with listening:
            for check in checks:
                if on_start is not None:
                    on_start(check)
                result = run_check(check, target, transport, orders, run.exchanges, delivery, inbound)
                if target.budget is not None and result.skip_reason == budget_reason(target.budget.seconds):
                    run.budget_spent = target.budget.seconds
                run.results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        transport.close()
        run.finished_at = time.time()
    return run


def _inbound_listener(
    run: Run, on_inbound: Callable[[InboundCall], None] | None
) -> Callable[[InboundCall], None]:
    def listener(call: InboundCall) -> None:
        run.inbound.append(call)
        if on_inbound is not None:
            on_inbound(call)

    return listener


def run_check(
    check: Check,
    target: Target,
    transport: Transport,
    orders: OrderFactory,
    exchanges: list[Exchange],
    delivery: DeliveryOverride | None = None,
    inbound: InboundLog | None = None,
) -> CheckResult:
    """Run one check as :func:`run_checks` does, for a caller that runs them one at a time.

    An active check drives the merchant through ``transport`` and its exchanges are appended to
    ``exchanges``; it sees the exchanges before it and, through ``inbound`` (the open API's
    log), the calls the merchant makes meanwhile. A per-exchange check judges ``exchanges``
    (skipped when there is none yet).
    """
    if check.per_exchange:
        return _judge_exchanges(check, exchanges, target)
    result = _run_active(check, target, transport, orders, delivery, inbound, exchanges)
    exchanges.extend(result.exchanges)
    return result


def deadline_note(timeout: float) -> str:
    """The run header's deadline: the published 5 s and where it is published, or the override."""
    if timeout == DEFAULT_TIMEOUT:
        return f"{timeout:g} s per call (published: {DEADLINE_SOURCE})"
    return f"{timeout:g} s per call (--timeout; published {DEFAULT_TIMEOUT:g} s, {DEADLINE_SOURCE})"


def delivery_note(override: DeliveryOverride | None) -> str:
    """The run header's delivery line: the published schedules (V1 newInstance 60 × 3 min …),
    the ASSUMPTION where none is published, and the user's override (docs/protocol.md §10.1)."""
    note = (
        "published where a page gives one (V1 newInstance 60 × 3 min then automatic cancellation; "
        "V1 expire/release 60 × 1 min; order notification 3 h), else ASSUMPTION U11 "
        "(V2: 3 resends after 1 s, 2 s, 4 s); failed for good: parked"
    )
    if override is not None:
        note += f"; {override.describe()} for every policy"
    return note


def _verdict(check: Check, findings: list[Finding]) -> Verdict:
    if not findings:
        return Verdict.PASSED
    return Verdict.FAILED if any(finding.fails(check) for finding in findings) else Verdict.WARNED


def exchange_result(check: Check, exchange: Exchange, problems: Sequence[str]) -> CheckResult:
    """``check``'s result on one exchange in which it found ``problems`` (none: passed)."""
    findings = [Finding(problem, [exchange]) for problem in problems]
    return CheckResult(check, _verdict(check, findings), findings, [exchange], exchange.elapsed)


def _run_active(
    check: Check,
    target: Target,
    transport: Transport,
    orders: OrderFactory,
    delivery: DeliveryOverride | None = None,
    inbound: InboundLog | None = None,
    seen: Sequence[Exchange] = (),
) -> CheckResult:
    started = time.perf_counter()
    not_applicable = applicability(check, target)
    if not_applicable is not None:  # decided before anything is sent (protocol.md §1.2)
        return CheckResult(check, Verdict.SKIPPED, skip_reason=not_applicable)
    if target.budget is not None and target.budget.spent:
        return CheckResult(check, Verdict.SKIPPED, skip_reason=budget_reason(target.budget.seconds))
    ctx = Context(target, transport, orders, delivery=delivery, inbound=inbound, seen=seen)
    skip_reason = None
    try:
        check.play(ctx)
    except BudgetSpent as spent:  # what it found before stands; the rest of it was not run
        skip_reason = str(spent)
    except CheckSkipped as skipped:
        skip_reason = str(skipped)
    except CheckAborted:
        pass  # its finding is recorded
    except Exception as exc:  # a merchant answer the check did not foresee must not end the run
        ctx.fail(f"the check could not finish: {type(exc).__name__}: {exc}", *ctx.exchanges[-1:])
    verdict = Verdict.SKIPPED if skip_reason and not ctx.findings else _verdict(check, ctx.findings)
    return CheckResult(
        check, verdict, ctx.findings, ctx.exchanges, time.perf_counter() - started, skip_reason
    )


def _judge_exchanges(check: Check, exchanges: list[Exchange], target: Target) -> CheckResult:
    if not exchanges:
        reason = "no exchange to judge: select an active check too"
        return CheckResult(check, Verdict.SKIPPED, skip_reason=reason)
    started = time.perf_counter()
    findings = []
    for exchange in exchanges:
        for breach in judge_exchange(exchange, target, (check,)):
            findings.append(Finding(f"{exchange.label}: {breach.message}", [exchange]))
    duration = time.perf_counter() - started
    unanswered = sum(1 for exchange in exchanges if not exchange.answered)
    if not findings and unanswered == len(exchanges):  # nothing came back: nothing conforms either
        reason = f"no answer to judge: none of the {unanswered} call(s) got one"
        return CheckResult(check, Verdict.SKIPPED, duration=duration, skip_reason=reason, judged=unanswered)
    return CheckResult(
        check,
        _verdict(check, findings),
        findings,
        duration=duration,
        judged=len(exchanges),
        unanswered=unanswered,
    )
