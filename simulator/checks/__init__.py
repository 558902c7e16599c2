"""The check catalog: every rule of the marketplace the simulator enforces, under a stable id.

Ids are ``family.name``: ``security.*``, ``contract.*``, ``idempotency.*``, ``lifecycle.*``,
``sync.*`` and ``timing.*``. ``koosim checks`` prints the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from simulator.checks import contract, idempotency, lifecycle, security, sync  # noqa: F401 - registers
from simulator.checks.base import REGISTRY, Check, Context, Finding, Severity, Verdict
from simulator.transport import Exchange, Target

__all__ = ["Check", "Context", "Finding", "Severity", "Verdict", "catalog", "judge_exchange", "select"]


FAMILY_ORDER = ("security", "lifecycle", "idempotency", "sync", "contract", "timing")


def catalog() -> list[Check]:
    """Every check, by family as in :data:`FAMILY_ORDER`; the per-exchange ones come last."""
    return sorted(REGISTRY.values(), key=lambda c: (c.per_exchange, FAMILY_ORDER.index(c.family)))


def select(patterns: Iterable[str] = ()) -> list[Check]:
    """The checks whose id matches any glob in ``patterns`` (all of them when there is none)."""
    patterns = list(patterns)
    if not patterns:
        return catalog()
    chosen = [c for c in catalog() if any(fnmatchcase(c.id, pattern) for pattern in patterns)]
    if not chosen:
        raise LookupError(f"no check matches {', '.join(patterns)}; `koosim checks` lists them")
    return chosen


def judge_exchange(exchange: Exchange, target: Target) -> list[tuple[str, str]]:
    """What the per-exchange checks (``contract.*``, ``timing.*``) find wrong with one answer,
    as (check id, problem) pairs; empty when it conforms."""
    return [
        (check.id, problem)
        for check in catalog()
        if check.per_exchange and (problem := check.run(exchange, target)) is not None
    ]
