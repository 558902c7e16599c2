"""The terminal: live progress while checks run, then a verdict table and each failure in full."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from simulator.checks import Check, Verdict
from simulator.engine.delisting import RunVerdict, record_verdict
from simulator.engine.record import exchange_times, run_record
from simulator.engine.run import CheckResult, Run
from simulator.redaction import printable

STYLE = {
    Verdict.PASSED: ("PASS", "green"),
    Verdict.FAILED: ("FAIL", "bold red"),
    Verdict.WARNED: ("WARN", "yellow"),
    Verdict.SKIPPED: ("SKIP", "dim"),
}
SHOWN_FINDINGS = 3
"""Findings shown in full per check; the JSON and HTML reports hold every one."""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def verdict_text(verdict: Verdict) -> str:
    label, style = STYLE[verdict]
    return f"[{style}]{label}[/]"


class LiveProgress:
    """A progress bar over the checks, and one line per check as it finishes."""

    def __init__(self, console: Console, total: int, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
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
        if self.quiet:
            return
        self._progress.console.print(
            f"  {verdict_text(result.verdict)} {escape(result.check.id)} [dim]({result.duration:.2f} s)[/]"
        )


def print_run(
    console: Console,
    run: Run,
    reproduce: dict[str, str],
    *,
    table: bool = True,
    shown_findings: int | None = SHOWN_FINDINGS,
) -> None:
    """The verdict table, each failure in full, and the summary of a run that just finished."""
    record = run_record(run, reproduce)
    elapsed = {exchange.id: exchange.elapsed * 1000 for exchange in run.exchanges}
    for exchange in record["exchanges"]:  # the record keeps 0.1 ms; round once, as always
        exchange["elapsed_ms"] = elapsed.get(exchange["id"], exchange["elapsed_ms"])
    print_record(console, record, table=table, shown_findings=shown_findings)


def print_record(
    console: Console,
    record: Mapping[str, Any],
    *,
    table: bool = True,
    shown_findings: int | None = SHOWN_FINDINGS,
) -> None:
    """Render a run from its plain-data form (:func:`records.run_record`, or the run history's,
    which has the same shape): a live run and a stored one print alike. Everything in a
    record is already redacted. ``table=False`` (``-q``) leaves out the verdict table;
    ``shown_findings=None`` (``-v``) shows every finding of a check in full."""
    target = record["target"]
    kind = record.get("kind", "verify")
    if table:
        shown = printable(f"{target['url']} ({target['protocol']})", one_line=True)  # stored: any byte
        verdicts = Table(title=f"koosim {kind}: {escape(shown)}")
        verdicts.add_column("check", no_wrap=True)
        verdicts.add_column("verdict")
        verdicts.add_column("evidence", overflow="fold")
        for result in record["checks"]:
            verdicts.add_row(
                escape(result["id"]), verdict_text(Verdict(result["verdict"])), escape(result["evidence"])
            )
        console.print(verdicts)

    exchanges = {exchange["id"]: exchange for exchange in record["exchanges"]}
    for result in record["checks"]:
        if result["verdict"] in (Verdict.FAILED, Verdict.WARNED):
            _print_failure(console, result, exchanges, shown_findings)

    print_inbound(console, record.get("inbound") or [])

    assumptions = record["assumptions"]
    console.print(
        "[dim]" + escape("; ".join(f"{name}: {value}" for name, value in assumptions.items())) + "[/]"
    )
    summary = record["summary"]
    counts = ", ".join(f"{summary[v.value]} {v.value}" for v in Verdict)
    totals = (
        f"{plural(len(record['checks']), 'check')}: {counts}; {plural(len(record['exchanges']), 'exchange')}"
    )
    console.print(f"{totals}; run {record['run_id']}")
    print_delisting(console, record_verdict(record))


def print_delisting(console: Console, verdict: RunVerdict) -> None:
    """The delisting verdict: which published consequence the failures lead to (§10.3)."""
    style = "bold red" if verdict.reached else ("yellow" if verdict.counting else "green")
    console.print(f"[{style}]{escape(printable(verdict.headline, one_line=True))}[/]", highlight=False)
    for line in verdict.lines():
        console.print(f"  • {escape(printable(line, one_line=True))}", highlight=False)


SHOWN_INBOUND = 20
"""Inbound calls listed one a line; the JSON and HTML reports hold every one."""


def inbound_line(call: Mapping[str, Any]) -> str:
    """One inbound call on one line (Rich markup escaped): what the merchant asked, what koosim
    answered, and the gateway's verdict."""
    request, response = call["request"], call.get("response") or {}
    verdict = call.get("verdict") or {}
    gateway = verdict.get("gateway") or {}
    if gateway.get("authenticated"):
        auth = f"authenticated ({gateway.get('scheme')})"
    elif gateway:
        auth = f"refused by the gateway: {gateway.get('message') or gateway.get('reason')}"
    else:
        auth = "not authenticated"
    code = verdict.get("code") or response.get("result_code") or ""
    problems = verdict.get("problems") or []
    why = f" — {problems[0]}" if problems and gateway.get("authenticated") else ""
    text = f"{request['method']} {request['url']} → HTTP {response.get('status')} {code}; {auth}{why}"
    return escape(printable(text, one_line=True))


