"""A resent upgradeInstance (identical content) is refused because that upgrade order was applied.

The bug: the merchant refuses an upgrade order it has already applied ("already on this plan",
000002). The first copy of the upgrade was applied; the marketplace's resend is refused,
and the buyer's paid upgrade shows as failed in the marketplace.

Why it is tempting: "upgrade to the current plan" looks like a mistake worth refusing, and the
check prevents double-charging in the merchant's own billing.

How the reference merchant avoids it: ``Merchant.upgrade_instance`` applies the upgrade order
(docs/protocol.md §4.3); the second identical call changes nothing and answers 000000 (U8:
reported as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class SamePlanRefusedMerchant(Merchant):
    plans: dict[str, str] = field(default_factory=dict)
    """The upgrade order each instance was last upgraded by (docs/protocol.md §4.3)."""

    def upgrade_instance(self, fields: dict[str, str]) -> Answer:
        if self.plans.get(fields["instanceId"]) == fields["orderId"]:  # the defect
            return answer(ResultCode.INVALID_PARAMETER, f"upgrade order {fields['orderId']} already applied")
        result = super().upgrade_instance(fields)
        if result["resultCode"] == ResultCode.SUCCESS:
            self.plans[fields["instanceId"]] = fields["orderId"]
        return result


build = with_merchant(SamePlanRefusedMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.upgrade-resend",
    evidence="upgradeInstance sent again with identical content must succeed",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
