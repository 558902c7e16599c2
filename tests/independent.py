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


_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _java_string(text: str) -> str:
    """A string as Jackson writes it: short escapes, else \\uXXXX upper-case below U+0020, raw UTF-8."""
    out = []
    for char in text:
        if char in _SHORT:
            out.append(_SHORT[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _java_value(value: Any) -> str:
    if isinstance(value, str):
        return _java_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_java_string(k)}:{_java_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_java_value(v) for v in value) + "]"
    return json.dumps(value)


def _code_units(name: str) -> list[int]:
    """Java's String.compareTo order: UTF-16 code units, a supplementary character as its surrogates."""
    units = []
    for char in name:
        point = ord(char)
        if point > 0xFFFF:
            point -= 0x10000
            units += [0xD800 + (point >> 10), 0xDC00 + (point & 0x3FF)]
        else:
            units.append(point)
    return units


def canonical(body: Mapping[str, Any]) -> str:
    """§2.1, U1: Jackson over a TreeMap — top-level members in UTF-16 order, nulls dropped,
    compact, raw UTF-8, upper-case hex escapes, nested values as sent."""
    members = [
        _java_string(name) + ":" + _java_value(body[name])
        for name in sorted(body, key=_code_units)
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
    """A valid newInstance body for a fresh order (a debugging call: testFlag 1): the five
    fields of docs/protocol.md §4.1's table, nothing else."""
    order_id = f"CS{uuid.uuid4().hex[:14].upper()}"
    body = {
        "activity": "newInstance",
        "orderId": order_id,
        "orderLineId": f"{order_id}-000001",
        "businessId": str(uuid.uuid4()),
        "testFlag": "1",
    }
    return {**body, **overrides}
