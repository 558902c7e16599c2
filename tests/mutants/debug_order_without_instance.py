"""A debugging call (testFlag=1) is answered success without an instanceId.

The bug: the merchant reads "testFlag=1: answer success, real provisioning may be skipped" as
"skip everything", and answers ``{"resultCode":"000000"}`` with no instance. The marketplace's
interface debugging (and the acceptance test before a product is listed) needs an instanceId
to continue with renewal, freeze and release, and fails.

Why it is tempting: a test order costs nothing and creates nothing, so an id for nothing looks
unnecessary, and the shortcut keeps test orders out of the merchant's database.

How the reference merchant avoids it: it records a test order like any other (with a ``test``
mark) and answers its instanceId; only real provisioning would be skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class NothingForTestOrdersMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        if fields.get("testFlag") == "1":
            return answer(ResultCode.SUCCESS)  # the defect: "just a test", no instance
        return super().new_instance(fields)


build = with_merchant(NothingForTestOrdersMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.test-order",
    evidence="newInstance succeeded without an instanceId",
    rule="§7",
)
