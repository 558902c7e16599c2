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
from collections.abc import Iterator
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

    from simulator.engine.explore import Found
    from simulator.engine.player import Player, ScenarioOutcome, StepOutcome
    from simulator.engine.scenario import Scenario, Step
    from simulator.errors import BudgetSpent
    from simulator.openapi import InboundCall, InboundLog
    from simulator.store import Store
    from simulator.transport import Target


def escape(text: str) -> str:
    """Rich's markup escape, imported when first needed (rich costs ``--help`` a tenth of a second)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


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
    from simulator.engine.player import not_applicable, requirements
    from simulator.engine.scenario import find, library_dirs, load
    from simulator.report import playback as show
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
        # a scenario for another product profile is skipped before anything is sent (§1.2)
        skipped = {s.name: r for s, t in zip(loaded, targets, strict=True) if (r := not_applicable(s, t))}
        problems = [
            p
            for scenario, t in zip(loaded, targets, strict=True)
            if scenario.name not in skipped
            for p in requirements(scenario, t)
        ]
        if problems:
            fail(problems[0], EXIT_USAGE)
        where = escape(info.where(target))
        console.print(
            f"koosim play: {len(loaded)} scenario(s) against {where}, profile {target.profile}",
            highlight=False,
        )
        console.print(f"[dim]{escape(target.clock.describe())}[/]", highlight=False)
        console.print(escape(info.market_line()), highlight=False)
        log = None if info.market is None else info.market.log
        interrupted: KeyboardInterrupt | None = None
        with sigterm_interrupts():
            try:
                for scenario, scenario_target in zip(loaded, targets, strict=True):
                    if scenario.name in skipped:
                        reason = escape(skipped[scenario.name])
                        console.print(
                            f"\n[bold]{escape(scenario.name)}[/]: [yellow]skipped[/] ({reason})",
                            highlight=False,
                        )
                    elif spent is None:
                        outcome, spent = _play_one(
                            console, store, scenario, scenario_target, seed, step_mode, log
                        )
                        outcomes.append(outcome)
                    else:
                        console.print(
                            f"\n[bold]{escape(scenario.name)}[/]: [red]not run[/] ({escape(str(spent))})"
                        )
            except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: what was played, then 130 / 143
                interrupted = exc
    show.print_summary(console, outcomes, info.reproduce, complete=spent is None and interrupted is None)
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
    console: Console,
    store: Store,
    scenario: Scenario,
    target: Target,
    seed: str | None,
    step_mode: bool,
    log: InboundLog | None = None,
) -> tuple[ScenarioOutcome, BudgetSpent | None]:
    """Play one scenario; the whole-run time budget, when it runs out, stops it between calls.

    The merchant's calls to the open API (``log``) during the scenario are part of its run: in
    the history, and shown after the step during which they came (``--step`` too)."""
    from contextlib import nullcontext

    from simulator.engine.player import Player, ScenarioOutcome, step_result
    from simulator.engine.record import inbound_record
    from simulator.errors import BudgetSpent
    from simulator.report import playback as show
    from simulator.report.console import inbound_line
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
    arrived: list[InboundCall] = []

    def heard(call: InboundCall) -> None:
        arrived.append(call)
        if recording.run is not None:
            recording.run.inbound.append(call)
        recording.inbound(call)

    def show_arrived() -> None:
        while arrived:
            record = inbound_record(arrived.pop(0), target.secrets)
            console.print(f"    [dim]merchant → marketplace[/] {inbound_line(record)}", highlight=False)

    try:
        with nullcontext() if log is None else log.listen(heard):
            for number, step in enumerate(scenario.steps, start=1):
                if not pausing:
                    result = player.play_step(step)
                    show.print_step_line(console, result, target)
                else:
                    result, pausing = _play_interactively(console, player, step, number, len(scenario.steps))
                outcome.steps.append(result)
                recording.add(step_result(result))
                show_arrived()
    except BudgetSpent as exc:
        spent = exc
    finally:
        player.close()
        recording.finish()
        show_arrived()
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
    from simulator.report import playback as show

    console.rule(f"step {number}/{total} · {escape(step.id)} · {escape(show.step_title(step))}", align="left")
    if step.activity is None:
        console.print(show.step_title(step), highlight=False, markup=False)
        return player.play_step(step), True
    try:
        prepared = player.prepare(step)
    except Unresolved as exc:  # a value it needs did not come from an earlier step
        outcome = StepOutcome(step, None, blocked=str(exc))
        show.print_step_line(console, outcome, player.target)
        return outcome, True
    show.print_request(console, prepared, player.target)
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
    player.advance(step)
    outcome = player.perform(prepared)
    for exchange in outcome.exchanges:
        answer = show.response_text(exchange, player.target.secrets, limit=None)
        console.print(escape(answer), highlight=False)
        if isinstance(exchange.response_json, dict):
            pretty = json.dumps(exchange.response_json, ensure_ascii=False, indent=2)
            console.print(escape(printable(redact(pretty, player.target.secrets))), highlight=False)
    for judgement in outcome.judgements:
        console.print(show.judgement_text(judgement), highlight=False)
    return outcome, keep_pausing


# --- output ----------------------------------------------------------------------------------------


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
@click.option(
    "--warnings",
    "hunt_warnings",
    is_flag=True,
    help="Also hunt rules resting on ASSUMPTIONs (warnings in verify); they then fail like errors.",
)
@no_preflight_option
def explore(
    info: TargetInfo,
    max_examples: int,
    max_steps: int,
    seed: int,
    save_dir: Path,
    hunt_warnings: bool,
    no_preflight: bool,
) -> None:
    """Try random sequences of marketplace calls; shrink a failure to a scenario `koosim play` replays.

    Failures found earlier are tried first (Hypothesis example database in .koosim/examples).
    """
    from simulator.engine.explore import Exploration, nothing_to_explore
    from simulator.errors import BudgetSpent
    from simulator.report import playback as show

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
        console.print(f"[dim]{escape(target.clock.describe())}[/]", highlight=False)
        console.print(escape(info.market_line()), highlight=False)
        heard_before = 0 if info.market is None else info.market.log.total
        if not target.sync_key:
            console.print("[dim]no sync key (KOOSIM_SYNC_KEY): user-sync calls are left out[/]")
        if (nothing := nothing_to_explore(target)) is not None:  # skipped with the reason (§1.2)
            console.print(f"explore: skipped: {escape(nothing)}", highlight=False)
            sys.exit(EXIT_OK)
        info.preflight(target, skip=no_preflight, seed=seed)
        exploration = Exploration(
            target,
            seed=seed,
            max_examples=max_examples,
            max_steps=max_steps,
            hunt_warnings=hunt_warnings,
            inbound=None if info.market is None else info.market.log,
        )
        with show.ExploreProgress(console, max_examples) as progress, sigterm_interrupts():
            exploration.on_progress = progress.update
            try:
                found = exploration.run()
            except BudgetSpent as exc:  # what was found so far, if anything, is still reported
                spent, found = exc, exploration.found
            except KeyboardInterrupt as exc:  # Ctrl-C / SIGTERM: the same, then 130 / 143
                interrupted, found = exc, exploration.found
        if info.market is not None:
            _print_inbound_summary(console, info.market.log.since(heard_before))
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


def _print_inbound_summary(console: Console, calls: list[InboundCall]) -> None:
    """One line on the merchant's calls to the open API during a command that keeps no run."""
    if not calls:
        return
    refused = sum(1 for call in calls if not call.accepted)
    apis = ", ".join(sorted({call.api or "unknown" for call in calls}))
    console.print(
        f"merchant → marketplace: {len(calls)} call(s) to the open API ({escape(apis)}), {refused} refused",
        highlight=False,
    )


