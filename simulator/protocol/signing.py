"""Canonical bodies and the three signature schemes of protocol.md §2-§4, plus v1's Body-Sign.

Signing functions return lower-case hex (v2, sync) or base64 (v1) exactly as the marketplace
sends them; verifying functions compare in constant time and never raise on bad input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TIMESTAMP_WINDOW_MS = 60_000
"""How old (or how far ahead) a request's timestamp may be: 60 s (doc)."""

V1_TIMESTAMP_FORMAT = "%Y%m%d%H%M%S%f"


def _same(expected: str, received: str) -> bool:
    """Constant-time comparison that is simply False for text no signature could be."""
    if not received.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), received.encode("ascii"))


def _verify(expected: Callable[[], str], received: str | None, *, any_case: bool = False) -> bool:
    """Whether ``received`` is the signature ``expected()`` computes; hex compares in any case.

    A message holding a lone surrogate cannot be encoded, so no signature can cover it: False.
    """
    if not received:
        return False
    try:
        signature = expected()
    except UnicodeEncodeError:
        return False
    return _same(signature, received.lower() if any_case else received)


def _hmac(key: str | bytes, message: str | bytes) -> bytes:
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    msg_bytes = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(key_bytes, msg_bytes, hashlib.sha256).digest()


_ESCAPE = re.compile(r"\\(\\|u[0-9a-f]{4})")


def _java_escapes(match: re.Match[str]) -> str:
    # An escaped backslash stays; a \u escape (Python writes one only for a control character
    # without a short form) gets Jackson's upper-case hex: \u001f -> \u001F.
    escape = match.group(1)
    return "\\" + (escape if escape == "\\" else "u" + escape[1:].upper())


def _utf16_order(name: str) -> bytes:
    """Java's String order (UTF-16 code units): big-endian UTF-16 bytes compare the same way."""
    return name.encode("utf-16-be", "surrogatepass")


def canonical_body(body: Mapping[str, Any]) -> str:
    """The signed form of a body (docs/protocol.md §2.1, ASSUMPTION U1): top-level members
    sorted by name, nulls dropped, compact JSON with raw UTF-8 — byte-identical to Jackson
    writing a TreeMap, the stack the marketplace signs on [X1]: keys in UTF-16 code-unit order
    (Java's ``String.compareTo``; Python's code-point order differs above U+FFFF), and
    control characters escaped with upper-case hex (``\u001f``, not Python's ``\u001f``)."""
    kept = {name: body[name] for name in sorted(body, key=_utf16_order) if body[name] is not None}
    return _ESCAPE.sub(_java_escapes, json.dumps(kept, ensure_ascii=False, separators=(",", ":")))


def is_fresh(timestamp_ms: str | int | None, now_ms: int, window_ms: int = TIMESTAMP_WINDOW_MS) -> bool:
    """Whether a millisecond timestamp lies within ``window_ms`` of ``now_ms``."""
    try:
        value = int(str(timestamp_ms))
    except (TypeError, ValueError):
        return False
    return abs(now_ms - value) <= window_ms


# --- v2 produce interface -------------------------------------------------------------------


def sign_v2(body: Mapping[str, Any], access_key: str, timestamp: str, nonce: str) -> str:
    """The ``signature`` query parameter for a v2 call carrying ``body``."""
    inner = _hmac(access_key, canonical_body(body)).hex()
    return _hmac(access_key, access_key + nonce + timestamp + inner).hex()


def verify_v2(
    body: Mapping[str, Any], access_key: str, timestamp: str, nonce: str, signature: str | None
) -> bool:
    return _verify(lambda: sign_v2(body, access_key, timestamp, nonce), signature, any_case=True)


# --- user-authorization sync (Kit) ----------------------------------------------------------


def sign_sync(body: Mapping[str, Any], sync_key: str, timestamp: str, nonce: str) -> str:
    """The ``x-sign`` header of a user-authorization sync call: one HMAC, no inner digest."""
    return _hmac(sync_key, sync_key + nonce + timestamp + canonical_body(body)).hex()


def verify_sync(
    body: Mapping[str, Any], sync_key: str, timestamp: str, nonce: str, signature: str | None
) -> bool:
    return _verify(lambda: sign_sync(body, sync_key, timestamp, nonce), signature, any_case=True)


# --- v1 legacy: authToken and Body-Sign -----------------------------------------------------


def format_v1_timestamp(moment: datetime) -> str:
    """``yyyyMMddHHmmssSSS`` in UTC, the v1 ``timeStamp`` parameter."""
    return moment.astimezone(UTC).strftime(V1_TIMESTAMP_FORMAT)[:-3]


def sign_v1(params: Mapping[str, str], access_key: str) -> str:
    """The ``authToken`` over the already URL-decoded query parameters (it must hold ``timeStamp``)."""
    signed = {name: value for name, value in params.items() if name != "authToken"}
    token = _hmac(access_key + params["timeStamp"], canonical_query(signed))
    return base64.b64encode(token).decode("ascii")


def verify_v1(params: Mapping[str, str], access_key: str) -> bool:
    if "timeStamp" not in params:
        return False
    return _verify(lambda: sign_v1(params, access_key), params.get("authToken"))


@dataclass(frozen=True)
class BodySign:
    sign_type: str
    signature: str


_BODY_SIGN_PART = re.compile(r'\s*(\w+)\s*=\s*"([^"]*)"\s*')


def sign_body(body: bytes, access_key: str) -> str:
    """The ``Body-Sign`` header a v1 merchant puts on the exact response bytes."""
    signature = base64.b64encode(_hmac(access_key, body)).decode("ascii")
    return f'sign_type="HMAC-SHA256", signature="{signature}"'


def parse_body_sign(header: str | None) -> BodySign | None:
    """Parse ``sign_type="…", signature="…"`` with or without a space after the comma."""
    if not header:
        return None
    parts: dict[str, str] = {}
    for piece in header.split(","):
        match = _BODY_SIGN_PART.fullmatch(piece)
        if match is None:
            return None
        parts[match.group(1)] = match.group(2)
    if "sign_type" not in parts or "signature" not in parts:
        return None
    return BodySign(parts["sign_type"], parts["signature"])


def verify_body_sign(body: bytes, header: str | None, access_key: str) -> bool:
    parsed = parse_body_sign(header)
    if parsed is None or parsed.sign_type.upper() != "HMAC-SHA256":
        return False
    expected = base64.b64encode(_hmac(access_key, body)).decode("ascii")
    return _same(expected, parsed.signature)


# --- merchant -> marketplace open APIs (ASSUMPTION: see docs/server.md) -------------------------


def canonical_query(params: Mapping[str, str]) -> str:
    """What a GET call signs in place of a body: parameters sorted by name, ``k=v`` joined by ``&``."""
    return "&".join(f"{name}={params[name]}" for name in sorted(params))


def sign_openapi(access_key: str, ts: str, nonce: str, body: str) -> str:
    """The ``signature`` header of a merchant's call to the marketplace's open APIs."""
    return base64.b64encode(_hmac(access_key, f"ts={ts}&nonce={nonce}&body={body}")).decode("ascii")


def verify_openapi(access_key: str, ts: str, nonce: str, body: str, signature: str | None) -> bool:
    return _verify(lambda: sign_openapi(access_key, ts, nonce, body), signature)
