"""newInstance answers after 6 seconds: one second past the published deadline.

The bug: the merchant does a few slow things before answering (a synchronous call to its own
billing system, a DNS record, a welcome e-mail) and measured "about 6 s" on staging, which felt
acceptable. The marketplace waits **5 seconds** (docs/protocol.md §3.3, [S24]; the "20 s" some
notes quote was not found on any page, A1): every such call counts as failed, is resent, and
frequent failures get the product delisted.

Why it is tempting: other platforms wait 10 or 30 s, and the 5 s figure sits on the overall
requirements page, not on the newInstance page.

How the reference merchant avoids it: it records the instance and answers at once; anything
slow runs afterwards, keyed by the instanceId (§4.1-c).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant

ANSWER_AFTER_SECONDS = 6.0


@dataclass
class SixSecondMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        time.sleep(ANSWER_AFTER_SECONDS)  # the defect: slow work before the answer
        return super().new_instance(fields)


build = with_merchant(SixSecondMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="timing.deadline",
    evidence="(deadline 5 s)",
    rule="§3.3",
    drivers=("lifecycle.test-order",),
    controls=("security.v2-signature-wrong",),  # refused before provisioning: quick
)
