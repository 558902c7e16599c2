"""The check catalog: every rule of the marketplace the simulator enforces, under a stable id.

Ids are ``family.name``: ``security.*``, ``contract.*``, ``idempotency.*``, ``lifecycle.*``,
``conversation.*``, ``sync.*`` and ``timing.*``. ``koosim checks`` prints the catalog. Two kinds of
check, two typed signatures: an *active* check drives calls through a :class:`Context`
(:class:`~simulator.checks.base.ActiveRule`); a *per-exchange* check judges one answer
(:class:`~simulator.checks.base.AnswerRule`). Every judge (verify, play, explore, serve, the
plugin) calls the rules here: :mod:`simulator.checks.answers` holds those about single answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from simulator.checks import (  # noqa: F401 - registers
    contract,
    conversation,
    idempotency,
    lifecycle,
    notification,
    schedule,
    security,
    sync,
)
from simulator.checks.answers import judge_exchange
from simulator.checks.base import (
    FAMILY_ORDER,
    REGISTRY,
    Breach,
    Check,
    Context,
    Finding,
    Severity,
    Verdict,
    catalog,
)

__all__ = [
    "FAMILY_ORDER",
    "REGISTRY",
    "Breach",
    "Check",
    "Context",
    "Finding",
    "Severity",
    "Verdict",
    "catalog",
    "judge_exchange",
    "select",
]


def select(patterns: Iterable[str] = ()) -> list[Check]:
    """The checks whose id matches any glob in ``patterns`` (all of them when there is none), and
    the checks run only on request (:attr:`Check.by_request`) that a pattern names exactly."""
    patterns = list(patterns)
    if not patterns:
        return catalog()
    chosen = [
        c
        for c in catalog(by_request=True)
        if c.id in patterns or (not c.by_request and any(fnmatchcase(c.id, p) for p in patterns))
    ]
    if not chosen:
        raise LookupError(f"no check matches {', '.join(patterns)}; `koosim checks` lists them")
    return chosen
