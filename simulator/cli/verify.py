"""``koosim verify``: run the check catalog against a merchant and report per rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from simulator.cli.common import EXIT_USAGE, TargetInfo, UsageError, db_option, fail, with_target


@click.command()
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
@db_option
def verify(
    info: TargetInfo,
    patterns: tuple[str, ...],
    seed: int | None,
    junit: Path | None,
    json_path: Path | None,
    html: Path | None,
    db_path: Path,
) -> None:
    """Run the conformance checks against a merchant and report per rule.

    The run is recorded in the run history as it happens (`koosim runs`, `koosim show`).
    """
    from rich.console import Console
    from rich.markup import escape

    from simulator import __version__
    from simulator.checks import select
    from simulator.engine.run import run_checks
    from simulator.model import fresh_seed
    from simulator.report import console as console_report
    from simulator.report.console import plural
    from simulator.store import RunRecorder, Store

    given_seed = seed
    seed = fresh_seed() if seed is None else seed
    settings = info.settings
    try:
        checks = select(patterns)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    console = Console()
    recorder = RunRecorder(
        Store(db_path), planned=len(checks), reproduce=lambda check_id: info.reproduce(check_id, given_seed)
    )

    def finished(result: Any) -> None:
        recorder.result(result)
        progress.finished(result)

    with info.open(budget=True) as target:
        console.print(
            f"koosim {__version__}: {plural(len(checks), 'check')} against {info.where(target)} "
            f"({target.protocol}), seed {seed}"
        )
        with console_report.LiveProgress(console, len(checks)) as progress:
            run = run_checks(
                target,
                checks,
                seed=seed,
                on_start=progress.started,
                on_result=finished,
                on_begin=recorder.begin,
                on_exchange=recorder.exchange,
                resend_policy=settings.resend_policy,
            )
    recorder.finish(run)
    reproduce = {result.check.id: info.reproduce(result.check.id, given_seed) for result in run.results}
    console_report.print_run(console, run, reproduce)
    if run.budget_spent is not None:
        console.print(
            f"[bold red]whole-run time budget of {run.budget_spent:g} s spent: "
            f"{plural(len(run.not_run), 'check')} not run[/] (--max-time, KOOSIM_MAX_TIME)",
            highlight=False,
        )
    if recorder.problem is None:
        console.print(f"[dim]recorded in {escape(str(db_path))}: koosim show {run.id}[/]", highlight=False)
    else:
        Console(stderr=True).print(
            f"koosim: the run history is incomplete: {recorder.problem}", highlight=False, markup=False
        )
    _write_reports(run, reproduce, junit=junit, json_path=json_path, html=html)
    sys.exit(run.exit_code)


def _write_reports(run: Any, reproduce: dict[str, str], **paths: Path | None) -> None:
    from simulator.engine.record import run_record
    from simulator.report import html as html_report
    from simulator.report import junit as junit_report

    record = run_record(run, reproduce)
    writers = {
        "json_path": lambda: json.dumps(record, ensure_ascii=False, indent=2),
        "junit": lambda: junit_report.render(record),
        "html": lambda: html_report.render(record),
    }
    for name, path in paths.items():
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(writers[name](), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)
