"""``koosim watch``: the marketplace's dial test against a merchant, on a schedule, with the
delisting countdown (docs/protocol.md §10.3; docs/watch.md).

Each round runs one dial test (:func:`simulator.engine.dial.dial_test`, ASSUMPTION U14) — and,
with ``--checks``, that selection of the catalog as ``verify`` runs it — keeps the dial test in
the history file (per target URL), and prints the countdown computed from every dial test of
that URL so far: "a dial test failed: 4 more failing days and the product is frozen and hidden".

Time is the marketplace's :class:`~simulator.clock.Clock`: real time by default (as ``serve``);
``--time-scale N`` runs it faster; ``--at`` (or ``--time-scale frozen``) freezes it, at that instant,
and each ``--every`` wait then moves it on at once — a week of dial tests replays in a second,
and a test never sleeps through marketplace time. ``--at`` with a number ``--time-scale`` starts
the scaled clock there.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from simulator.cli.common import (
    TargetInfo,
    UsageError,
    db_option,
    fail,
    interrupted_code,
    interrupted_reason,
    make_console,
    sigterm_interrupts,
    with_target,
)

if TYPE_CHECKING:  # the command imports its machinery lazily (a fast --help)
    from rich.console import Console

    from simulator.clock import Clock
    from simulator.engine.delisting import RunVerdict
    from simulator.engine.dial import DialTest
    from simulator.store import Store
    from simulator.transport import Target

EXIT_PASSED = 0
EXIT_CHECK_FAILED = 1
EXIT_DIAL_FAILED = 4
EXIT_THRESHOLD = 5
ALERT_TIMEOUT_S = 10.0
MAX_EVERY = timedelta(days=400)
"""The longest ``--every``: a year and a bit (the most a clock advance moves in serve, too)."""
"""How long an alert POST may take (connect + read) before it is reported as not sent."""

EXIT_CODES_HELP = (
    "Exit codes: 0 the last dial test passed, or failed with the countdown still running; "
    "1 a --checks check failed; 2 usage; 4 (--strict only) the last dial test failed; "
    "5 the published threshold is reached (five failing days in a row: the product is frozen "
    "and hidden) — watch stops there; 130/143 interrupted by Ctrl-C/SIGTERM (the dial tests "
    "run so far are kept)."
)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from simulator.clock import parse_duration

    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if duration > MAX_EVERY:
        raise click.BadParameter(f"{value!r} is too long: at most {MAX_EVERY.days}d between dial tests")
    return duration


def _instant(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 instant, e.g. 2026-11-05T09:00:00+08:00"
        ) from None
    if instant.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no time zone: add one, e.g. +08:00 or Z")
    from simulator.clock import EARLIEST_MARKET_TIME, LATEST_MARKET_TIME

    if not EARLIEST_MARKET_TIME <= instant < LATEST_MARKET_TIME:
        raise click.BadParameter(
            f"{value!r} is out of range: give an instant from {EARLIEST_MARKET_TIME.year} "
            f"to {LATEST_MARKET_TIME.year - 1}"
        )
    return instant


def _alert_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http(s) URL")
    return value


@click.command(epilog=EXIT_CODES_HELP)
@with_target()
@click.option(
    "--every",
    callback=_duration,
    metavar="DURATION",
    help="Run a dial test every DURATION of marketplace time (e.g. 12h, the marketplace's "
    "cadence) until stopped, --count is reached or the threshold is.",
)
@click.option("--once", is_flag=True, help="Run one dial test and exit (the default; for a CI cron job).")
@click.option("--count", type=click.IntRange(min=1), help="With --every: stop after this many dial tests.")
@click.option(
    "--at",
    "at",
    callback=_instant,
    metavar="INSTANT",
    help="Freeze marketplace time at this ISO-8601 instant (e.g. 2026-11-05T09:00:00+08:00): the "
    "dial test is recorded then, and each --every wait moves the clock on at once, without sleeping.",
)
@click.option(
    "--checks",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Also run the checks whose id matches (repeatable), as verify does; recorded as a run.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 4 as soon as a dial test fails (default: only at the threshold)."
)
@click.option(
    "--alert-url",
    callback=_alert_url,
    metavar="URL",
    help="POST a JSON alert here when a dial test or a check fails or the threshold is reached "
    f"({ALERT_TIMEOUT_S:g} s timeout; a failed alert is reported, never fatal; no key is ever in it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each round as one JSON line instead.")
@db_option
def watch(
    info: TargetInfo,
    every: Any,
    once: bool,
    count: int | None,
    at: datetime | None,
    patterns: tuple[str, ...],
    strict: bool,
    alert_url: str | None,
    as_json: bool,
    db_path: Path,
) -> None:
    """Dial-test a merchant as the marketplace does, and print the delisting countdown.

    The marketplace probes every registered interface twice a day; five failing days in a row
    freeze and hide the product (docs/protocol.md §10.3). watch plays that probe (what it sends
    is ASSUMPTION U14: a test order, testFlag=1), keeps every result in the history file per
    target URL, and counts the failing days. An unreachable merchant is a failed dial test.
    """
    from dataclasses import replace

    from simulator.clock import LATEST_MARKET_TIME, FrozenClock
    from simulator.server.market import market_server
    from simulator.settings import open_target
    from simulator.store import Store

    if every is not None and once:
        raise UsageError("--every and --once contradict each other: --every repeats, --once runs one")
    if count is not None and every is None:
        raise UsageError("--count needs --every")
    plan = _Plan(info, _select(patterns) if patterns else [], strict, alert_url, as_json)
    settings = info.settings
    clock: Clock
    if (at is not None and settings.time_scale is None) or settings.time_scale == "frozen":
        # frozen: each --every wait moves marketplace time on at once, nothing sleeps
        clock = FrozenClock(at or datetime.now(UTC), waits="jump")
    else:
        clock = settings.clock(live=True, start=at)  # real time unless --time-scale says otherwise
    if every is not None and count is not None and (LATEST_MARKET_TIME - clock.now()) // every < count - 1:
        raise UsageError(
            f"--every {_shown(every)} --count {count} runs past {LATEST_MARKET_TIME.year - 1}: "
            "give a shorter --every or a smaller --count"
        )
    store = Store(db_path)
    console = make_console()
    exit_code = EXIT_PASSED
    rounds = 0
    kept: list[int] = []  # the id of each dial test recorded, as soon as it is (an interruption
    # may come mid-round, after the dial test was kept and before the round ends)
    try:
        with sigterm_interrupts(), market_server(settings) as market, open_target(settings) as opened:
            # the open API, as in every command: a V2 merchant reads its order through Querying
            # an Order before it answers newInstance (docs/protocol.md §4.1, §8.1)
            market.usage_key = opened.access_key
            for key in market.secrets:  # redacted from every record, like the target's keys
                opened.learn_secret(key)
            info.market = market
            if not as_json:
                console.print(market.header(), highlight=False, markup=False)
            target = replace(opened, clock=clock)
            first = clock.now()
            while True:
                exit_code = _round(console, store, target, opened, plan, kept)
                rounds += 1
                if every is None or exit_code == EXIT_THRESHOLD or (count is not None and rounds >= count):
                    break
                if (LATEST_MARKET_TIME - first) // every < rounds:  # never overflow datetime
                    raise UsageError(
                        f"--every {_shown(every)} runs past {LATEST_MARKET_TIME.year - 1}: "
                        f"stopped after {rounds} dial test(s); give a --count"
                    )
                clock.sleep_until(first + every * rounds)
    except KeyboardInterrupt as interruption:  # Ctrl-C or SIGTERM between (or during) dial tests
        fail(
            f"{interrupted_reason(interruption)} after {len(kept)} dial test(s); each one is kept",
            interrupted_code(interruption),
        )
    sys.exit(exit_code)


def _shown(duration: timedelta) -> str:
    from simulator.clock import format_duration

    return format_duration(duration)


def _select(patterns: tuple[str, ...]) -> list[Any]:
    from simulator.cli.verify import select_checks  # verify's --checks: the same globs, the same errors

    return select_checks(patterns)


@dataclass(frozen=True)
class _Plan:
    """What every round of one watch does besides the dial test (the command's options)."""

    info: TargetInfo
    checks: list[Any]  # simulator.checks.Check, as verify's --checks selects them
    strict: bool
    alert_url: str | None
    as_json: bool


@dataclass(frozen=True)
class _Dialled:
    """A dial test as kept: its record, and the secrets learned by the end of it."""

    test: DialTest
    record: dict[str, Any]
    secrets: tuple[str, ...]

    @property
    def url(self) -> str:
        return str(self.record["url"])


def _round(
    console: Console, store: Store, target: Target, checks_target: Target, plan: _Plan, kept: list[int]
) -> int:
    """One dial test (and the selected checks): record, print, alert; returns the exit code.

    The dial test runs on ``target``'s clock (watch's); the checks on ``checks_target``, whose
    clock is the one verify's settings give (scaled), so a resend schedule plays in seconds."""
    dialled = _dial_and_keep(target, store, kept)
    verdict, failed_checks, run_id = _judge(store, dialled, checks_target, plan)
    code = _exit_code(verdict, failed_checks, strict=plan.strict, passed=dialled.test.passed)
    report = _report(dialled, verdict, failed_checks, run_id, code)
    if plan.as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        _print(console, report, verdict, target.clock)
    if plan.alert_url is not None and (not dialled.test.passed or failed_checks or verdict.reached):
        _alert(plan.alert_url, report, dialled.secrets)
    return code


def _alert(url: str, report: dict[str, Any], secrets: tuple[str, ...]) -> None:
    """Send the alert; a failure is reported on stderr, never fatal."""
    problem = _send_alert(url, report, secrets)
    if problem is not None:
        make_console(stderr=True).print(
            f"koosim: the alert was not sent: {problem}", highlight=False, markup=False
        )


def _dial_and_keep(target: Target, store: Store, kept: list[int]) -> _Dialled:
    """Run one dial test on ``target``'s clock and keep it in the history at once."""
    from simulator.engine.dial import dial_test

    test = dial_test(target, target.clock)
    secrets = target.secrets  # after the test: it learns the passwords it decrypts (appInfo)
    record = test.as_dict(secrets)
    dialled = _Dialled(test, record, secrets)
    kept.append(store.dial.add(dialled.url, test.market_at, test.at.wall.timestamp(), test.passed, record))
    return dialled


def _judge(
    store: Store, dialled: _Dialled, checks_target: Target, plan: _Plan
) -> tuple[RunVerdict, list[str], str | None]:
    """The delisting verdict from every dial test of this URL so far (and the selected checks,
    run and recorded): (verdict, the failed checks' ids, the checks' run id or None)."""
    from simulator.engine.delisting import Rule, RunVerdict, dial_days, dial_test_verdict

    countdown = dial_test_verdict(dial_days(store.dial.results(dialled.url)))
    if not plan.checks:
        return RunVerdict((countdown,)), [], None
    run_id, failed_checks, run_verdict = _run_checks(checks_target, plan.checks, store, plan.info)
    # the real dial tests' countdown replaces the run's "if the dial tests meet it" line
    others = tuple(item for item in run_verdict.verdicts if item.rule is not Rule.DIAL_TEST)
    return RunVerdict((countdown, *others), run_verdict.consequences), failed_checks, run_id


def _exit_code(verdict: RunVerdict, failed_checks: list[str], *, strict: bool, passed: bool) -> int:
    if verdict.reached:
        return EXIT_THRESHOLD
    if failed_checks:
        return EXIT_CHECK_FAILED
    if strict and not passed:
        return EXIT_DIAL_FAILED
    return EXIT_PASSED


def _report(
    dialled: _Dialled, verdict: RunVerdict, failed_checks: list[str], run_id: str | None, code: int
) -> dict[str, Any]:
    """The round as ``--json`` prints it and an alert carries it (redacted of every secret)."""
    from simulator.redaction import printable, redact

    test = dialled.test
    return {
        "target": dialled.url,
        "at": test.at.as_dict(),
        "dial_test": {
            "passed": test.passed,
            "summary": printable(redact(test.summary(), dialled.secrets), one_line=True),
            "outcomes": [
                {key: value for key, value in outcome.items() if key != "exchange"}
                for outcome in dialled.record["outcomes"]
            ],
        },
        "delisting": verdict.as_dict(),
        "failed_checks": failed_checks,
        "run_id": run_id,
        "exit_code": code,
    }


def _print(console: Console, report: dict[str, Any], verdict: RunVerdict, clock: Clock) -> None:
    from rich.markup import escape

    from simulator.clock import isoformat
    from simulator.report.console import print_delisting

    dial = report["dial_test"]
    style = "green" if dial["passed"] else "red"
    console.print(f"[{style}]{escape(dial['summary'])}[/]", highlight=False)
    print_delisting(console, verdict)
    if report["run_id"] is not None:
        console.print(
            f"[dim]checks recorded as run {report['run_id']}: koosim show {report['run_id']}[/]",
            highlight=False,
        )
    console.print(
        f"[dim]marketplace time {isoformat(clock.now())}; exit {report['exit_code']}[/]", highlight=False
    )


def _run_checks(
    target: Target, checks: list[Any], store: Store, info: TargetInfo
) -> tuple[str, list[str], RunVerdict]:
    """Run the selected checks as verify does (recorded as a ``watch`` run)."""
    from simulator.checks import Verdict
    from simulator.engine.delisting import record_verdict
    from simulator.engine.record import run_record
    from simulator.engine.run import run_checks
    from simulator.model import fresh_seed
    from simulator.store import RunRecorder

    seed = fresh_seed()
    recorder = RunRecorder(
        store, kind="watch", planned=len(checks), reproduce=lambda check_id: info.reproduce(check_id, seed)
    )
    run = run_checks(
        target,
        checks,
        seed=seed,
        on_begin=recorder.begin,
        on_result=recorder.result,
        on_exchange=recorder.exchange,
        delivery=info.settings.delivery,
        inbound=None if info.market is None else info.market.log,
        on_inbound=recorder.inbound,
    )
    recorder.finish(run)
    failed = [result.check.id for result in run.results if result.verdict is Verdict.FAILED]
    return run.id, failed, record_verdict(run_record(run))


def _send_alert(url: str, report: dict[str, Any], secrets: tuple[str, ...]) -> str | None:
    """POST the round's report as JSON; the reason it was not delivered, or None."""
    import requests

    from simulator.redaction import printable, redact, redact_data

    body = json.dumps({"event": _event(report), **redact_data(report, secrets)}, ensure_ascii=False)
    try:
        answer = requests.post(
            url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": "koosim watch"},
            timeout=(ALERT_TIMEOUT_S, ALERT_TIMEOUT_S),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return printable(redact(f"{type(exc).__name__}: {exc}", secrets), one_line=True)
    if not 200 <= answer.status_code < 300:
        return f"{urlsplit(url).hostname} answered HTTP {answer.status_code}"
    return None


def _event(report: dict[str, Any]) -> str:
    if report["delisting"]["reached"]:
        return "threshold-reached"
    if not report["dial_test"]["passed"]:
        return "dial-test-failed"
    return "check-failed"
