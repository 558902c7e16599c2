"""getLicense issues a new license code for every resend of the same order.

The bug: the merchant generates a code per call and stores it under the call's businessId,
never asking whether the order already has one. The License page says a resend "for the same
order number" must get the License created before (docs/protocol.md §6.1, [S75]), and every
request carries a new businessId. Each resend mints another valid code; the
buyer is shown one, the merchant renews or releases another, and licences leak.

Why it is tempting: a licence generator is naturally "generate and return", and a resend is
rare enough that nobody sees two codes in testing.

How the reference merchant avoids it: ``store.MerchantStore.create_license`` inserts under
the order (``ON CONFLICT DO NOTHING``) and returns the code the first copy stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class CodePerCallMerchant(Merchant):
    def get_license(self, fields: dict[str, str]) -> Answer:
        # The defect: the call's businessId (new on every request) stands in for the order.
        return super().get_license({**fields, "orderId": fields["businessId"]})


build = with_merchant(CodePerCallMerchant)


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="idempotency.license-resend",
    evidence="different license codes",
    rule="§6.1",
)
