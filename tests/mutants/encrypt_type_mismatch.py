"""newInstance declares encryptType "2" (AES-128) but encrypts appInfo with the AES-256 key.

The bug: the merchant's crypto helper always derives the 32-byte (AES-256) key, while the
answer declares ``encryptType: "2"``, typically because the constant was copied from the sample
or changed to "2" when a JDK without the unlimited-strength policy refused AES-256 on another
machine. The marketplace derives the 16-byte key the merchant declared, and decryption fails.

Why it is tempting: ``"1"`` = AES-256 and ``"2"`` = AES-128 is the reverse of what most people
guess, and the merchant's own round-trip test uses its own helper for both directions.

How the reference merchant avoids it: one setting, ``MerchantConfig.encrypt_type``, is both
declared in the answer and used by ``Merchant._encrypt``, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flask import Flask

from simulator.checks import Verdict
from simulator.protocol import EncryptType, encrypt
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Merchant

from .base import install_merchant, mutant


@dataclass
class MismatchedKeyMerchant(Merchant):
    def _encrypt(self, plaintext: str) -> str:
        # The defect: the helper ignores the declared encryptType.
        return encrypt(plaintext, self.access_key, EncryptType.AES256)


def build(config: MerchantConfig) -> Flask:
    app = create_app(dataclasses.replace(config, encrypt_type=EncryptType.AES128))
    install_merchant(app, MismatchedKeyMerchant)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.appinfo-encrypted",
    evidence="does not decrypt with encryptType 2",
    rule="§5",
)
