"""A v1 merchant refuses a subscription without orderLineId.

The bug: the merchant validates v1 calls against the V2 newInstance table, which has a
mandatory ``orderLineId``. No V1 table read has one (docs/protocol.md §5.1, §5.2, U22): real v1
subscriptions are refused with 000002.

Why it is tempting: V2's pages are the current ones and the two generations look alike.

How the reference merchant avoids it: its v1 contracts follow the V1 pages.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def without_order_line(fields: dict[str, Any]) -> str | None:
    if fields.get("activity") == "newInstance" and not fields.get("orderLineId"):
        return "orderLineId is required"  # the defect
    return None


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "produce.produce_v1", without_order_line)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.test-order",
    evidence="got resultCode 000002",
    rule="§5.2, U22",
    protocol="v1",
)
