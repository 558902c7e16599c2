"""``koosim scenarios``, ``koosim play`` and ``koosim explore``: the scenario commands.

Exit codes as ``koosim verify``: 0 every expectation met (explore: no failing sequence found),
1 at least one failed, 2 a malformed scenario file or another usage error, 3 the target could
not be reached.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from simulator.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    TargetInfo,
    db_option,
    fail,
    handle_errors,
    interrupted_code,
    interrupted_reason,
    make_console,
    no_preflight_option,
    sigterm_interrupts,
    with_target,
)
from simulator.engine.explore_defaults import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_STEPS, SAVE_DIR

# The modules below are imported where they are used: `koosim --help` and `koosim load` need
# none of them, and together they cost a third of a second (Hypothesis, jsonschema, requests).
if TYPE_CHECKING:
    from rich.console import Console

    from simulator.engine.explore import Exploration, Found
    from simulator.engine.player import Judgement, Player, Prepared, ScenarioOutcome, StepOutcome
    from simulator.engine.scenario import Scenario, Step
    from simulator.errors import BudgetSpent
    from simulator.store import Store
    from simulator.transport import Exchange, Target


def escape(text: str) -> str:
    """Rich's markup escape, imported when first needed (rich costs ``--help`` a tenth of a second)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


SHOWN_BODY_CHARS = 600
"""How much of an answer a failure shows; ``--step`` shows the whole (capped) body."""

scenarios_option = click.option(
    "--scenarios",
    "scenario_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder of your own scenario files, searched before the library (repeatable).",
)


