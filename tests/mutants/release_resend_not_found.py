"""A resent releaseInstance of an instance already released is answered 000003.

The bug: release looks the instance up among the live ones, so once the first copy has released
it, the resend is told "instance does not exist". The marketplace resends a release it did not
get an answer for; receiving 000003 it cannot tell "already released" from "never existed", and
the order may be left in an error state for an operator to clear.

Why it is tempting: after a release the instance is, from the merchant's point of view, gone,
and 000003 sounds accurate.

How the reference merchant avoids it: ``Merchant.release_instance`` answers 000003 only for an
instanceId it never created and 000000 for an already released one (practice: the docs are
silent, so the simulator reports this as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class LiveOnlyReleaseMerchant(Merchant):
    def release_instance(self, fields: dict[str, str]) -> Answer:
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused  # the defect: an already released instance counts as unknown
        return super().release_instance(fields)


build = with_merchant(LiveOnlyReleaseMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.release-resend",
    evidence="releaseInstance sent again with identical content must succeed",
    rule="§7 (practice)",
    verdict=Verdict.WARNED,
)
