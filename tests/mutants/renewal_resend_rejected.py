"""A resent renewal (identical refreshInstance) is refused as a duplicate.

The bug: the merchant treats a renewal to the expireTime the instance already has as an error
("nothing to renew", 000002). The marketplace resends a renewal it got no answer for; the first
copy did arrive and was applied, so the resend is refused and the marketplace thinks the
renewal failed, although the instance was extended.

Why it is tempting: refusing no-op changes looks like good validation, and each renewal in a
manual test is sent once.

How the reference merchant avoids it: ``Merchant.refresh_instance`` sets the expireTime it is
given; applying the same renewal twice leaves the same state and answers 000000 both times
(practice: reported as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class NoOpRenewalRefusedMerchant(Merchant):
    expiry: dict[str, str] = field(default_factory=dict)
    """The expireTime each instance was last renewed to."""

    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        if self.expiry.get(fields["instanceId"]) == fields["expireTime"]:  # the defect
            return answer(ResultCode.INVALID_PARAMETER, "the instance already expires at that time")
        result = super().refresh_instance(fields)
        if result["resultCode"] == ResultCode.SUCCESS:
            self.expiry[fields["instanceId"]] = fields["expireTime"]
        return result


build = with_merchant(NoOpRenewalRefusedMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.refresh-resend",
    evidence="refreshInstance sent again with identical content must succeed",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
