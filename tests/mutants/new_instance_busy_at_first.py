"""newInstance answers 000005 to the first two deliveries of an order, and counts on the resends.

The bug: the merchant starts provisioning in the background and answers "other internal error"
(``000005``) until its backend is warm, expecting the marketplace to call again. It does: on V1
the subscription call is resent every 3 minutes, 60 times [S38] (docs/protocol.md §10.1), so the
order goes through on the third delivery, six minutes late. But every one of those answers was a
failed call (§3.4: anything but ``000000``), and frequent interface failures can get a product
removed (§10.3).

Why it is tempting: "the marketplace retries anyway" is true, and a quick 000005 looks safer
than a slow success.

How the reference merchant avoids it: it answers ``000000`` with the instance at once (creating
it synchronously, or recording it first and finishing the work asynchronously, §10.2).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant

WARM_UP_DELIVERIES = 2


@dataclass
class BusyAtFirstMerchant(Merchant):
    deliveries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_instance(self, fields: dict[str, str]) -> Answer:
        with self.lock:
            self.deliveries[fields["orderId"]] += 1
            warming = self.deliveries[fields["orderId"]] <= WARM_UP_DELIVERIES
        if warming:  # the defect: a failed call, on purpose, until the backend is warm
            return answer(ResultCode.INTERNAL_ERROR)
        return super().new_instance(fields)


build = with_merchant(BusyAtFirstMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.delivered-on-schedule",
    verdict=Verdict.WARNED,
    evidence="accepted on delivery 3 after 2 failed call(s)",
    rule="§3.4, §10.1",
    protocol="v1",
)
