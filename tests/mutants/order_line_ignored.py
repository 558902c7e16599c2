"""newInstance keyed on orderId alone: a second order line of the same order gets the first line's instance.

The bug: the merchant's idempotency key is ``orderId``; ``orderLineId`` is stored but not part of
the key. An order with two lines (two products, or the same product twice) reaches the merchant
as two newInstance calls with one orderId; the second is taken for a resend of the first and
answered with the first line's instanceId. The buyer pays for two instances and gets one.

Why it is tempting: most orders have one line, the orderId is the id the buyer sees, and a
resend test (same orderId, same orderLineId) passes.

How the reference merchant avoids it: the UNIQUE key in ``store.py`` is
``(order_id, order_line_id)``, exactly the pair protocol.md §7 names.

Known gap: no check sends two lines of one order, so the catalog does not catch this mutant
yet (its gallery test is an expected failure; see docs/mutants.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class OrderKeyedMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        # The defect: the order line plays no part in the key.
        return super().new_instance({**fields, "orderLineId": fields["orderId"]})


build = with_merchant(OrderKeyedMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.new-instance-resend",
    evidence="orderLineId",
    rule="§7 seed rule",
)
