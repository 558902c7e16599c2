"""Kit calls with an empty instanceId are refused.

The bug: the merchant validates ``instanceId`` as "M" means non-empty and answers 000002 to
``""``. The same cell of every Kit table says it is sent empty when the seller applies for
application credentials (docs/protocol.md §7.1, A40): those calls fail.

Why it is tempting: "M" usually means a value, and the buyer's formal orders always carry one.

How the reference merchant avoids it: its Kit contracts allow an empty instanceId.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def empty_instance(fields: dict[str, Any]) -> str | None:
    return "instanceId is mandatory" if fields.get("instanceId") == "" else None  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "sync.sync", empty_instance)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="sync.empty-instance",
    evidence="empty instanceId must be accepted (A40)",
    rule="§7.1, A40",
    controls=("idempotency.user-sync-add",),
)
