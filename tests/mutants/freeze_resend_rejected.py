"""A resent FREEZE of an instance already frozen is refused as an invalid state change.

The bug: the merchant runs status changes through a strict state machine, where ACTIVE → FROZEN
is allowed but FROZEN → FROZEN is not, and answers 000002 "already frozen". The marketplace
resends a freeze it got no answer for, sees a refusal, and keeps retrying or flags the order.

Why it is tempting: a strict state machine catches real mistakes, and "freeze a frozen instance"
does look like one.

How the reference merchant avoids it: ``Merchant.update_instance_status`` sets the requested
status whatever the current one is, so a repeated FREEZE or UNFREEZE with identical content
succeeds each time (practice: reported as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer
from simulator.reference.store import ACTIVE, FROZEN

from .base import mutant, with_merchant


@dataclass
class StrictStateMachineMerchant(Merchant):
    def update_instance_status(self, fields: dict[str, str]) -> Answer:
        instance = self.store.instance(fields["instanceId"])
        target = FROZEN if fields["status"] == "FREEZE" else ACTIVE
        if instance is not None and instance.status == target:  # the defect: a repeat is an error
            return answer(ResultCode.INVALID_PARAMETER, f"the instance is already {target}")
        return super().update_instance_status(fields)


build = with_merchant(StrictStateMachineMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.status-resend",
    evidence="updateInstanceStatus FREEZE sent again with identical content must succeed",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