@click.command(name="scenarios")
@scenarios_option
@click.option("--json", "as_json", is_flag=True, help="Print the scenarios as a JSON list instead.")
def scenarios(scenario_dirs: tuple[Path, ...], as_json: bool) -> None:
    """List the scenario library (and your --scenarios folders): name, file, steps, what it shows."""
    from rich.table import Table

    from simulator.engine.scenario import discover, library_dirs

    with handle_errors():
        entries = discover(library_dirs(scenario_dirs))
    broken = [entry for entry in entries if entry.scenario is None]
    if as_json:
        listed = [
            {
                "name": entry.scenario.name,
                "file": str(entry.path),
                "steps": len(entry.scenario.steps),
                "protocol": entry.scenario.protocol,
                "description": entry.scenario.description,
            }
            for entry in entries
            if entry.scenario is not None
        ]
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        for entry in broken:
            make_console(stderr=True).print(f"koosim: {entry.error}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE if broken else EXIT_OK)
    console = make_console()
    table = Table(title="koosim scenarios")
    table.add_column("name", no_wrap=True)  # the name is what `koosim play` takes: never cut it
    table.add_column("file", overflow="fold")
    table.add_column("steps", justify="right")
    table.add_column("protocol")
    table.add_column("what it plays", overflow="fold")
    for entry in sorted(entries, key=lambda e: e.scenario.name if e.scenario else ""):
        if entry.scenario is not None:
            scenario = entry.scenario
            table.add_row(
                escape(scenario.name),
                escape(_shown_path(entry.path)),
                str(len(scenario.steps)),
                scenario.protocol,
                escape(scenario.description),
            )
    console.print(table)
    console.print("play one: [cyan]koosim play NAME[/] (add --step to go call by call)", highlight=False)
    for entry in broken:
        make_console(stderr=True).print(f"koosim: {entry.error}", highlight=False, markup=False)
    sys.exit(EXIT_USAGE if broken else EXIT_OK)


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME_OR_FILE...")
@with_target(max_time=True)
@scenarios_option
@click.option("--step", "step_mode", is_flag=True, help="Show each call before sending it; Enter sends it.")
@click.option(
    "--seed", help="Use this seed instead of the file's (fresh ids for a merchant that kept the old)."
)
@db_option
def play(
    info: TargetInfo,
    names: tuple[str, ...],
    scenario_dirs: tuple[Path, ...],
    step_mode: bool,
    seed: str | None,
    db_path: Path,
) -> None:
    """Play scenarios (library names or files) against a merchant and judge every expectation.

    Each scenario is played in its own protocol unless --protocol is given, and recorded in the
    run history as a run of kind ``play`` (`koosim runs`, `koosim show`).
    """
    from simulator.engine.player import requirements
    from simulator.engine.scenario import find, library_dirs, load
    from simulator.store import Store

    protocol = info.flags["protocol"]
    info.settings  # noqa: B018 - a malformed setting ends the command before anything else
    dirs = library_dirs(scenario_dirs)
    loaded = [load(path) for name in names for path in find(name, dirs)]
    store = Store(db_path)
    console = make_console()
    outcomes: list[ScenarioOutcome] = []
    spent: BudgetSpent | None = None
    with info.open(budget=True) as target:
        targets = [dataclasses.replace(target, protocol=protocol or s.protocol) for s in loaded]
        problems = [p for scenario, t in zip(loaded, targets, strict=True) for p in requirements(scenario, t)]
        if problems:
            fail(problems[0], EXIT_USAGE)
        where = escape(info.where(target))
        console.print(f"koosim play: {len(loaded)} scenario(s) against {where}", highlight=False)
        interrupted: KeyboardInterrupt | None = None
        with sigterm_interrupts():
            try:
                for scenario, scenario_target in zip(loaded, targets, strict=True):
                    if spent is None:
                        outcome, spent = _play_one(console, store, scenario, scenario_target, seed, step_mode)
                        outcomes.append(outcome)
                    else:
                        console.print(
                            f"\n[bold]{escape(scenario.name)}[/]: [red]not run[/] ({escape(str(spent))})"
                        )
            except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: what was played, then 130 / 143
                interrupted = exc
    _print_summary(console, outcomes, info, complete=spent is None and interrupted is None)
    if interrupted is not None:
        console.print(
            f"[bold red]{interrupted_reason(interrupted)}[/]: {len(loaded) - len(outcomes)} scenario(s) "
            "not played to the end (`koosim runs --kind play` lists what was recorded)",
            highlight=False,
        )
        sys.exit(interrupted_code(interrupted))
    if spent is not None:
        not_run = len(loaded) - len(outcomes)
        console.print(
            f"[bold red]{escape(str(spent))}[/]: the scenario it stopped and {not_run} more not played "
            "to the end (--max-time, KOOSIM_MAX_TIME)",
            highlight=False,
        )
    failed = spent is not None or any(outcome.failed for outcome in outcomes)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _play_one(
    console: Console, store: Store, scenario: Scenario, target: Target, seed: str | None, step_mode: bool
) -> tuple[ScenarioOutcome, BudgetSpent | None]:
    """Play one scenario; the whole-run time budget, when it runs out, stops it between calls."""
    from simulator.engine.player import Player, ScenarioOutcome, step_result
    from simulator.errors import BudgetSpent
    from simulator.store import RunRecorder

    file = f"{_shown_path(scenario.path)}, " if scenario.path else ""
    shown_seed = scenario.seed if seed is None else seed
    console.print(
        f"\n[bold]{escape(scenario.name)}[/] ({escape(file)}{target.protocol}, "
        f"seed {escape(str(shown_seed))}): {len(scenario.steps)} steps",
        highlight=False,
    )
    if scenario.description:
        console.print(f"[dim]{escape(scenario.description)}[/]", highlight=False)
    recording = RunRecorder.start(
        store, target, kind="play", planned=len(scenario.steps), command=f"koosim play {scenario.name}"
    )
    player = Player(scenario, target, seed=seed, transport=recording.transport)
    outcome = ScenarioOutcome(scenario, target)
    pausing = step_mode
    spent: BudgetSpent | None = None
    try:
        for number, step in enumerate(scenario.steps, start=1):
            if not pausing:
                result = player.play_step(step)
                _print_step_line(console, result, target)
            else:
                result, pausing = _play_interactively(console, player, step, number, len(scenario.steps))
            outcome.steps.append(result)
            recording.add(step_result(result))
    except BudgetSpent as exc:
        spent = exc
    finally:
        player.close()
        recording.finish()
    failed = sum(1 for step in outcome.steps if step.failed)
    verdict = f"[bold red]{failed} of {len(outcome.steps)} steps failed[/]" if failed else "[green]all met[/]"
    if spent is not None:
        not_run = f"[red]{len(scenario.steps) - len(outcome.steps)} step(s) not run: {escape(str(spent))}[/]"
        verdict = f"{verdict}; {not_run}" if failed else not_run
    console.print(f"{escape(scenario.name)}: {verdict}", highlight=False)
    if recording.problem is not None:
        console.print(
            f"[yellow]the run history is incomplete: {escape(recording.problem)}[/]", highlight=False
        )
    else:
        console.print(f"[dim]recorded: koosim show {recording.id}[/]", highlight=False)
    return outcome, spent


# --- one step at a time -------------------------------------------------------------------------


def _play_interactively(
    console: Console, player: Player, step: Step, number: int, total: int
) -> tuple[StepOutcome, bool]:
    """Show the call, wait for Enter, send it, show the answer; return whether to keep pausing."""
    from simulator.engine.player import StepOutcome
    from simulator.engine.scenario import Unresolved
    from simulator.redaction import printable, redact

    console.rule(f"step {number}/{total} · {escape(step.id)} · {escape(step_title(step))}", align="left")
    if step.activity is None:
        console.print(f"a pause of {step.wait:g} s", highlight=False)
        return player.play_step(step), True
    try:
        prepared = player.prepare(step)
    except Unresolved as exc:  # a value it needs did not come from an earlier step
        outcome = StepOutcome(step, None, blocked=str(exc))
        _print_step_line(console, outcome, player.target)
        return outcome, True
    _print_request(console, prepared, player.target)
    console.print("[dim]press Enter to send (Ctrl+C stops)[/]", end="", highlight=False)
    line = sys.stdin.readline()
    keep_pausing = line != ""
    if not keep_pausing:
        console.print("\n[dim]no more input: playing the remaining steps without pausing[/]", highlight=False)
    else:
        console.print()
    if step.wait:
        console.print(f"[dim]waiting {step.wait:g} s[/]", highlight=False)
        time.sleep(step.wait)
    outcome = player.perform(prepared)
    for exchange in outcome.exchanges:
        console.print(escape(_response_text(exchange, player.target.secrets, limit=None)), highlight=False)
        if isinstance(exchange.response_json, dict):
            pretty = json.dumps(exchange.response_json, ensure_ascii=False, indent=2)
            console.print(escape(printable(redact(pretty, player.target.secrets))), highlight=False)
    for judgement in outcome.judgements:
        console.print(_judgement_text(judgement), highlight=False)
    return outcome, keep_pausing


def _print_request(console: Console, prepared: Prepared, target: Target) -> None:
    from simulator.redaction import printable, redact

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
    expectations = ", ".join(_expectation_names(step)) or "nothing (the answer is shown, not judged)"
    console.print(f"expects: {escape(expectations)}", highlight=False)


def _expectation_names(step: Step) -> list[str]:
    return [f"{key} {value}" if value is not True else key for key, value in step.expect.to_data().items()]


# --- output ----------------------------------------------------------------------------------------


def step_title(step: Step) -> str:
    """A step in a few words: ``refreshInstance of new (scene RENEWAL) ×2``."""
    if step.activity is None:
        return f"pause {step.wait:g} s"
    words = f"resend of {step.resend}" if step.resend else step.activity
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


def _judgement_text(judgement: Judgement) -> str:
    if judgement.passed:
        return f"  [green]✓[/] {escape(judgement.expectation)}"
    check = f" [{judgement.check_id}]" if judgement.check_id else ""
    note = _severity_note(judgement.check_id)
    return f"  [red]✗ {escape(judgement.expectation)}{escape(check)}[/]: {escape(judgement.message)}{note}"


def _severity_note(check_id: str | None) -> str:
    from simulator.checks.base import REGISTRY, Severity

    check = REGISTRY.get(check_id or "")
    if check is not None and check.severity is Severity.WARNING:
        return " [dim](a practice rule: koosim verify reports it as a warning)[/]"
    return ""


def _print_step_line(console: Console, outcome: StepOutcome, target: Target) -> None:
    from simulator.redaction import printable, redact

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
        console.print("    " + _judgement_text(judgement), highlight=False)
    shown = {id(j.exchange): j.exchange for j in outcome.failures if j.exchange is not None}
    for exchange in list(shown.values())[:2]:
        console.print(escape(_exchange_text(exchange, target.secrets)), highlight=False, style="dim")


def _exchange_text(exchange: Exchange, secrets: Sequence[str]) -> str:
    from simulator.redaction import body_text, printable, redact

    request = f"        → {exchange.method} {printable(redact(exchange.url, secrets), one_line=True)}"
    if exchange.request_body:
        request += "\n          " + body_text(exchange.request_body, secrets)[:SHOWN_BODY_CHARS]
    return request + "\n" + _response_text(exchange, secrets, limit=SHOWN_BODY_CHARS, indent="        ")


def _response_text(exchange: Exchange, secrets: Sequence[str], limit: int | None, indent: str = "") -> str:
    """The answer in one line; with ``limit=None`` a JSON body is left to the caller to show."""
    from simulator.redaction import body_text, printable, redact

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


def _print_summary(
    console: Console, outcomes: list[ScenarioOutcome], info: TargetInfo, complete: bool
) -> None:
    failed = [outcome for outcome in outcomes if outcome.failed]
    if not failed:
        if complete:
            console.print(f"\n[green]{len(outcomes)} scenario(s): every expectation met.[/]", highlight=False)
        return
    console.print(
        f"\n[bold red]{len(failed)} of {len(outcomes)} scenario(s) failed.[/] Failed checks:", highlight=False
    )
    for check_id in dict.fromkeys(c for outcome in failed for c in outcome.failed_checks):
        console.print(
            f"  {escape(check_id)}  [dim](the same rule in verify: {escape(info.reproduce(check_id))})[/]",
            highlight=False,
            soft_wrap=True,
        )


# --- explore ----------------------------------------------------------------------------------------


@click.command()
@with_target(max_time=True)
@click.option(
    "--max-examples",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_EXAMPLES,
    show_default=True,
    help="How many call sequences to try.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1, max=100),
    default=DEFAULT_MAX_STEPS,
    show_default=True,
    help="Calls per sequence at most.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Seed: the same seed tries the same sequences.",
)
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=SAVE_DIR,
    show_default=True,
    help="Where the smallest failing sequence is saved as a scenario file.",
)
@no_preflight_option
def explore(
    info: TargetInfo,
    max_examples: int,
    max_steps: int,
    seed: int,
    save_dir: Path,
    no_preflight: bool,
) -> None:
    """Try random sequences of marketplace calls; shrink a failure to a scenario `koosim play` replays.

    Failures found earlier are tried first (Hypothesis example database in .koosim/examples).
    """
    from simulator.engine.explore import Exploration
    from simulator.errors import BudgetSpent

    info.settings  # noqa: B018 - a malformed setting ends the command before anything else
    console = make_console()
    spent: BudgetSpent | None = None
    interrupted: KeyboardInterrupt | None = None
    with info.open(budget=True) as target, _hypothesis_home(HYPOTHESIS_HOME):
        console.print(
            f"koosim explore: seed {seed}, {max_examples} sequences (--max-examples; Hypothesis may add "
            f"a few, a failure ends it early and is then shrunk) of up to {max_steps} calls "
            f"against {escape(info.where(target))} ({target.protocol})",
            highlight=False,
        )
        if not target.sync_key:
            console.print("[dim]no sync key (KOOSIM_SYNC_KEY): user-sync calls are left out[/]")
        info.preflight(target, skip=no_preflight, seed=seed)
        exploration = Exploration(target, seed=seed, max_examples=max_examples, max_steps=max_steps)
        with _ExploreProgress(console, max_examples) as progress, sigterm_interrupts():
            exploration.on_progress = progress.update
            try:
                found = exploration.run()
            except BudgetSpent as exc:  # what was found so far, if anything, is still reported
                spent, found = exc, exploration.found
            except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: the same, then 130 / 143
                interrupted, found = exc, exploration.found
    if interrupted is not None:
        console.print(
            f"[bold red]{interrupted_reason(interrupted)}[/] after {exploration.examples} sequences "
            f"({exploration.calls} calls)",
            highlight=False,
        )
        if found is not None:
            _report_found(console, found, save_dir, info.flags, target)
        sys.exit(interrupted_code(interrupted))
    if spent is not None:
        console.print(
            f"[bold red]{escape(str(spent))}[/] after {exploration.examples} sequences "
            f"({exploration.calls} calls); the exploration stopped there (--max-time, KOOSIM_MAX_TIME)",
            highlight=False,
        )
    if found is None:
        if spent is not None:
            sys.exit(EXIT_FAILED)
        console.print(
            f"[green]No failure in {exploration.examples} sequences ({exploration.calls} calls): "
            "every invariant held.[/]",
            highlight=False,
        )
        sys.exit(EXIT_OK)
    sequences, calls = exploration.first_failure or (exploration.examples, exploration.calls)
    console.print(
        f"Found in sequence {sequences} after {calls} calls; shrunk in "
        f"{exploration.examples - sequences} more runs ({exploration.calls} calls in all).",
        highlight=False,
    )
    _report_found(console, found, save_dir, info.flags, target)
    sys.exit(EXIT_FAILED)


