"""The API gateway's AK/SK authentication of the open APIs (protocol.md §2.5), both ends of it.

Querying an Order is called through Huawei's API gateway: the merchant signs the request with its
AK/SK (``X-Sdk-Date`` plus ``Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…,
Signature=…``). koosim does not re-implement that algorithm: :func:`verify` rebuilds the request
from exactly the headers the ``Authorization`` names and signs it with Huawei's own signer
(``huaweicloudsdkcore.signer.signer.Signer``, [X4]) keyed with the SK the AK maps to, then
compares the two signatures in constant time. :func:`sign` is the client side, for the reference
merchant and the tests, through the same package.

The signer reads the clock only when a request has no ``X-Sdk-Date``; here the date always comes
from the request (verify) or from the caller (sign), and "now" is a parameter, so both are
deterministic.

Every refusal is a :class:`GatewayRefusal` naming its :class:`Reason`; all of them answer
``APIGW.0303`` (§2.5, A51) with HTTP 401 (U40). Which refusals the pages name: a wrong key, a
wrong signature, an expired date (§2.5). The others (a missing or malformed ``Authorization``,
a malformed date, unsigned ``host``) share the code by ASSUMPTION. The scheme carries no nonce
and no page names a replay rule for it, so the same signed request sent twice inside the window
is accepted twice: a merchant that asks for the same order again in the same second (on a resend,
for two copies of one call) is doing nothing the pages forbid, and refusing it would fail its
order for koosim's own rule (docs/protocol.md U40).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import parse_qsl, urlsplit

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from simulator.protocol.limits import BASIC_UTC_FORMAT, GATEWAY_CLOCK_WINDOW
from simulator.protocol.mkt import GATEWAY_AUTH_FAILED, GATEWAY_AUTH_STATUS

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = BASIC_UTC_FORMAT
WINDOW = GATEWAY_CLOCK_WINDOW
"""How far ``X-Sdk-Date`` may be from the gateway's clock, either way (§2.5 [S71][S72])."""

REQUIRED_SIGNED = ("host", "x-sdk-date")
"""ASSUMPTION U40: the minimum signed headers; every page example signs at least these."""

_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)
_HEADER_NAME = r"[a-z0-9!#$%&'*+.^`|~-]+"
_AUTHORIZATION = re.compile(
    r"(?P<algorithm>[A-Z0-9-]+) "
    r"Access=(?P<access>[\x21-\x2b\x2d-\x7e]+), "
    rf"SignedHeaders=(?P<signed>{_HEADER_NAME}(?:;{_HEADER_NAME})*), "
    r"Signature=(?P<signature>[0-9a-f]{64})",
    re.ASCII,
)
"""The exact shape the signer writes (§2.5): one space after the algorithm and after each comma,
lower-case header names (no ``_``: the signer never signs those), lower-case hex."""


class Reason(Enum):
    """Why the gateway refuses a request; the value is the sentence a report shows."""

    MISSING_AUTHORIZATION = "no Authorization header"
    MALFORMED_AUTHORIZATION = (
        "the Authorization header is not 'SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<names>, "
        "Signature=<64 lower-case hex>'"
    )
    UNSUPPORTED_ALGORITHM = "the Authorization names an algorithm other than SDK-HMAC-SHA256"
    MISSING_DATE = "no X-Sdk-Date header"
    MALFORMED_DATE = "X-Sdk-Date is not a UTC time written YYYYMMDDTHHMMSSZ"
    DATE_OUT_OF_WINDOW = "X-Sdk-Date is more than 15 minutes from the marketplace's clock"
    UNKNOWN_ACCESS_KEY = "the access key (AK) is not one the marketplace issued"
    REQUIRED_HEADER_NOT_SIGNED = "SignedHeaders must include host and x-sdk-date"
    SIGNED_HEADERS_NOT_SORTED = "SignedHeaders must be sorted and name each header once"
    SIGNED_HEADER_MISSING = "a header named in SignedHeaders is not in the request"
    SIGNED_HEADER_REPEATED = "a header named in SignedHeaders appears more than once"
    SIGNATURE_MISMATCH = "the signature does not match the request signed with the AK's SK"

    @property
    def code(self) -> str:
        return GATEWAY_AUTH_FAILED

    @property
    def status(self) -> int:
        return GATEWAY_AUTH_STATUS

    @property
    def published(self) -> bool:
        """Whether a page names this refusal (§2.5); the rest are ASSUMPTIONs (U40)."""
        return self in _PUBLISHED


