"""Freeze and unfreeze of a released instance succeed.

The bug: the status change only asks whether the instance exists, not whether it is still
live, so an UNFREEZE that arrives after the release (a late resend, an operator's manual call)
brings a released instance back to ACTIVE; its resources were freed, but the merchant now
reports it running.

Why it is tempting: "exists?" is the obvious guard, and in the marketplace's normal order of
calls nothing follows a release.

How the reference merchant avoids it: ``Merchant.update_instance_status`` goes through
``Merchant._refuse_unless_live``, which treats a released instance like an unknown one and
answers 000003 (practice: the docs are silent, so the simulator reports this as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer
from simulator.reference.store import ACTIVE, FROZEN

from .base import mutant, with_merchant


@dataclass
class ExistenceOnlyMerchant(Merchant):
    def update_instance_status(self, fields: dict[str, str]) -> Answer:
        if self.store.instance(fields["instanceId"]) is None:  # the defect: a released one passes
            return answer(ResultCode.INSTANCE_NOT_FOUND)
        status = FROZEN if fields["status"] == "FREEZE" else ACTIVE
        self.store.update_instance(fields["instanceId"], status=status)
        return answer(ResultCode.SUCCESS)


build = with_merchant(ExistenceOnlyMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.after-release",
    evidence="of a released instance",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
