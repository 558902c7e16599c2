"""newInstance keyed on businessId: every resend of an order creates another instance.

The bug: the merchant looks up (or stores) the instance by ``businessId``, the id of the *call*,
instead of by ``orderId`` + ``orderLineId``, the id of the *order line*. The marketplace gives
each resend a new businessId, timestamp and nonce, so each resend provisions a fresh tenant and
answers a different instanceId; the buyer ends up with several instances and one of them billed.

Why it is tempting: businessId is documented as "unique", it is the first id in the request,
and in a debugging session where every call is sent once, it behaves exactly like the right key.

How the reference merchant avoids it: ``store.py`` puts ``UNIQUE (order_id, order_line_id)`` on
the instances table and inserts with ``ON CONFLICT DO NOTHING``, then reads back the row the
first copy wrote, so a resend returns the same instanceId and byte-identical appInfo.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class BusinessIdKeyedMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        # The defect: the call's businessId stands in for the order line.
        return super().new_instance({**fields, "orderLineId": fields["businessId"]})


build = with_merchant(BusinessIdKeyedMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.new-instance-resend",
    evidence="different instanceIds",
    rule="§7 seed rule",
)
