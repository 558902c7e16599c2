"""``koosim verify``: run the check catalog against a merchant and report per rule."""

from __future__ import annotations

import difflib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from simulator.cli.common import (
    ReportFiles,
    TargetInfo,
    UsageError,
    db_option,
    fail,
    fail_with,
    interrupted_code,
    interrupted_reason,
    make_console,
    no_preflight_option,
    sigterm_interrupts,
    with_target,
)


def demo_keys_help() -> str:
    """What ``koosim verify --help`` ends with: the public demo keys of ``koosim merchant``."""
    from simulator.reference import DEMO_ACCESS_KEY, DEMO_SYNC_KEY

    return (
        "Keys come from KOOSIM_ACCESS_KEY / KOOSIM_SYNC_KEY (or koosim.toml), never from the command "
        "line. `koosim merchant` answers with the public demo keys unless those are set; to verify "
        "it from a second terminal:\n\n\b\n"
        f"  export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY} KOOSIM_SYNC_KEY={DEMO_SYNC_KEY}\n"
        "  koosim verify --url http://127.0.0.1:8080/produceAPI"
    )


class VerifyCommand(click.Command):
    """Its help ends with the demo keys, read from the reference merchant only when shown
    (``koosim --help`` imports no Flask)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.epilog = demo_keys_help()
        super().format_epilog(ctx, formatter)


def select_checks(patterns: tuple[str, ...]) -> list[Any]:
    """The checks ``--checks`` names; every glob must match one (exit 2 naming the one that does not)."""
    from fnmatch import fnmatchcase

    from simulator.checks import catalog, select

    ids = [check.id for check in catalog()]
    on_request = {check.id for check in catalog(by_request=True)} - set(ids)
    for pattern in patterns:
        if pattern not in on_request and not any(fnmatchcase(check_id, pattern) for check_id in ids):
            close = difflib.get_close_matches(pattern, ids, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"--checks {pattern}: no check matches{hint}; `koosim checks` lists them")
    try:
        return select(patterns)
    except LookupError as exc:
        raise UsageError(str(exc)) from None


DEBUG_ORDERS = "conversation.debug-orders"
"""The check ``--debug-orders`` runs (docs/protocol.md §8.2, §10.4)."""


class FailFast(Exception):
    """A check failed and ``--fail-fast`` asked to stop there."""


@click.command(cls=VerifyCommand)
@with_target(max_time=True)
@click.option(
    "--checks", "patterns", multiple=True, metavar="GLOB", help="Only checks whose id matches (repeatable)."
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    help="Seed of the generated order ids (default: a new one each run, shown in reports).",
)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON report."
)
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), help="Write a self-contained HTML report."
)
@click.option(
    "--debug-orders",
    is_flag=True,
    help="Replay the seller console's interface debugging (接口调试) with the MOCK orders and testFlag=1 "
    f"({DEBUG_ORDERS}, then the per-answer checks), instead of the catalog.",
)
@click.option("--fail-fast", "-x", is_flag=True, help="Stop at the first failed check (exit 1).")
@no_preflight_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the failures and the summary.")
@click.option("--verbose", "-v", is_flag=True, help="Print every finding of a failure in full.")
@db_option
def verify(
    info: TargetInfo,
    patterns: tuple[str, ...],
    seed: int | None,
    junit: Path | None,
    json_path: Path | None,
    html: Path | None,
    debug_orders: bool,
    fail_fast: bool,
    no_preflight: bool,
    quiet: bool,
    verbose: bool,
    db_path: Path,
) -> None:
    """Run the conformance checks against a merchant and report per rule.

    The run is recorded in the run history as it happens (`koosim runs`, `koosim show`).
    Exit codes: 0 passed, 1 a check failed, 2 usage, 3 unreachable or misconfigured target
    (the preflight), 130/143 interrupted (Ctrl-C/SIGTERM: the summary so far and partial reports).
    """
    from rich.markup import escape

    from simulator import __version__
    from simulator.checks import Verdict
    from simulator.engine.run import run_checks
    from simulator.model import fresh_seed
    from simulator.report import console as console_report
    from simulator.report.console import plural
    from simulator.store import RunRecorder, Store

    if quiet and verbose:
        raise UsageError("-q/--quiet and -v/--verbose contradict each other")
    reports = ReportFiles(junit=junit, json_path=json_path, html=html)  # before any traffic
    given_seed = seed
    seed = fresh_seed() if seed is None else seed
    settings = info.settings
    if debug_orders and patterns:
        raise UsageError("--debug-orders runs its own selection: leave out --checks")
    checks = select_checks((DEBUG_ORDERS, "contract.*", "timing.*") if debug_orders else patterns)
    console = make_console()
    recorder = RunRecorder(
        Store(db_path), planned=len(checks), reproduce=lambda check_id: info.reproduce(check_id, given_seed)
    )
    started: list[Any] = []
    sent_first: list[Any] = []  # the preflight's exchange: part of the run and of its history
    stopped: str | None = None
    exit_code: int | None = None

    def begin(run: Any) -> None:
        started.append(run)
        recorder.begin(run)
        for exchange in sent_first:
            run.exchanges.append(exchange)
            recorder.exchange(exchange)

    def finished(result: Any) -> None:
        recorder.result(result)
        progress.finished(result)
        if fail_fast and result.verdict is Verdict.FAILED:
            raise FailFast(result.check.id)

    with sigterm_interrupts():
        try:
            with info.open(budget=True) as target:
                where = escape(info.where(target))
                console.print(
                    f"koosim {__version__}: {plural(len(checks), 'check')} against {where} "
                    f"({target.protocol}, profile {target.profile}), seed {seed}"
                )
                console.print(f"[dim]{escape(target.clock.describe())}[/]", highlight=False)
                console.print(escape(info.market_line()), highlight=False)
                first = info.preflight(target, skip=no_preflight, seed=seed)
                sent_first.extend([] if first is None else [first])
                progress = console_report.LiveProgress(console, len(checks), quiet=quiet)
                with progress:
                    run = run_checks(
                        target,
                        checks,
                        seed=seed,
                        on_start=progress.started,
                        on_result=finished,
                        on_begin=begin,
                        on_exchange=recorder.exchange,
                        delivery=settings.delivery,
                        inbound=None if info.market is None else info.market.log,
                        on_inbound=recorder.inbound,
                    )
        except FailFast as stop:
            run = started[0]
            stopped = f"stopped at the first failed check, {stop} (--fail-fast)"
        except KeyboardInterrupt as interruption:
            if not started:
                fail(interrupted_reason(interruption), interrupted_code(interruption))
            run, exit_code = started[0], interrupted_code(interruption)
            stopped = interrupted_reason(interruption)
    if run.finished_at is None:
        run.finished_at = time.time()
    recorder.finish(run, error=stopped if exit_code is not None else None)
    reproduce = {result.check.id: info.reproduce(result.check.id, given_seed) for result in run.results}
    console_report.print_run(
        console, run, reproduce, table=not quiet, **({"shown_findings": None} if verbose else {})
    )
    if run.budget_spent is not None:
        console.print(
            f"[bold red]whole-run time budget of {run.budget_spent:g} s spent: "
            f"{plural(len(run.not_run), 'check')} not run[/] (--max-time, KOOSIM_MAX_TIME)",
            highlight=False,
        )
    if stopped is not None:
        not_run = len(checks) - len(run.results)
        console.print(f"[bold red]{stopped}: {plural(not_run, 'check')} not run[/]", highlight=False)
    if recorder.problem is None:
        console.print(f"[dim]recorded in {escape(str(db_path))}: koosim show {run.id}[/]", highlight=False)
    else:
        make_console(stderr=True).print(
            f"koosim: the run history is incomplete: {recorder.problem}", highlight=False, markup=False
        )
    _write_reports(run, reproduce, reports, partial=stopped)
    sys.exit(run.exit_code if exit_code is None else exit_code)


def _write_reports(run: Any, reproduce: dict[str, str], reports: ReportFiles, partial: str | None) -> None:
    from simulator.engine.record import run_record
    from simulator.report import html as html_report
    from simulator.report import junit as junit_report

    if not reports.paths:
        return
    record = run_record(run, reproduce)
    if partial is not None:
        record["partial"] = partial
    writers = {
        "json_path": lambda: json.dumps(record, ensure_ascii=False, indent=2),
        "junit": lambda: junit_report.render(record),
        "html": lambda: html_report.render(record),
    }
    try:
        reports.write(lambda name: writers[name]())
    except UsageError as error:
        fail_with(error)