_PUBLISHED = frozenset({Reason.UNKNOWN_ACCESS_KEY, Reason.SIGNATURE_MISMATCH, Reason.DATE_OUT_OF_WINDOW})


@dataclass(frozen=True)
class InboundRequest:
    """An HTTP request as it reached the marketplace.

    ``path`` is the path without the query string; ``query`` the decoded parameters in the
    order sent; ``headers`` every header as sent (names in any case, repeated names repeated);
    ``body`` the raw bytes.
    """

    method: str
    path: str
    query: Sequence[tuple[str, str]] = ()
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name``, compared without case."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


@dataclass(frozen=True)
class Authorization:
    """The parsed ``Authorization`` header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True)
class Authenticated:
    """A request the gateway lets through: who signed it, what it covered, when."""

    access_key: str
    signed_headers: tuple[str, ...]
    signed_at: datetime


@dataclass(frozen=True)
class GatewayRefusal:
    """A request the gateway refuses, with the reason and a detail for the merchant's developer.

    ``detail`` never holds a secret: not the SK, not the signature koosim expected.
    """

    reason: Reason
    detail: str = ""

    @property
    def code(self) -> str:
        return self.reason.code

    @property
    def status(self) -> int:
        return self.reason.status

    @property
    def message(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value

    def body(self, request_id: str) -> dict[str, str]:
        """The gateway's error body ``{error_msg, error_code, request_id}`` (§2.5)."""
        return {"error_msg": self.message, "error_code": self.code, "request_id": request_id}


Verdict = Authenticated | GatewayRefusal


def parse_authorization(value: str) -> Authorization | Reason:
    """The parts of an ``Authorization`` header, or why it cannot be one."""
    match = _AUTHORIZATION.fullmatch(value)
    if match is None:
        return Reason.MALFORMED_AUTHORIZATION
    if match["algorithm"] != ALGORITHM:
        return Reason.UNSUPPORTED_ALGORITHM
    signed = tuple(match["signed"].split(";"))
    if list(signed) != sorted(set(signed)):
        return Reason.SIGNED_HEADERS_NOT_SORTED
    return Authorization(match["access"], signed, match["signature"])


def parse_date(value: str) -> datetime | None:
    """An ``X-Sdk-Date`` as an aware UTC datetime, or None when it is not ``YYYYMMDDTHHMMSSZ``."""
    if _DATE.fullmatch(value) is None:
        return None
    try:
        return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # a well-shaped impossible date: month 13, 30 February, hour 25
        return None


def format_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def verify(
    request: InboundRequest,
    keys: Mapping[str, str],
    now: datetime,
) -> Verdict:
    """Authenticate ``request`` as the gateway would, against the AK → SK table ``keys``.

    Never raises on anything a client can send.
    """
    authorizations = request.header_values("Authorization")
    if not authorizations:
        return GatewayRefusal(Reason.MISSING_AUTHORIZATION)
    if len(authorizations) > 1:
        return GatewayRefusal(Reason.MALFORMED_AUTHORIZATION, "sent more than once")
    parsed = parse_authorization(authorizations[0])
    if isinstance(parsed, Reason):
        return GatewayRefusal(parsed)
    dates = request.header_values(DATE_HEADER)
    if not dates:
        return GatewayRefusal(Reason.MISSING_DATE)
    if len(dates) > 1:
        return GatewayRefusal(Reason.SIGNED_HEADER_REPEATED, "x-sdk-date")
    signed_at = parse_date(dates[0])
    if signed_at is None:
        return GatewayRefusal(Reason.MALFORMED_DATE)
    if abs(now - signed_at) > WINDOW:
        return GatewayRefusal(Reason.DATE_OUT_OF_WINDOW, f"X-Sdk-Date {dates[0]}, now {format_date(now)}")
    secret = keys.get(parsed.access_key)
    if not secret:
        return GatewayRefusal(Reason.UNKNOWN_ACCESS_KEY)
    missing = [name for name in REQUIRED_SIGNED if name not in parsed.signed_headers]
    if missing:
        return GatewayRefusal(Reason.REQUIRED_HEADER_NOT_SIGNED, f"not signed: {', '.join(missing)}")
    headers: dict[str, str] = {}
    for name in parsed.signed_headers:
        values = request.header_values(name)
        if not values:
            return GatewayRefusal(Reason.SIGNED_HEADER_MISSING, name)
        if len(values) > 1:
            return GatewayRefusal(Reason.SIGNED_HEADER_REPEATED, name)
        headers[name] = _wire_text(values[0])
    expected = _signature(parsed.access_key, secret, request, headers)
    if expected is None or not hmac.compare_digest(expected, parsed.signature):
        return GatewayRefusal(Reason.SIGNATURE_MISMATCH)
    return Authenticated(parsed.access_key, parsed.signed_headers, signed_at)


