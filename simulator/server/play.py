"""Scenarios played step by step from the console or the API: see the next call before it goes,
edit its fields, send it, resend the one before, or stop.

A session wraps one :class:`~simulator.engine.player.Player` (which fills in, sends and judges each
step exactly as ``koosim play`` does) and records into the history as a run of kind ``play``:
each step played is one result, named ``step <id>``, its failed expectations the findings. A
session lives in the server's memory; if the server stops before it is finished, the run reads
back as interrupted, with every step it played.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.engine.player import Player, Prepared, StepOutcome, not_applicable, requirements, step_result
from simulator.engine.scenario import Entry, Scenario, Unresolved, discover, library_dirs, scenario_files
from simulator.redaction import printable, redact
from simulator.server.state import MarketState
from simulator.store import RunRecorder


class PlayError(ValueError):
    """The scenario cannot be started or the step cannot be sent; the message says why."""


MAX_NAME_CHARS = 200


def _entries(dirs: Iterable[Path]) -> list[Entry]:
    # a --scenarios folder removed since the server started is left out, not an error page
    folders = tuple(library_dirs(directory for directory in dirs if directory.is_dir()))
    # parsing every file costs ~10 ms; looking at their sizes and times, microseconds
    stamps = tuple(
        (path, stat.st_mtime_ns, stat.st_size)
        for folder in folders
        for path in scenario_files(folder)
        if (stat := path.stat())
    )
    return _discovered(folders, stamps)


@functools.lru_cache(maxsize=8)
def _discovered(folders: tuple[Path, ...], stamps: tuple[tuple[Path, int, int], ...]) -> list[Entry]:
    return discover(folders)


def library(dirs: Iterable[Path] = ()) -> list[dict[str, Any]]:
    """The scenarios a session can play: the merchant's ``--scenarios`` folders, then the library."""
    entries = []
    for entry in _entries(dirs):
        scenario = entry.scenario
        entries.append(
            {
                "name": scenario.name if scenario else entry.path.stem,
                "description": scenario.description if scenario else "",
                "steps": len(scenario.steps) if scenario else 0,
                "protocol": scenario.protocol if scenario else "",
                "error": entry.error,
            }
        )
    return entries


