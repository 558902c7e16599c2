"""getLicense refuses a customerId longer than 64 characters.

The bug: the merchant sized its licences table's customer column like every other ID (64
characters) and validates the request against it. The License page gives getLicense's
``customerId`` up to 100 characters (docs/protocol.md §6.1, [S75]): a real buyer with a long
account ID gets 000002, the opening call fails, is called again hourly for 3 hours and the
order is then delivered by hand, or not at all.

Why it is tempting: orderId, businessId and instanceId are all 64 characters; customerId looks
like one more ID.

How the reference merchant avoids it: its contract (``contracts/v2/getLicense.request.json``)
takes the page's 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class ShortCustomerColumnMerchant(Merchant):
    def get_license(self, fields: dict[str, str]) -> Answer:
        # The defect: 64 characters, as for every other ID.
        if len(fields.get("customerId", "")) > 64:
            return answer(ResultCode.INVALID_PARAMETER, "customerId is longer than 64 characters")
        return super().get_license(fields)


build = with_merchant(ShortCustomerColumnMerchant)


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.FAILED,
    catches="lifecycle.license-customer-id",
    evidence="getLicense with a 100-character customerId",
    rule="§6.1",
    controls=("idempotency.license-resend",),
)
