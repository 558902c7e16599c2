"""The terminal: live progress while checks run, then a verdict table and each failure in full."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from simulator.checks import Check, Verdict
from simulator.report.records import body_text, redact
from simulator.suite import CheckResult, Run
from simulator.transport import Exchange

STYLE = {
    Verdict.PASSED: ("PASS", "green"),
    Verdict.FAILED: ("FAIL", "bold red"),
    Verdict.WARNED: ("WARN", "yellow"),
    Verdict.SKIPPED: ("SKIP", "dim"),
}
SHOWN_FINDINGS = 3
"""Findings shown in full per check; the JSON and HTML reports hold every one."""


def verdict_text(verdict: Verdict) -> str:
    label, style = STYLE[verdict]
    return f"[{style}]{label}[/]"


class LiveProgress:
    """A progress bar over the checks, and one line per check as it finishes."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("starting", total=total)

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def started(self, check: Check) -> None:
        self._progress.update(self._task, description=escape(check.id))

    def finished(self, result: CheckResult) -> None:
        self._progress.advance(self._task)
        self._progress.console.print(
            f"  {verdict_text(result.verdict)} {escape(result.check.id)} [dim]({result.duration:.2f} s)[/]"
        )


def print_run(console: Console, run: Run, reproduce: dict[str, str]) -> None:
    secrets = run.target.secrets
    table = Table(title=f"koosim verify: {escape(redact(run.target.url, secrets))} ({run.target.protocol})")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("evidence", overflow="fold")
    for result in run.results:
        table.add_row(
            escape(result.check.id), verdict_text(result.verdict), escape(redact(result.evidence, secrets))
        )
    console.print(table)

    for result in run.results:
        if result.verdict in (Verdict.FAILED, Verdict.WARNED):
            _print_failure(console, result, secrets, reproduce[result.check.id])

    console.print(
        "[dim]" + escape("; ".join(f"{name}: {value}" for name, value in run.assumptions.items())) + "[/]"
    )
    counts = ", ".join(f"{run.count(v)} {v.value}" for v in Verdict)
    console.print(f"{len(run.results)} checks: {counts}; {len(run.exchanges)} exchanges; run {run.id}")
    if run.delisting_risk:
        console.print(
            "[bold red]Delisting risk: the real marketplace would treat this interface as failing[/] "
            f"({run.count(Verdict.FAILED)} documented rule(s) broken)."
        )
    else:
        console.print("[green]No delisting risk found: every documented rule checked holds.[/]")


def _print_failure(console: Console, result: CheckResult, secrets: Sequence[str], command: str) -> None:
    check = result.check
    lines = [
        f"[bold]{escape(check.title)}[/]",
        f"rule: protocol.md {escape(check.rule)} ({check.severity.value}). {escape(check.doc)}",
    ]
    for finding in result.findings[:SHOWN_FINDINGS]:
        lines.append("")
        lines.append(f"[red]✗ {escape(redact(finding.message, secrets))}[/]")
        lines.extend(_exchange_lines(exchange, secrets) for exchange in finding.exchanges[:2])
    if len(result.findings) > SHOWN_FINDINGS:
        lines.append(
            f"\n… and {len(result.findings) - SHOWN_FINDINGS} more finding(s) in the JSON/HTML report"
        )
    lines.append(f"\nreproduce: [cyan]{escape(command)}[/]")
    style = "red" if result.verdict is Verdict.FAILED else "yellow"
    console.print(Panel("\n".join(lines), title=escape(check.id), title_align="left", border_style=style))


def _exchange_lines(exchange: Exchange, secrets: Sequence[str]) -> str:
    request = f"  → {exchange.method} {redact(exchange.url, secrets)}"
    if exchange.request_body:
        request += "\n    " + body_text(exchange.request_body, secrets)
    if exchange.answered:
        response = f"  ← HTTP {exchange.status} in {exchange.elapsed * 1000:.0f} ms\n    " + body_text(
            exchange.response_body, secrets
        )
    else:
        response = f"  ← {redact(exchange.error or 'no answer', secrets)}"
    return escape(f"{request}\n{response}")


def print_catalog(console: Console, checks: Sequence[Check]) -> None:
    table = Table(title="koosim check catalog")
    table.add_column("id")
    table.add_column("severity")
    table.add_column("rule")
    table.add_column("protocols")
    table.add_column("what it checks", overflow="fold")
    for check in checks:
        table.add_row(
            escape(check.id),
            check.severity.value,
            escape(f"protocol.md {check.rule}"),
            "/".join(sorted(check.protocols)),
            escape(check.title),
        )
    console.print(table)
