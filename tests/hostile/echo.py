"""A merchant that echoes every secret it gets back to the marketplace (``tests/test_secrets.py``).

It is the reference merchant (so every command gets far: orders are created, instances exist)
with one ``after_request`` hook that puts into each JSON answer what a careless merchant's logs
and error messages do: the access key and the sync key (``resultMsg``, an ``echo`` member, a
response header), the request's signature parameters, the decrypted ``email`` and
``mobilePhone`` of a v1 call, and, in every appInfo, a password the marketplace will decrypt,
echoed in clear beside it (``memo``). Its changeInstanceCheck answers carry the access key in a
resultCode long enough for a schema message to cut it in two: a half key is a leak too.

The secrets are random per test (:func:`new_secrets`), so a grep for them finds only leaks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from mutants.base import answer_body

from simulator.protocol import DecryptionError, EncryptType, decrypt, encrypt, sign_body
from simulator.reference import MerchantConfig, create_app
from simulator.transport import json_bytes

WINDOW = 10
"""A leak is any run of this many characters of a secret's random part."""


@dataclass(frozen=True)
class Secrets:
    """What must never appear in any output, each with a random part to grep for."""

    access_key: str
    sync_key: str
    password: str
    """The appInfo password the merchant encrypts and the marketplace decrypts."""
    email: str
    phone: str
    """The plaintexts of the encrypted email and mobilePhone a v1 call carries."""

    def named(self) -> dict[str, str]:
        return {
            "access key": self.access_key,
            "sync key": self.sync_key,
            "decrypted appInfo password": self.password,
            "decrypted email": self.email,
            "decrypted mobilePhone": self.phone,
        }

    def windows(self) -> dict[bytes, str]:
        """Every WINDOW-character run of every secret's random part -> the secret's name."""
        found = {}
        for name, value in self.named().items():
            random_part = value.rsplit("-", 1)[-1] if name != "decrypted mobilePhone" else value
            random_part = random_part.split("@")[0]
            for start in range(len(random_part) - WINDOW + 1):
                found[random_part[start : start + WINDOW].encode()] = name
        return found

    def leaks(self, data: bytes) -> list[str]:
        """The secrets ``data`` shows some of (raw, or as UTF-16 inside a binary file)."""
        named = set()
        for window, name in self.windows().items():
            if window in data or window.decode().encode("utf-16-le") in data:
                named.add(name)
        return sorted(named)


def new_secrets() -> Secrets:
    digits = "".join(str(secrets.randbelow(10)) for _ in range(8))
    return Secrets(
        access_key=f"echo-access-key-{secrets.token_hex(16)}",
        sync_key=f"echo-sync-key-{secrets.token_hex(16)}",
        password=f"Pw-{secrets.token_hex(10)}",
        email=f"buyer-{secrets.token_hex(8)}@example.com",
        phone=f"139{digits}",
    )


def _decrypted(value: str | None, access_key: str) -> str | None:
    for encrypt_type in EncryptType:
        try:
            return decrypt(value or "", access_key, encrypt_type)
        except DecryptionError:
            continue
    return None


def echo_merchant(found: Secrets) -> tuple[Flask, MerchantConfig]:
    """The echoing merchant over ``found``'s keys, and its config (for its RSA public key)."""
    config = MerchantConfig(access_key=found.access_key, sync_key=found.sync_key)
    app = create_app(config)

    def echo_app_info(item: dict[str, Any], encrypt_type: str) -> None:
        app_info = item.get("appInfo")
        if isinstance(app_info, dict):
            app_info["password"] = encrypt(found.password, found.access_key, encrypt_type)
            app_info["memo"] = f"your password is {found.password}"

    @app.after_request
    def echo(response: Response) -> Response:
        body = answer_body(response)
        if body is None:
            return response
        decrypted = {
            name: _decrypted(request.args.get(name), found.access_key) for name in ("email", "mobilePhone")
        }
        echoed = {
            "query": dict(request.args),
            "x-sign": request.headers.get("x-sign"),
            "keys": [found.access_key, found.sync_key],
            "decrypted": decrypted,
        }
        body["resultMsg"] = (
            f"{body.get('resultMsg')} (echo: access key {found.access_key}, sync key {found.sync_key}, "
            f"email {decrypted['email']}, mobilePhone {decrypted['mobilePhone']})"
        )
        body["echo"] = echoed
        encrypt_type = body.get("encryptType") or EncryptType.AES256.value
        echo_app_info(body, encrypt_type)
        for item in body.get("info") or []:
            if isinstance(item, dict):
                echo_app_info(item, encrypt_type)
        if _activity() == "changeInstanceCheck":
            body["resultCode"] = "0" * 50 + found.access_key
        payload = json_bytes(body)
        response.set_data(payload)
        response.headers["X-Echo"] = f"{found.access_key} {found.sync_key}"
        if "Body-Sign" in response.headers:
            response.headers["Body-Sign"] = sign_body(payload, found.access_key)
        return response

    return app, config


def _activity() -> str | None:
    if request.method == "GET":
        return request.args.get("activity")
    body = request.get_json(silent=True)
    return body.get("activity") if isinstance(body, dict) else None
