"""Every billing item of a pay-per-use order gets the order's one instance.

The bug: the merchant keys instances on ``orderId`` alone, as the older editions of the
subscription page read. A pay-per-use specification with several billing items opens one
instance per item, same orderId and different productId (docs/protocol.md §5.1, §4.1-d, A21):
the second item's subscription finds the first item's instance and answers it, so the second
item is never provisioned and its usage lands on the first.

Why it is tempting: for yearly/monthly and one-time products one order is one instance, and
"same orderId ⇒ same instance" is exactly the resend rule there.

How the reference merchant avoids it: ``store.line_key`` keys a V1 subscription on orderId +
productId.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class OrderKeyedMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        # The defect: the productId plays no part in the key.
        return super().new_instance({name: value for name, value in fields.items() if name != "productId"})


build = with_merchant(OrderKeyedMerchant)


MUTANT = mutant(
    __name__,
    build,
    protocol="v1",
    verdict=Verdict.WARNED,
    catches="idempotency.per-product-instances",
    evidence="two productIds of one pay-per-use order got the same instance",
    rule="§5.1, A21",
    controls=("idempotency.new-instance-resend",),
)
