"""The usage push's own signature headers, ``signature``/``ts``/``nonce`` (protocol.md §2.6).

``signature`` = base64 of HMAC-SHA256, keyed with the seller's interconnection key, over
``ts=<ts>&nonce=<nonce>&body=<body>`` with the body "in its naturally sorted form" (按自然排序).

**The reading of "naturally sorted" taken here (A48, ASSUMPTION U37):** the JSON body with the
members of every object sorted by name at every depth (arrays keep their order), compact
(``,`` and ``:`` without spaces), non-ASCII written as raw UTF-8, numbers as parsed. That is
:func:`natural_body`. A merchant that signs the exact bytes it sent instead is accepted too, and
the verdict says which form matched (:class:`BodyForm`): matching only the raw bytes is a
warning-level finding, never a refusal. A client that sends the natural form itself (as
:func:`sign_usage_push` does) satisfies both readings at once.

**Timing and replays (ASSUMPTION U36):** ``ts`` is Unix time in milliseconds, 13 ASCII digits;
more than 15 minutes from the marketplace's clock (the gateway's figure, §2.5) is refused, more
than 60 s is accepted and flagged. The spec's reading is *no* replay cache: a
:class:`~simulator.protocol.replay.ReplayCache` passed in only *observes* a repeated nonce
(``replayed`` in the verdict) unless ``refuse_replays`` is set, which is issue 16's reading
("replayed nonces within the window are refused").

Refusal codes (§8.4, by ASSUMPTION U35/U36 since no page maps header faults to codes): a missing
header is ``MKT.0101`` (a mandatory parameter missing), an over-long or malformed one ``MKT.0100``
(validation failed), a stale ``ts``, a wrong signature or a refused replay ``MKT.0154``
(authentication failed).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from simulator.protocol.limits import GATEWAY_CLOCK_WINDOW
from simulator.protocol.mkt import MktCode
from simulator.protocol.replay import ReplayCache

TS_WINDOW = GATEWAY_CLOCK_WINDOW
"""ASSUMPTION U36: a ``ts`` further from now than this is refused."""
TS_WARN = timedelta(seconds=60)
"""ASSUMPTION U36: a ``ts`` further from now than this is accepted with a warning."""

MAX_LENGTHS = {"signature": 1000, "ts": 20, "nonce": 64}
"""The header lengths of §2.6's table."""

_TS = re.compile(r"[0-9]{13}", re.ASCII)


class BodyForm(Enum):
    """Which form of the body the signature covered."""

    SORTED = "the naturally sorted body (members sorted at every depth, compact JSON)"
    RAW = "the body bytes exactly as sent"


class UsageReason(Enum):
    """Why a usage push's signature headers are refused; the value is the sentence shown."""

    MISSING_HEADER = "a signature header (signature, ts, nonce) is missing or empty"
    HEADER_TOO_LONG = "a signature header is longer than §2.6 allows (signature 1000, ts 20, nonce 64)"
    HEADER_REPEATED = "a signature header appears more than once"
    MALFORMED_TS = "ts is not Unix time in milliseconds (13 digits)"
    TS_OUT_OF_WINDOW = "ts is more than 15 minutes from the marketplace's clock"
    SIGNATURE_MISMATCH = "the signature matches neither the naturally sorted body nor the bytes sent"
    NONCE_REPLAYED = "this nonce was already used within the 15-minute window"

    @property
    def code(self) -> MktCode:
        return _CODES.get(self, MktCode.AUTH_FAILED)

    @property
    def published(self) -> bool:
        """A page states this refusal (§2.6: the headers are mandatory, with these lengths).
        The others rest on ASSUMPTIONs: the ``ts`` form, window and replays (U36), the signed
        form of the body (A48, U37), a repeated header (no page): a warning at most."""
        return self in _PUBLISHED


_PUBLISHED = frozenset({UsageReason.MISSING_HEADER, UsageReason.HEADER_TOO_LONG})


_CODES = {
    UsageReason.MISSING_HEADER: MktCode.UNDEFINED_PARAMETER,
    UsageReason.HEADER_TOO_LONG: MktCode.INVALID_PARAMETER,
    UsageReason.HEADER_REPEATED: MktCode.UNDEFINED_PARAMETER,
    UsageReason.MALFORMED_TS: MktCode.INVALID_PARAMETER,
}