def print_inbound(console: Console, calls: Sequence[Mapping[str, Any]]) -> None:
    """The merchant's calls to the marketplace's open API during the run, one a line."""
    if not calls:
        return
    console.print(f"merchant → marketplace: {plural(len(calls), 'call')} to the open API", highlight=False)
    for call in calls[:SHOWN_INBOUND]:
        console.print(f"  ← {inbound_line(call)}", highlight=False)
    if len(calls) > SHOWN_INBOUND:
        console.print(f"  … {len(calls) - SHOWN_INBOUND} more in the JSON and HTML reports", highlight=False)


def _print_failure(
    console: Console,
    result: Mapping[str, Any],
    exchanges: Mapping[str, Mapping[str, Any]],
    shown_findings: int | None = SHOWN_FINDINGS,
) -> None:
    lines = [
        f"[bold]{escape(result['title'])}[/]",
        f"rule: protocol.md {escape(result['rule'])} ({result['severity']}). {escape(result['doc'])}",
    ]
    findings = result["findings"]
    shown = len(findings) if shown_findings is None else shown_findings
    for finding in findings[:shown]:
        lines.append("")
        lines.append(f"[red]✗ {escape(finding['message'])}[/]")
        lines.extend(
            _exchange_lines(exchanges[exchange_id])
            for exchange_id in finding["exchanges"][:2]
            if exchange_id in exchanges
        )
    if len(findings) > shown:
        more = len(findings) - shown
        lines.append(f"\n… and {more} more finding(s) in the JSON/HTML report (-v shows them)")
    if result.get("reproduce"):
        lines.append(f"\nreproduce: [cyan]{escape(printable(result['reproduce'], one_line=True))}[/]")
    style = "red" if result["verdict"] == Verdict.FAILED else "yellow"
    # Off a terminal the panel is as wide as its longest line: a URL or a body is never wrapped.
    panel = Panel(
        "\n".join(lines),
        title=escape(result["id"]),
        title_align="left",
        border_style=style,
        expand=console.is_terminal,
    )
    console.print(panel)


def _exchange_lines(exchange: Mapping[str, Any]) -> str:
    request = exchange["request"]
    text = f"  → {request['method']} {request['url']}"
    if exchange.get("attempt", 1) > 1:
        text += f" (attempt {exchange['attempt']})"
    text += f"\n    sent {exchange_times(exchange)}"
    if request["body"]:
        text += "\n    " + request["body"]
    response = exchange["response"]
    if response is not None:
        text += f"\n  ← HTTP {response['status']} in {exchange['elapsed_ms']:.0f} ms\n    " + response["body"]
    else:
        text += f"\n  ← {exchange['error'] or 'no answer'}"
    return escape(printable(text))


def print_catalog(console: Console, checks: Sequence[Check]) -> None:
    table = Table(title="koosim check catalog (rules: docs/protocol.md)")
    table.add_column("id", no_wrap=True)  # ids are copied into --checks: never cut them
    table.add_column("severity", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("what it checks", overflow="fold")
    for check in checks:
        only = "" if len(check.protocols) > 1 else f" ({next(iter(check.protocols))} only)"
        table.add_row(escape(check.id), check.severity.value, escape(check.rule), escape(check.title + only))
    console.print(table)
