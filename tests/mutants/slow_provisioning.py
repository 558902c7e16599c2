"""newInstance provisions synchronously and answers after the marketplace has stopped waiting.

The bug: the merchant creates the buyer's tenant (database, DNS, first admin account) inside
the newInstance request and answers only when all of it is done. When that takes longer than
the marketplace waits, the marketplace counts the call as failed and resends it, while the first
copy is still provisioning; a merchant that is also not idempotent under concurrency ends up
with two tenants. Interfaces that keep timing out get the product delisted.

Why it is tempting: answering "done" only when it is done feels honest, and on a developer's
laptop with an empty database provisioning is quick.

How the reference merchant avoids it: it records the instance (durably, idempotently) and
answers at once; real provisioning belongs in a background job keyed by the instanceId. The
gallery runs this mutant with a 1 s deadline to stay fast; the real deadline is 5 s
(docs/protocol.md §3.3; see answers_in_six_seconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant

PROVISIONING_SECONDS = 1.5
DEADLINE_SECONDS = 1.0


@dataclass
class SynchronousProvisioningMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        time.sleep(PROVISIONING_SECONDS)  # the defect: the whole provisioning before the answer
        return super().new_instance(fields)


build = with_merchant(SynchronousProvisioningMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="timing.deadline",
    evidence=f"(deadline {DEADLINE_SECONDS:g} s)",
    rule="§3.3",
    drivers=("lifecycle.test-order",),
    timeout=DEADLINE_SECONDS,
)
