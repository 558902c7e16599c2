"""What ``koosim play`` and ``koosim explore`` print: steps, calls, answers, judgements, progress.

Every merchant- or user-supplied string goes through :func:`~simulator.redaction.redact` and
:func:`~simulator.redaction.printable` before it reaches the terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from simulator.checks.base import REGISTRY, Severity
from simulator.clock import format_duration
from simulator.redaction import body_text, printable, redact

if TYPE_CHECKING:
    from simulator.engine.explore import Exploration
    from simulator.engine.player import Judgement, Prepared, ScenarioOutcome, StepOutcome
    from simulator.engine.scenario import Step
    from simulator.transport import Exchange, Target


SHOWN_BODY_CHARS = 600
"""How much of an answer a failure shows; ``--step`` shows the whole (capped) body."""


PLAIN_PROGRESS_EVERY = 10.0
"""Off a terminal (a CI log), a progress line every this many seconds instead of a live line."""


def print_request(console: Console, prepared: Prepared, target: Target) -> None:

    step = prepared.step
    secrets = target.secrets
    if step.is_sync:
        line = f"→ POST {target.sync_call_url(step.call)}  (x-timestamp, x-nonce, x-sign added when sent)"
    elif target.protocol == "v1":
        line = f"→ GET {target.url}?<the fields below>&timeStamp=…&authToken=…  (signed when sent)"
    else:
        line = f"→ POST {target.url}?signature=…&timestamp=…&nonce=…  (signed when sent)"
    console.print(escape(printable(redact(line, secrets))), highlight=False)
    body = json.dumps(prepared.fields, ensure_ascii=False, indent=2)
    console.print(escape(printable(redact(body, secrets))), highlight=False)
    copies = len(prepared.copies)
    if copies > 1:
        how = "at the same moment" if step.concurrent > 1 else "one after the other"
        fresh = ", each with a new businessId" if "businessId" in prepared.fields else ""
        console.print(f"{copies} copies, {how}{fresh}", highlight=False)
    expectations = ", ".join(expectation_names(step)) or "nothing (the answer is shown, not judged)"
    console.print(f"expects: {escape(expectations)}", highlight=False)


def expectation_names(step: Step) -> list[str]:
    return [f"{key} {value}" if value is not True else key for key, value in step.expect.to_data().items()]


def step_title(step: Step) -> str:
    """A step in a few words: ``refreshInstance of new (scene RENEWAL) ×2``."""
    if step.activity is None:
        parts = [f"{step.wait:g} s"] if step.wait else []
        if step.advance is not None:
            parts.append(f"advance the marketplace clock {format_duration(step.advance)}")
        return "pause " + ", ".join(parts)
    words = f"resend of {step.resend}" if step.resend else step.activity
    if step.advance is not None:
        words = f"after {format_duration(step.advance)} of marketplace time: {words}"
    if step.of:
        words += f" of {', '.join(step.of)}"
    details = [f"{name} {step.fields[name]}" for name in ("status", "scene", "flag") if name in step.fields]
    if details:
        words += f" ({', '.join(str(d) for d in details)})"
    if step.repeat > 1:
        words += f" ×{step.repeat}"
    if step.concurrent > 1:
        words += f" ×{step.concurrent} at once"
    return words


def judgement_text(judgement: Judgement) -> str:
    if judgement.passed:
        return f"  [green]✓[/] {escape(judgement.expectation)}"
    check = f" [{judgement.check_id}]" if judgement.check_id else ""
    note = severity_note(judgement.check_id)
    return f"  [red]✗ {escape(judgement.expectation)}{escape(check)}[/]: {escape(judgement.message)}{note}"


def severity_note(check_id: str | None) -> str:

    check = REGISTRY.get(check_id or "")
    if check is not None and check.severity is Severity.WARNING:
        return " [dim](a practice rule: koosim verify reports it as a warning)[/]"
    return ""


def print_step_line(console: Console, outcome: StepOutcome, target: Target) -> None:

    step = outcome.step
    mark = "[red]✗[/]" if outcome.failed else "[green]✓[/]"
    codes = ", ".join(dict.fromkeys(e.result_code or "—" for e in outcome.exchanges))
    codes = printable(redact(codes, target.secrets), one_line=True)  # a merchant may answer anything
    elapsed = sum(e.elapsed for e in outcome.exchanges) * 1000
    timing = f" [dim]{elapsed:.0f} ms[/]" if outcome.exchanges else ""
    console.print(
        f"  {mark} {escape(step.id)}: {escape(step_title(step))}"
        + (f" → {escape(codes)}" if codes else "")
        + timing,
        highlight=False,
    )
    if outcome.blocked is not None:
        console.print(
            f"      [red]not sent[/]: {escape(printable(redact(outcome.blocked, target.secrets)))}",
            highlight=False,
        )
    for judgement in outcome.failures:
        console.print("    " + judgement_text(judgement), highlight=False)
    shown = {id(j.exchange): j.exchange for j in outcome.failures if j.exchange is not None}
    for exchange in list(shown.values())[:2]:
        console.print(escape(exchange_text(exchange, target.secrets)), highlight=False, style="dim")


def exchange_text(exchange: Exchange, secrets: Sequence[str]) -> str:

    request = f"        → {exchange.method} {printable(redact(exchange.url, secrets), one_line=True)}"
    if exchange.request_body:
        request += "\n          " + body_text(exchange.request_body, secrets)[:SHOWN_BODY_CHARS]
    return request + "\n" + response_text(exchange, secrets, limit=SHOWN_BODY_CHARS, indent="        ")


def response_text(exchange: Exchange, secrets: Sequence[str], limit: int | None, indent: str = "") -> str:
    """The answer in one line; with ``limit=None`` a JSON body is left to the caller to show."""

    label = f"{exchange.label}: " if "copy" in exchange.label else ""
    if not exchange.answered:
        return f"{indent}← {label}{printable(redact(exchange.error or 'no answer', secrets))}"
    head = f"{indent}← {label}HTTP {exchange.status} in {exchange.elapsed * 1000:.0f} ms"
    if limit is None and isinstance(exchange.response_json, dict):
        return head
    body = body_text(exchange.response_body, secrets)
    if limit is not None and len(body) > limit:
        body = body[:limit] + "…"
    return f"{head}: {body}"


def print_summary(
    console: Console, outcomes: list[ScenarioOutcome], reproduce: Callable[[str], str], complete: bool
) -> None:
    failed = [outcome for outcome in outcomes if outcome.failed]
    if not failed:
        warned = [outcome for outcome in outcomes if outcome.warned]
        if complete and warned:
            console.print(
                f"\n[green]{len(outcomes)} scenario(s): no rule broken[/]; {len(warned)} with warnings "
                "(ASSUMPTIONs, never failing): " + ", ".join(escape(o.scenario.name) for o in warned),
                highlight=False,
            )
        elif complete:
            console.print(f"\n[green]{len(outcomes)} scenario(s): every expectation met.[/]", highlight=False)
        return
    console.print(
        f"\n[bold red]{len(failed)} of {len(outcomes)} scenario(s) failed.[/] Failed checks:", highlight=False
    )
    for check_id in dict.fromkeys(c for outcome in failed for c in outcome.failed_checks):
        console.print(
            f"  {escape(check_id)}  [dim](the same rule in verify: {escape(reproduce(check_id))})[/]",
            highlight=False,
            soft_wrap=True,
        )


class ExploreProgress:
    """A one-line live status: sequences tried, calls sent and time spent, then the shrinking.
    Off a terminal, the same words as a plain line every :data:`PLAIN_PROGRESS_EVERY` seconds."""

    def __init__(self, console: Console, total: int) -> None:

        self.total = total
        self.console = console
        self._started = self._printed = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
        )
        self._task = self._progress.add_task("starting")

    def __enter__(self) -> ExploreProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, exploration: Exploration) -> None:
        if exploration.shrinking:
            text = (
                f"shrinking: {exploration.failing_runs} failing runs, smallest so far "
                f"{exploration.smallest} calls ({exploration.calls} calls sent)"
            )
        else:
            tried = min(exploration.examples, self.total)
            text = f"sequence {tried}/{self.total} · {exploration.calls} calls sent"
        now = time.monotonic()
        text += f" · {now - self._started:.0f} s"
        if self.console.is_terminal:
            self._progress.update(self._task, description=text)
        elif now - self._printed >= PLAIN_PROGRESS_EVERY:
            self._printed = now
            self.console.print(f"explore: {text}", highlight=False, markup=False)
