"""queryInstance keeps listing instances that were released.

The bug: releaseInstance marks the row as released (a soft delete), and queryInstance selects by
id without filtering on that mark. The marketplace, reconciling, sees an instance it released
still reported with its appInfo, as if the buyer could still use it.

Why it is tempting: a soft delete is the right call for audit, and the query was written before
release existed.

How the reference merchant avoids it: ``store.MerchantStore.instances`` returns only the live
(not released) instances among the ids asked for, and ``Merchant.query_instance`` lists those.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class SoftDeleteBlindMerchant(Merchant):
    def query_instance(self, fields: dict[str, str]) -> Answer:
        found = [self.store.instance(part) for part in fields["instanceId"].split(",") if part]
        info = [
            {
                "instanceId": item.instance_id,
                "appInfo": self._app_info(item.instance_id, item.app_user_name, item.app_password),
            }
            for item in found
            if item is not None  # the defect: released instances are not left out
        ]
        return answer(ResultCode.SUCCESS, encryptType=self.encrypt_type.value, info=info)


build = with_merchant(SoftDeleteBlindMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.after-release",
    verdict=Verdict.WARNED,
    evidence="still lists a released instance",
    rule="§7",
)
