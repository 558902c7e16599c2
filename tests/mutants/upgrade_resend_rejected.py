"""A resent upgrade (identical content) is refused because the instance already has that SKU.

The bug: the merchant refuses an upgrade to the SKU the instance already runs ("already on this
plan", 000002). The first copy of the upgrade was applied; the marketplace's resend is refused,
and the buyer's paid upgrade shows as failed in the marketplace.

Why it is tempting: "upgrade to the current plan" looks like a mistake worth refusing, and the
check prevents double-charging in the merchant's own billing.

How the reference merchant avoids it: ``Merchant.upgrade`` sets productId and skuCode to what
the call says; the second identical call changes nothing and answers 000000 (practice:
reported as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Answer, Merchant, answer

from .base import install_merchant, mutant


@dataclass
class SamePlanRefusedMerchant(Merchant):
    plans: dict[str, str] = field(default_factory=dict)
    """The skuCode each instance was last upgraded to."""

    def upgrade(self, fields: dict[str, str]) -> Answer:
        if self.plans.get(fields["instanceId"]) == fields["skuCode"]:  # the defect
            return answer(ResultCode.INVALID_PARAMETER, f"the instance is already on {fields['skuCode']}")
        result = super().upgrade(fields)
        if result["resultCode"] == ResultCode.SUCCESS:
            self.plans[fields["instanceId"]] = fields["skuCode"]
        return result


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_merchant(app, SamePlanRefusedMerchant)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.upgrade-resend",
    evidence="upgrade sent again with identical content must succeed",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
