"""refreshInstance with scene TRIAL_TO_FORMAL is refused as an unsupported scene.

The bug: the merchant's renewal handler switches on ``scene`` and knows RENEWAL and
UNSUBSCRIBE_RENEWAL_PERIOD, written when the product had no trial; the default branch answers
000002. When a buyer pays for a trial, the marketplace converts it with TRIAL_TO_FORMAL and the
merchant refuses: the buyer has paid and the instance still expires with the trial.

Why it is tempting: trials are switched on in the product listing long after the interface was
written, and nothing forces the old switch to be revisited.

How the reference merchant avoids it: ``Merchant.refresh_instance`` extends the expiry for every
scene and, for TRIAL_TO_FORMAL, also ends the trial and takes the new productId/skuCode.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant

KNOWN_SCENES = ("RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD")


@dataclass
class RenewalOnlyMerchant(Merchant):
    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        scene = fields.get("scene", "RENEWAL")
        if scene not in KNOWN_SCENES:  # the defect: TRIAL_TO_FORMAL falls to the default branch
            return answer(ResultCode.INVALID_PARAMETER, f"unsupported scene {scene}")
        return super().refresh_instance(fields)


build = with_merchant(RenewalOnlyMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.trial-to-formal",
    evidence="trial to formal: expected 000000",
    rule="§7",
    controls=("lifecycle.unsubscribe-renewal",),
)
