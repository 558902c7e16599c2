"""newInstance answers "accepted" at once, and the instance never shows up in queryInstance.

The bug: the merchant answers newInstance immediately with an instanceId (as the pages ask,
docs/protocol.md §4.1-c) and hands provisioning to a background job, but the job never reports
back: it failed, or it waits on a queue nobody reads. queryInstance goes on answering success
without the instance, so the marketplace, which keeps polling until the instance information
comes back (§10.2), never learns that the order was provisioned.

Why it is tempting: the quick answer is the part everybody tests; the job's failure path is
silent, and on a developer's machine the job always finishes.

How the reference merchant avoids it: with ``--async-provisioning`` it records the job with the
instance and reports the instance on a later queryInstance (``reference/conversation.py``); a
real merchant also marks a failed job and retries it.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.reference.activities import Answer
from simulator.reference.conversation import ConversingMerchant

from .base import mutant, with_merchant


@dataclass
class NeverFinishingMerchant(ConversingMerchant):
    async_provisioning: bool = True

    def query_instance(self, fields: dict[str, str]) -> Answer:
        result = super().query_instance(fields)
        with self._lock:
            self._provisioning |= self._created  # the defect: no job ever finishes
            waiting = set(self._provisioning)
        info = result.get("info")
        if isinstance(info, list):
            result["info"] = [item for item in info if item.get("instanceId") not in waiting]
        return result


build = with_merchant(NeverFinishingMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="conversation.async-provisioning",
    evidence="provisioning never completed",
    rule="§4.1, §10.2, U43",
    verdict=Verdict.WARNED,
    controls=("lifecycle.test-order",),
)