@dataclass(frozen=True)
class UsageSigned:
    """Headers that authenticate the body; what matched and what deserves a warning."""

    form: BodyForm
    sent_at: datetime
    skewed: bool
    """``ts`` is more than 60 s from now (U36: a warning)."""
    replayed: bool
    """The nonce was seen before within the window (only known with a replay cache)."""

    @property
    def warnings(self) -> list[str]:
        found = []
        if self.form is BodyForm.RAW:
            found.append(
                "the signature covers the body bytes as sent, not its naturally sorted form "
                "(§2.6, A48, ASSUMPTION U37)"
            )
        if self.skewed:
            found.append("ts is more than 60 s from the marketplace's clock (§2.6, ASSUMPTION U36)")
        if self.replayed:
            found.append("the nonce was already used within the window (§2.6, ASSUMPTION U36)")
        return found


@dataclass(frozen=True)
class UsageRefusal:
    """Signature headers the marketplace refuses."""

    reason: UsageReason
    detail: str = ""

    @property
    def code(self) -> MktCode:
        return self.reason.code

    @property
    def message(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


def natural_body(value: Any) -> str:
    """The naturally sorted form of a decoded JSON value (this module's reading, U37)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def signature(key: str, ts: str, nonce: str, body: str | bytes) -> str:
    """``base64(HMAC-SHA256(key, "ts=<ts>&nonce=<nonce>&body=<body>"))``."""
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    message = f"ts={ts}&nonce={nonce}&body=".encode() + body_bytes
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def format_ts(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def sign_usage_push(
    key: str, body: Mapping[str, Any], *, now: datetime | None = None, nonce: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body bytes to POST (already naturally sorted) and the three signature headers."""
    text = natural_body(body)
    ts = format_ts(now or datetime.now(UTC))
    nonce = nonce or secrets.token_hex(16)
    headers = {"ts": ts, "nonce": nonce, "signature": signature(key, ts, nonce, text)}
    return text.encode("utf-8"), headers


def verify_usage_push(
    key: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    now: datetime,
    nonces: ReplayCache | None = None,
    *,
    refuse_replays: bool = False,
) -> UsageSigned | UsageRefusal:
    """Check the ``signature``/``ts``/``nonce`` headers of a usage push carrying ``body``.

    Never raises on anything a client can send. Header names are compared without case.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    values: dict[str, str] = {}
    for name in ("signature", "ts", "nonce"):
        found = [value for key_, value in pairs if key_.lower() == name]
        if len(found) > 1:
            return UsageRefusal(UsageReason.HEADER_REPEATED, name)
        if not found or not found[0]:
            return UsageRefusal(UsageReason.MISSING_HEADER, name)
        if len(found[0]) > MAX_LENGTHS[name]:
            return UsageRefusal(UsageReason.HEADER_TOO_LONG, name)
        values[name] = found[0]
    ts, nonce, received = values["ts"], values["nonce"], values["signature"]
    if _TS.fullmatch(ts) is None:
        return UsageRefusal(UsageReason.MALFORMED_TS)
    sent_at = datetime.fromtimestamp(int(ts) / 1000, UTC)
    if abs(now - sent_at) > TS_WINDOW:
        return UsageRefusal(UsageReason.TS_OUT_OF_WINDOW)
    form = _matching_form(key, ts, nonce, body, received)
    if form is None:
        return UsageRefusal(UsageReason.SIGNATURE_MISMATCH)
    replayed = nonces is not None and not nonces.remember(nonce, sent_at + TS_WINDOW, now)
    if replayed and refuse_replays:
        return UsageRefusal(UsageReason.NONCE_REPLAYED)
    return UsageSigned(form, sent_at, abs(now - sent_at) > TS_WARN, replayed)


def _matching_form(key: str, ts: str, nonce: str, body: bytes, received: str) -> BodyForm | None:
    if not received.isascii():
        return None
    candidates: list[tuple[BodyForm, bytes]] = []
    # A body that is not JSON has no sorted form: only the raw bytes can have been signed.
    with contextlib.suppress(ValueError, RecursionError, UnicodeError):
        candidates.append((BodyForm.SORTED, natural_body(json.loads(body)).encode("utf-8")))
    candidates.append((BodyForm.RAW, body))
    for form, text in candidates:
        try:
            expected = signature(key, ts, nonce, text)
        except UnicodeError:
            continue
        if hmac.compare_digest(expected.encode("ascii"), received.encode("ascii")):
            return form
    return None
