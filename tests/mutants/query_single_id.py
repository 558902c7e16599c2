"""queryInstance treats its instanceId as one id, so a comma-separated list finds nothing.

The bug: the merchant looks ``instanceId`` up as it is. With one id that works; the marketplace
also asks for up to 100 at once, ``"id1,id2,id3"``, which matches no instance, and the merchant
answers success with an empty list: the marketplace concludes none of them exists.

Why it is tempting: the field is called ``instanceId``, singular, and the examples show one id.

How the reference merchant avoids it: ``Merchant.query_instance`` splits the value on commas,
refuses more than 100 ids, and lists each live instance it knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class SingleIdQueryMerchant(Merchant):
    def query_instance(self, fields: dict[str, str]) -> Answer:
        info = [
            {
                "instanceId": item.instance_id,
                "appInfo": self._app_info(item.instance_id, item.app_user_name, item.app_password),
            }
            for item in self.store.instances([fields["instanceId"]])  # the defect: never split
        ]
        return answer(ResultCode.SUCCESS, encryptType=self.encrypt_type.value, info=info)


build = with_merchant(SingleIdQueryMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.query-several",
    evidence="queryInstance left out 3 of the 3 instances just created",
    rule="§7",
    controls=("lifecycle.full",),
)
