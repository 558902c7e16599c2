"""newInstance requires the customer and product in its body, so the published call is refused.

The bug: the merchant reads ``customerId``, ``productId`` and ``skuCode`` from the newInstance
body, as an old summary (and the signing page's example, A6) suggested. The published
newInstance carries only activity, orderId, orderLineId, businessId and testFlag; customer,
product and SKU come from Querying an Order (docs/protocol.md §4.1, §8.1). Every real order is
refused with 000002.

Why it is tempting: the signing page's example body has nested buyer and product fields, and
a body that names the product saves a second call.

How the reference merchant avoids it: it requires only the five published fields and asks the
marketplace's Querying an Order for the rest.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls

READ_FROM_THE_BODY = ("customerId", "productId", "skuCode")


def missing_order_details(fields: dict[str, Any]) -> str | None:
    if fields.get("activity") != "newInstance":
        return None
    missing = [name for name in READ_FROM_THE_BODY if not fields.get(name)]
    return f"{', '.join(missing)} required" if missing else None  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "produce.produce_v2", missing_order_details)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="conversation.order-details",
    evidence="reads order details from the newInstance body; the marketplace sends only five fields, "
    "call Querying an Order",
    rule="§4.1, A6, §8.1",
)
