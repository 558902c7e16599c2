"""refreshInstance finds the instance by orderId, so a renewal order is "not found".

The bug: the merchant keys instances on the purchase's orderId and looks a renewal up the same
way. A renewal carries the **renewal** order's own orderId (trial-to-formal the commercial
order's, unsubscription the cancelled renewal's); the instance is named by ``instanceId``
(docs/protocol.md §4.2, A34). Every renewal is answered 000003 and the customer's service may be
released.

Why it is tempting: orderId is the one key newInstance gives, and in a quick test the renewal
reuses it.

How the reference merchant avoids it: every call after newInstance is looked up by instanceId.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import activity_of_request, answer_body, mutant, refuse_calls


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    purchase_orders: set[str] = set()

    @app.after_request
    def remember_purchases(response: Response) -> Response:
        body = answer_body(response)
        if activity_of_request() == "newInstance" and body and body.get("resultCode") == ResultCode.SUCCESS:
            from flask import request

            sent = request.get_json(silent=True) or {}
            purchase_orders.add(str(sent.get("orderId")))
        return response

    def unknown_order(fields: dict[str, Any]) -> str | None:
        if fields.get("activity") == "refreshInstance" and fields.get("orderId") not in purchase_orders:
            return "no instance for this orderId"  # the defect: the instance is looked up by orderId
        return None

    refuse_calls(app, "produce.produce_v2", unknown_order, ResultCode.INSTANCE_NOT_FOUND)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.full",
    evidence="refreshInstance RENEWAL of a live instance",
    rule="§4.2, A34",
)
