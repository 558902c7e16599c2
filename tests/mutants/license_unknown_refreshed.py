"""refreshLicense of a license code the merchant never issued answers success.

The bug: the merchant runs ``UPDATE licenses SET expire_time = ? WHERE license = ?`` and answers
000000 without looking at how many rows changed. A renewal for a mistyped or foreign code
"succeeds", the marketplace records the renewal, and the buyer's real licence expires.

Why it is tempting: the UPDATE did not fail, and checking the row count is an extra step most
ORMs hide.

How the reference merchant avoids it: ``Merchant._change_license`` looks the licence up first
and answers 000003 for an unknown (or released) code.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer
from simulator.reference.store import ACTIVE

from .base import mutant, with_merchant


@dataclass
class BlindUpdateLicenseMerchant(Merchant):
    def refresh_license(self, fields: dict[str, str]) -> Answer:
        # The defect: the UPDATE may have matched no row; nobody asks.
        self.store.update_license(fields["license"], expire_time=fields["expireTime"], status=ACTIVE)
        return answer(ResultCode.SUCCESS)


build = with_merchant(BlindUpdateLicenseMerchant)


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="lifecycle.license",
    evidence="refreshLicense of an unknown license",
    rule="§6.1, U24",
)
