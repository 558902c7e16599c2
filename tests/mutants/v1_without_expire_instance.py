"""A v1 merchant does not implement expireInstance.

The bug: the merchant implements the V2 activity set over GET (updateInstanceStatus for a
freeze) and answers ``expireInstance`` as an unknown activity. V1 freezes an expired
yearly/monthly instance with ``expireInstance`` (docs/protocol.md §5.1, §5.4); the marketplace
resends it for an hour, then the seller has to restart it by hand.

Why it is tempting: expiry looks like a status change, and V2 has no expireInstance.

How the reference merchant avoids it: its v1 handlers are the V1 activity set.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def unknown_expire(fields: dict[str, Any]) -> str | None:
    if fields.get("activity") == "expireInstance":
        return "unknown activity 'expireInstance'"  # the defect
    return None


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "produce.produce_v1", unknown_expire)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.full",
    evidence="expireInstance",
    rule="§5.4",
    protocol="v1",
)