@contextmanager
def _hypothesis_home(directory: Path) -> Iterator[None]:
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(directory.resolve())
    try:
        yield
    finally:
        set_hypothesis_home_dir(None)


def _report_found(
    console: Console, found: Found, save_dir: Path, flags: dict[str, Any], target: Target
) -> None:
    from simulator.redaction import redact
    from simulator.report import playback as show

    scenario = found.scenario
    secrets = target.secrets
    console.print(
        f"[bold red]✗ {escape(found.check_id)}[/]: {escape(redact(found.message, secrets))}"
        + show.severity_note(found.check_id),
        highlight=False,
    )
    if not found.reproduced:
        console.print(
            "[yellow]The failure did not happen again when replayed: the merchant is flaky "
            "(a race, a timeout); the sequence below failed once.[/]"
        )
    console.print(f"Smallest failing sequence ({len(scenario.steps)} calls):", highlight=False)
    for number, step in enumerate(scenario.steps, start=1):
        expectations = ", ".join(show.expectation_names(step))
        console.print(
            f"  {number}. {escape(step.id)}: {escape(show.step_title(step))}"
            f"  [dim]expects {escape(expectations)}[/]",
            highlight=False,
        )
    try:
        path = _save(scenario, save_dir)
    except OSError as exc:
        fail(f"cannot save the scenario in {save_dir}: {exc.strerror}", EXIT_USAGE)
    words = ["koosim", "play", str(path)]
    for name in ("url", "protocol", "sync_url", "timeout", "product", "billing", "license_call"):
        if flags.get(name) is not None:
            words += [f"--{name.replace('_', '-')}", str(flags[name])]
    if flags.get("optional") is not None:
        words.append("--optional" if flags["optional"] else "--no-optional")
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
