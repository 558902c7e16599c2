"""refreshInstance refuses an expireTime earlier than the current one, so unsubscribing a renewal fails.

The bug: the merchant validates renewals with "the new expireTime must be later than the
current one" and answers 000002 otherwise. A buyer who unsubscribes a renewal period gets
refreshInstance with scene UNSUBSCRIBE_RENEWAL_PERIOD and the *earlier* expiry restored; the
merchant refuses, and keeps serving (and later billing disputes) a period nobody paid for.

Why it is tempting: a renewal that shortens the subscription looks like a bug in the caller,
and the check is one comparison.

How the reference merchant avoids it: ``Merchant.refresh_instance`` sets the expireTime it is
given, whichever direction it moves, for every documented scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class ForwardOnlyExpiryMerchant(Merchant):
    expiry: dict[str, str] = field(default_factory=dict)
    """The latest expireTime each instance was renewed to (yyyyMMddHHmmss compares as text)."""

    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        current = self.expiry.get(fields["instanceId"])
        if current is not None and fields["expireTime"] < current:  # the defect
            return answer(ResultCode.INVALID_PARAMETER, "expireTime must be later than the current one")
        result = super().refresh_instance(fields)
        if result["resultCode"] == ResultCode.SUCCESS:
            self.expiry[fields["instanceId"]] = fields["expireTime"]
        return result


build = with_merchant(ForwardOnlyExpiryMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.unsubscribe-renewal",
    evidence="unsubscribe: expected 000000",
    rule="§7",
    controls=("idempotency.refresh-resend",),
)