def _wire_text(value: str) -> str:
    """A header value as its sender wrote it.

    WSGI hands header values over as ISO-8859-1 text of the raw bytes, while the signer encodes
    values as UTF-8 (and then writes them back as ISO-8859-1). Undo the first step so a
    non-ASCII value signs the same on both ends; text that is not such a round trip stays as is.
    """
    try:
        return value.encode("iso-8859-1").decode("utf-8")
    except UnicodeError:
        return value


class _ExactSigner(Signer):  # type: ignore[misc]
    """Huawei's signer, signing exactly the headers given.

    Its ``sign`` adds ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` for a non-JSON Content-Type.
    A client's signer already decided that, and the header is in the request (and signed) or it
    is not; adding it again here would sign a header the client never sent (A53). Everything
    else (canonical URI, query, headers, payload hash, string to sign, HMAC) is the package's.
    """

    @classmethod
    def _process_content_header(cls, request: SdkRequest) -> None:
        return None


def _signature(access_key: str, secret: str, request: InboundRequest, headers: dict[str, str]) -> str | None:
    """The hex signature Huawei's signer computes for ``request`` over ``headers``; None if it
    cannot sign it (text that is not encodable)."""
    sdk_request = SdkRequest(
        method=request.method.upper(),
        resource_path=request.path or "/",
        query_params=list(request.query),
        header_params=dict(headers),
        body=request.body,
    )
    try:
        signed = _ExactSigner(BasicCredentials(access_key, secret)).sign(sdk_request)
    except (UnicodeError, ValueError, TypeError, IndexError):
        return None
    parsed = parse_authorization(str(signed.header_params.get("Authorization", "")))
    if isinstance(parsed, Reason) or parsed.signed_headers != tuple(headers):
        return None
    return parsed.signature


@dataclass(frozen=True)
class SignedRequest:
    """What a client sends after signing: the URL with the canonical query, and the headers."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


def sign(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    now: datetime | None = None,
) -> SignedRequest:
    """Sign a request the way a merchant's SDK does, with ``huaweicloudsdkcore``.

    ``url`` may carry a query string; the returned URL carries it in the signer's canonical
    order. ``headers`` are sent and signed (the signer signs every header given); ``Host`` and
    ``X-Sdk-Date`` are added, the date from ``now`` (default: the current UTC time).
    """
    parts = urlsplit(url)
    query = _query_pairs(parts.query)
    given = dict(headers or {})
    given.setdefault(DATE_HEADER, format_date(now or datetime.now(UTC)))
    sdk_request = SdkRequest(
        method=method.upper(),
        schema=parts.scheme,
        host=parts.netloc,
        resource_path=parts.path or "/",
        query_params=query,
        header_params=given,
        body=body,
    )
    signed = Signer(BasicCredentials(access_key, secret_key)).sign(sdk_request)
    return SignedRequest(
        url=f"{parts.scheme}://{parts.netloc}{signed.uri}",
        headers={str(name): str(value) for name, value in signed.header_params.items()},
    )


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def inbound(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes = b"",
) -> InboundRequest:
    """An :class:`InboundRequest` from a full URL, as a test or a recorded exchange has it."""
    parts = urlsplit(url)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    return InboundRequest(method, parts.path, tuple(_query_pairs(parts.query)), tuple(pairs), body)
