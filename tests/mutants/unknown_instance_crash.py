"""An unknown instanceId makes the merchant crash: 000005 instead of 000003.

The bug: refresh, freeze, unfreeze and upgrade load the instance and use it without asking
whether it was found (``instance.getStatus()`` on null, ``None.status``). The exception ends in
the generic error handler, which answers 000005 "internal error". The marketplace reads 000005
as "try again later" and keeps resending a call that can never succeed, where 000003 would
have told it the instance does not exist.

Why it is tempting: in normal operation the marketplace only names instances the merchant
created, so the "not found" branch never runs in a demo.

How the reference merchant avoids it: every handler goes through
``Merchant._refuse_unless_live``, which answers 000003 for an unknown (or released) instance
before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer
from simulator.reference.store import RELEASED

from .base import mutant, with_merchant


@dataclass
class UncheckedLookupMerchant(Merchant):
    def _refuse_unless_live(self, instance_id: str) -> Answer | None:
        instance = self.store.instance(instance_id)
        if instance.status == RELEASED:  # the defect: AttributeError when there is no such instance
            return answer(ResultCode.INSTANCE_NOT_FOUND)
        return None


build = with_merchant(UncheckedLookupMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.unknown-instance",
    evidence="got resultCode 000005",
    rule="§6, §7",
)
