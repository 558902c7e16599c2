"""The defaults of ``koosim explore``, kept apart from :mod:`simulator.engine.explore` so that the
command line can show them without importing Hypothesis, a third of a second of start-up."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MAX_EXAMPLES = 200
"""Sequences tried per run: a few seconds against a correct merchant; the sequence defects of
``tests/mutants/sequences.py`` are found well within it (most in the first few dozen)."""
DEFAULT_MAX_STEPS = 12
"""Calls per sequence at most (Hypothesis' ``stateful_step_count``)."""
DATABASE_DIR = Path(".koosim/examples")
SAVE_DIR = Path(".koosim/found")