HYPOTHESIS_HOME = Path(".koosim/hypothesis")
"""Hypothesis' own storage (its constants cache) during explore: under .koosim/ with the rest,
not a stray .hypothesis/ in the merchant's working directory."""

PLAIN_PROGRESS_EVERY = 10.0
"""Off a terminal (a CI log), a progress line every this many seconds instead of a live line."""


@contextmanager
def _hypothesis_home(directory: Path) -> Iterator[None]:
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(directory.resolve())
    try:
        yield
    finally:
        set_hypothesis_home_dir(None)


class _ExploreProgress:
    """A one-line live status: sequences tried, calls sent and time spent, then the shrinking.
    Off a terminal, the same words as a plain line every :data:`PLAIN_PROGRESS_EVERY` seconds."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self.total = total
        self.console = console
        self._started = self._printed = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
        )
        self._task = self._progress.add_task("starting")

    def __enter__(self) -> _ExploreProgress:
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


def _report_found(
    console: Console, found: Found, save_dir: Path, flags: dict[str, Any], target: Target
) -> None:
    from simulator.redaction import redact

    scenario = found.scenario
    secrets = target.secrets
    console.print(
        f"[bold red]✗ {escape(found.check_id)}[/]: {escape(redact(found.message, secrets))}"
        + _severity_note(found.check_id),
        highlight=False,
    )
    if not found.reproduced:
        console.print(
            "[yellow]The failure did not happen again when replayed: the merchant is flaky "
            "(a race, a timeout); the sequence below failed once.[/]"
        )
    console.print(f"Smallest failing sequence ({len(scenario.steps)} calls):", highlight=False)
    for number, step in enumerate(scenario.steps, start=1):
        expectations = ", ".join(_expectation_names(step))
        console.print(
            f"  {number}. {escape(step.id)}: {escape(step_title(step))}"
            f"  [dim]expects {escape(expectations)}[/]",
            highlight=False,
        )
    try:
        path = _save(scenario, save_dir)
    except OSError as exc:
        fail(f"cannot save the scenario in {save_dir}: {exc.strerror}", EXIT_USAGE)
    words = ["koosim", "play", str(path)]
    for name in ("url", "protocol", "sync_url", "timeout"):
        if flags.get(name) is not None:
            words += [f"--{name.replace('_', '-')}", str(flags[name])]
    console.print(f"saved: {escape(str(path))}", highlight=False, soft_wrap=True)
    console.print(f"reproduce: [cyan]{escape(shlex.join(words))}[/]", highlight=False, soft_wrap=True)


def _save(scenario: Scenario, save_dir: Path) -> Path:
    """Write the scenario file and read it back, so that what was saved is known to load."""
    from simulator.engine.scenario import load

    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"{scenario.name}.yaml"
    header = "# Found by koosim explore. Replay it with: koosim play " + shlex.quote(str(path)) + "\n"
    path.write_text(header + scenario.to_yaml(), encoding="utf-8")
    load(path)
    return path