@dataclass
class PlaySession:
    """One scenario being played by hand against the configured target."""

    scenario: Scenario
    player: Player
    recording: RunRecorder
    position: int = 0
    """Index of the next step to send."""
    outcomes: list[StepOutcome] = field(default_factory=list)
    prepared: Prepared | None = None
    blocked: str | None = None
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        return self.recording.id

    @property
    def next_step(self) -> Any:
        return (
            None
            if self.finished or self.position >= len(self.scenario.steps)
            else self.scenario.steps[self.position]
        )

    def _prepare(self) -> None:
        """Prepare the next step so a person sees (and may edit) the fields before they go."""
        self.prepared, self.blocked = None, None
        step = self.next_step
        if step is None or step.activity is None:
            return
        try:
            self.prepared = self.player.prepare(step)
        except Unresolved as problem:
            self.blocked = str(problem)

    def _record(self, outcome: StepOutcome) -> None:
        self.outcomes.append(outcome)
        self.recording.add(step_result(outcome))

    def send_next(self, fields: dict[str, Any] | None = None) -> StepOutcome:
        """Send the next step, with ``fields`` in place of the prepared ones when given."""
        with self.lock:
            step = self.next_step
            if step is None:
                raise PlayError("the scenario has no step left to send")
            if step.activity is None:  # a pause: nothing to send by hand
                outcome = StepOutcome(step, None)
            elif self.prepared is None:
                outcome = StepOutcome(step, None, blocked=self.blocked or "the step could not be prepared")
            else:
                prepared = self.prepared
                if fields is not None:
                    prepared = _with_fields(prepared, fields)
                outcome = self.player.perform(prepared)
            self._record(outcome)
            self.position += 1
            self._prepare()
            return outcome

    def resend_previous(self) -> StepOutcome:
        """Send the last step played again, same content, as the marketplace resends it."""
        with self.lock:
            prepared = next((o.prepared for o in reversed(self.outcomes) if o.prepared is not None), None)
            if prepared is None:
                raise PlayError("no step has been sent yet")
            outcome = self.player.perform(prepared)
            self._record(outcome)
            self._prepare()  # the resend may change what the next step refers to
            return outcome

    def finish(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.finished = True
            self.recording.finish()

    def state(self) -> dict[str, Any]:
        """The session as the API and the page show it."""
        done = {outcome.step.id: outcome for outcome in self.outcomes}
        steps = []
        for index, step in enumerate(self.scenario.steps):
            outcome = done.get(step.id)
            steps.append(
                {
                    "id": step.id,
                    "activity": step.activity or "pause",
                    "expect": step.expect.to_data(),
                    "status": "next"
                    if index == self.position and not self.finished
                    else ("failed" if outcome and outcome.failed else "passed" if outcome else "waiting"),
                    "exchanges": [exchange.id for exchange in outcome.exchanges] if outcome else [],
                    "problems": (
                        [f"{j.check_id or j.expectation}: {j.message}" for j in outcome.failures]
                        + ([outcome.blocked] if outcome.blocked else [])
                    )
                    if outcome
                    else [],
                }
            )
        return {
            "play_id": self.id,
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "finished": self.finished,
            "position": self.position,
            "next": None
            if self.next_step is None
            else {
                "id": self.next_step.id,
                "activity": self.next_step.activity or "pause",
                "copies": self.next_step.copies,
                "fields": self.prepared.fields if self.prepared else None,
                "blocked": self.blocked,
            },
            "steps": steps,
        }


def _with_fields(prepared: Prepared, fields: dict[str, Any]) -> Prepared:
    """The prepared step with edited fields; each copy keeps its own businessId (a resend's)."""
    copies = [
        fields
        | ({"businessId": copy["businessId"]} if "businessId" in copy and "businessId" in fields else {})
        for copy in prepared.copies
    ]
    return dataclasses.replace(prepared, copies=copies)


def _sessions(market: MarketState) -> dict[str, PlaySession]:
    return market.plays


def _named(name: str, dirs: Iterable[Path], secrets: tuple[str, ...]) -> Scenario:
    """The scenario of the library (or a ``--scenarios`` folder) called ``name``: by file stem or
    by its ``name:``. Never a path: a caller must not read, or learn about, any other file."""
    for entry in _entries(dirs):
        if entry.path.stem == name or (entry.scenario is not None and entry.scenario.name == name):
            if entry.scenario is None:
                raise PlayError(printable(redact(entry.error or f"{name}: cannot be loaded", secrets)))
            return entry.scenario
    shown = printable(name if len(name) <= 40 else name[:40] + "…")
    raise PlayError(f"'{shown}': no scenario of that name; GET /api/scenarios lists the library")


def start(market: MarketState, name: Any, dirs: Iterable[Path] = ()) -> PlaySession:
    """Start playing the scenario called ``name`` (library or ``dirs``) against the configured target."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise PlayError("scenario must be the name of a scenario of the library")
    scenario = _named(name, dirs, market.secrets)
    target = dataclasses.replace(market.run_target(), protocol=scenario.protocol)
    skipped = not_applicable(scenario, target)
    if skipped is not None:  # another product profile's scenario: nothing is sent (§1.2)
        raise PlayError(f"{scenario.name} skipped: {skipped}")
    problems = requirements(scenario, target)
    if problems:
        raise PlayError("; ".join(problems))
    recording = RunRecorder.start(
        market.store,
        target,
        kind="play",
        planned=len(scenario.steps),
        command=f"scenario {scenario.name}, by hand",
    )
    session = PlaySession(scenario, Player(scenario, target, transport=recording.transport), recording)
    session._prepare()
    _sessions(market)[session.id] = session
    return session


def session(market: MarketState, play_id: str) -> PlaySession:
    found = _sessions(market).get(play_id)
    if found is None:
        raise LookupError(f"no scenario session {play_id!r} in this server")
    return found


def sessions(market: MarketState) -> list[PlaySession]:
    return list(_sessions(market).values())
