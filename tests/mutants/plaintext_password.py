"""newInstance returns the administrator password of appInfo in plain text.

The bug: the merchant encrypts ``appInfo.userName`` but puts the generated password in the
answer as it is. The marketplace decrypts both fields before showing them to the buyer, so the
buyer sees garbage (or the marketplace rejects the answer), and the password sits in clear text
in every log and proxy on the way.

Why it is tempting: the password is generated a few lines below the user name, often by another
helper, and "it is HTTPS anyway".

How the reference merchant avoids it: ``activities.Merchant.new_instance`` passes both secrets
through ``_encrypt`` (AES-CBC under the key derived from the access key, protocol.md §5) once,
when the instance is created, and stores the encrypted form.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer

from .base import mutant, with_merchant


@dataclass
class PlaintextPasswordMerchant(Merchant):
    def new_instance(self, fields: dict[str, str]) -> Answer:
        instance = self.store.create_instance(
            fields,
            app_user_name=self._encrypt(f"admin-{fields['orderId'][-16:]}"),
            app_password=secrets.token_urlsafe(12),  # the defect: not encrypted
        )
        return answer(
            ResultCode.SUCCESS,
            instanceId=instance.instance_id,
            encryptType=self.encrypt_type.value,
            appInfo=self._app_info(instance.instance_id, instance.app_user_name, instance.app_password),
        )


build = with_merchant(PlaintextPasswordMerchant)


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.appinfo-encrypted",
    evidence="appInfo.password does not decrypt",
    rule="§5",
)
