"""applicationSync decrypts the clientSecret with PKCS#1 v1.5 only.

The bug: the merchant decrypts with Java's default ``"RSA"`` cipher (RSA/ECB/PKCS1Padding). The
marketplace encrypts with OAEP (SHA-256, MGF1-SHA1), as Huawei's own sample merchant decrypts it,
under a key of at least 3072 bits (docs/protocol.md §2.8, U26): every secret is answered 000101.

Why it is tempting: ``Cipher.getInstance("RSA")`` is the shortest line that compiles.

How the reference merchant avoids it: it decrypts as the sample merchant does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    key = serialization.load_pem_private_key(config.rsa_private_key, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)

    def not_pkcs1(fields: dict[str, Any]) -> str | None:
        secret = fields.get("clientSecret")
        if not isinstance(secret, str):
            return None
        try:
            plain = key.decrypt(base64.b64decode(secret, validate=True), padding.PKCS1v15())  # the defect
            if plain.decode("utf-8").isprintable() and len(plain) >= 8:
                return None
        except (binascii.Error, ValueError):
            pass
        return "clientSecret does not decrypt"

    refuse_calls(app, "sync.sync", not_pkcs1, ResultCode.SECRET_PROBLEM)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="sync.application-secret",
    evidence="a valid clientSecret",
    rule="§2.8, U26",
)
