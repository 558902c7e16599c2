"""A second, independent implementation of protocol.md §2-§4 signing, for the tests.

Written from the text of protocol.md alone and deliberately importing nothing from
``simulator``: when a test signs a request with these functions and the reference merchant
accepts it, two implementations agree, not one implementation with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def _hmac_sha256(key: str, message: str | bytes) -> bytes:
    data = message if isinstance(message, bytes) else message.encode("utf-8")
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).digest()


def canonical(body: Mapping[str, Any]) -> str:
    """§2: top-level members sorted by name, nulls dropped, compact JSON, raw UTF-8, nested as sent."""
    members = [
        json.dumps(name, ensure_ascii=False)
        + ":"
        + json.dumps(body[name], ensure_ascii=False, separators=(",", ":"))
        for name in sorted(body)
        if body[name] is not None
    ]
    return "{" + ",".join(members) + "}"


def v2_inner(body: Mapping[str, Any], access_key: str) -> str:
    return _hmac_sha256(access_key, canonical(body)).hex()


def v2_signature(body: Mapping[str, Any], access_key: str, timestamp: str, nonce: str) -> str:
    """§2: ``hex(HMAC(accessKey, accessKey + nonce + timestamp + inner))``."""
    return _hmac_sha256(access_key, access_key + nonce + timestamp + v2_inner(body, access_key)).hex()


def sync_signature(body: Mapping[str, Any], sync_key: str, timestamp: str, nonce: str) -> str:
    """§4: ``hex(HMAC(syncKey, syncKey + nonce + timestamp + canonical body))``, no inner HMAC."""
    return _hmac_sha256(sync_key, sync_key + nonce + timestamp + canonical(body)).hex()


def v1_message(params: Mapping[str, str]) -> str:
    """§3: every decoded parameter except authToken, sorted by name, ``k=v`` joined with ``&``."""
    return "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "authToken")


def v1_auth_token(params: Mapping[str, str], access_key: str) -> str:
    """§3: ``base64(HMAC(accessKey + timeStamp, message))``."""
    return base64.b64encode(_hmac_sha256(access_key + params["timeStamp"], v1_message(params))).decode()


_BODY_SIGN_MEMBER = re.compile(r'\s*([A-Za-z_]+)\s*=\s*"([^"]*)"\s*')


def body_sign_ok(body: bytes, header: str | None, access_key: str) -> bool:
    """§3: whether ``header`` is a valid Body-Sign over exactly ``body`` (either comma spacing)."""
    if not header:
        return False
    members = {}
    for piece in header.split(","):
        match = _BODY_SIGN_MEMBER.fullmatch(piece)
        if match is None:
            return False
        members[match.group(1)] = match.group(2)
    expected = base64.b64encode(_hmac_sha256(access_key, body)).decode()
    return members.get("sign_type") == "HMAC-SHA256" and members.get("signature") == expected


# --- what a marketplace sends besides the signature ------------------------------------------


def now_ms() -> str:
    return str(int(time.time() * 1000))


def nonce() -> str:
    return secrets.token_hex(16)


def v1_timestamp() -> str:
    """``yyyyMMddHHmmssSSS`` (UTC), the v1 ``timeStamp``."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def v2_query(
    body: Mapping[str, Any], access_key: str, timestamp: str | None = None, nonce_: str | None = None
) -> dict[str, str]:
    """The query parameters of a v2 call carrying ``body``, freshly timed unless told otherwise."""
    timestamp = now_ms() if timestamp is None else timestamp
    nonce_ = nonce() if nonce_ is None else nonce_
    return {
        "signature": v2_signature(body, access_key, timestamp, nonce_),
        "timestamp": timestamp,
        "nonce": nonce_,
    }


def sync_headers(
    body: Mapping[str, Any], sync_key: str, timestamp: str | None = None, nonce_: str | None = None
) -> dict[str, str]:
    """The ``x-timestamp``, ``x-nonce`` and ``x-sign`` headers of a sync call carrying ``body``."""
    timestamp = now_ms() if timestamp is None else timestamp
    nonce_ = nonce() if nonce_ is None else nonce_
    return {
        "x-timestamp": timestamp,
        "x-nonce": nonce_,
        "x-sign": sync_signature(body, sync_key, timestamp, nonce_),
        "Content-Type": "application/json",
    }


def new_order(**overrides: Any) -> dict[str, Any]:
    """A valid newInstance body for a fresh order (a debugging call: testFlag 1)."""
    order_id = f"CS{uuid.uuid4().hex[:14].upper()}"
    body = {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order_id,
        "orderLineId": f"{order_id}-000001",
        "customerId": uuid.uuid4().hex,
        "customerName": "测试客户",
        "productId": "00301-666666-0--0",
        "skuCode": "sku-basic",
        "chargingMode": "0",
        "periodType": "month",
        "periodNumber": "1",
        "expireTime": "20991231235959",
        "testFlag": "1",
        "saasExtendParams": None,
    }
    return {**body, **overrides}
