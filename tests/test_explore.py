"""``koosim explore``: Hypothesis finds sequence-only defects, shrinks them, and saves a scenario
that ``koosim play`` replays with the same check id.

The faulty merchants are ``tests/mutants/sequences.py``; each is served on its own ephemeral
port and explored with a fixed seed and the default budget.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from mutants.base import Mutant
from mutants.sequences import SEQUENCE_MUTANTS, UNFREEZE_AFTER_RELEASE

from simulator.cli import main
from simulator.engine import explore as explore_module
from simulator.engine.scenario import Step, load
from simulator.reference import MerchantConfig, create_app

ACCESS_KEY = "koosim-explore-access-key"
SYNC_KEY = "koosim-explore-sync-key"
KEYS = {"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_SYNC_KEY": SYNC_KEY, "COLUMNS": "200"}
MAX_SAVED_STEPS = 6


@pytest.fixture(autouse=True)
def _own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example database (.koosim/examples) and the saved scenarios go to a fresh folder."""
    monkeypatch.chdir(tmp_path)


def merchant_app(mutant: Mutant | None = None) -> Flask:
    """The reference merchant with this module's keys, or ``mutant`` built on it."""
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    return mutant.build(config) if mutant is not None else create_app(config)


def koosim(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=KEYS)


def reproduce_command(output: str) -> list[str]:
    match = re.search(r"^reproduce: (koosim play .*)$", output, re.MULTILINE)
    assert match, output
    return shlex.split(match.group(1))[1:]


@pytest.mark.parametrize("mutant", SEQUENCE_MUTANTS, ids=lambda m: m.name)
def test_explore_finds_shrinks_and_saves_a_replayable_scenario(
    mutant: Mutant, serve: Any, tmp_path: Path
) -> None:
    url = serve(merchant_app(mutant))
    # saas-kit: the user-sync rules are drawn only for a joint-operation product (§1.2)
    found = koosim("explore", "--url", url, "--seed", "1", "--save-dir", "found", "--product", "saas-kit")
    assert found.exit_code == 1, found.output
    assert f"✗ {mutant.catches}" in found.output

    saved = list((tmp_path / "found").glob("*.yaml"))
    assert len(saved) == 1
    scenario = load(saved[0])
    assert 1 <= len(scenario.steps) <= MAX_SAVED_STEPS, scenario.to_yaml()
    assert f"Smallest failing sequence ({len(scenario.steps)} calls)" in found.output

    # The printed command, against the same merchant: the file's own seed keeps its ids fresh.
    replayed = koosim(*reproduce_command(found.output))
    assert replayed.exit_code == 1, replayed.output
    assert f"[{mutant.catches}]" in replayed.output

    # And against a merchant that has never seen a call.
    fresh = koosim("play", str(saved[0]), "--url", serve(merchant_app(mutant)), "--product", "saas-kit")
    assert fresh.exit_code == 1, fresh.output
    assert f"[{mutant.catches}]" in fresh.output


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_explore_finds_nothing_wrong_with_the_reference_merchant(protocol: str) -> None:
    result = koosim("explore", "--max-examples", "20", "--seed", "2", "--protocol", protocol)
    assert result.exit_code == 0, result.output
    assert f"against the bundled reference merchant ({protocol})" in result.output
    assert "every invariant held" in result.output
    assert not Path(".koosim/found").exists()


def test_a_failure_found_earlier_is_replayed_first(serve: Any) -> None:
    url = serve(merchant_app(UNFREEZE_AFTER_RELEASE))
    first = koosim("explore", "--url", url, "--seed", "1")
    assert first.exit_code == 1
    assert any(Path(".koosim/examples").iterdir())
    again = koosim("explore", "--url", url, "--seed", "1")
    assert again.exit_code == 1
    assert "Found in sequence 1 after" in again.output, again.output
    assert "saved: .koosim/found/found-lifecycle-after-release.yaml" in again.output


def test_the_same_seed_tries_the_same_sequences(
    monkeypatch: pytest.MonkeyPatch, reference_merchant: Any
) -> None:
    played: list[list[str]] = []
    original = explore_module.MarketplaceMachine._play

    def recording(machine: Any, step: Step) -> Any:
        if not machine.steps:
            played.append([])
        played[-1].append(f"{step.id} {step.activity} {step.of} {sorted(step.fields)}")
        return original(machine, step)

    monkeypatch.setattr(explore_module.MarketplaceMachine, "_play", recording)
    runs = []
    for _ in range(2):
        played.clear()
        exploration = explore_module.Exploration(
            reference_merchant.target(), seed=7, max_examples=8, database_dir=None
        )
        assert exploration.run() is None
        runs.append(list(played))
    assert runs[0] == runs[1]
    assert sum(len(sequence) for sequence in runs[0]) > 8
