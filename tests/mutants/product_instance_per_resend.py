"""A resent subscription for a pay-per-use billing item opens another instance.

The bug: the merchant heard that pay-per-use orders own several instances and stopped
treating a repeated orderId as a resend when a productId is present: it keys the item's
instance on the call's businessId, which is new on every request. Each marketplace resend
(docs/protocol.md §5.1, §10.1: 60 copies over 3 hours for V1) opens one more metered instance
for the same orderId + productId.

Why it is tempting: "one order, several instances" reads like "no idempotency per order".

How the reference merchant avoids it: ``store.line_key`` keys a V1 subscription on orderId +
productId, the pair the page names (A21), and never on businessId.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class BusinessKeyedItemMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        if "productId" not in fields:
            return super().new_instance(fields)
        # The defect: the request's businessId stands in for the billing item.
        return super().new_instance({**fields, "productId": f"{fields['productId']}/{fields['businessId']}"})


build = with_merchant(BusinessKeyedItemMerchant)


MUTANT = mutant(
    __name__,
    build,
    protocol="v1",
    verdict=Verdict.WARNED,
    catches="idempotency.per-product-instances",
    evidence="a resend for the same orderId + productId",
    rule="§5.1, A21",
    controls=("idempotency.new-instance-resend",),
)
