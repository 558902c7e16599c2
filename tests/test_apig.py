"""simulator.protocol.apig: the API gateway's AK/SK check of the open APIs (protocol.md §2.5).

Requests are signed by huaweicloudsdkcore's own Signer (the package a merchant uses), so these
tests show koosim accepts what Huawei's SDK produces, and refuses everything else with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.protocol import apig
from simulator.protocol.apig import Authenticated, GatewayRefusal, InboundRequest, Reason
from simulator.protocol.replay import ReplayCache

AK, SK = "KOOSIMTESTAK0000", "koosim-test-secret-key"
KEYS = {AK: SK}
NOW = datetime(2026, 11, 29, 22, 0, 0, tzinfo=UTC)
DATE = "20261129T220000Z"
HOST = "127.0.0.1:5000"
PATH = "/api/mkp-openapi-public/global/v1/order/query"
USAGE = "/api/mkp-openapi-public/global/v1/isv/usage-data"


def sdk_signed(
    method: str = "GET",
    path: str = PATH,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    date: str = DATE,
    ak: str = AK,
    sk: str = SK,
) -> InboundRequest:
    """A request signed by huaweicloudsdkcore's Signer itself, as it reaches the marketplace."""
    given_headers = {"X-Sdk-Date": date, **(headers or {})}
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=path,
        query_params=list(query or [("orderId", "MOCKPERIODYEARNEW")]),
        header_params=given_headers,
        body=body,
    )
    Signer(BasicCredentials(ak, sk)).sign(request)
    return InboundRequest(
        method,
        path,
        tuple(query or [("orderId", "MOCKPERIODYEARNEW")]),
        tuple(request.header_params.items()),
        body,
    )


def replace_header(request: InboundRequest, name: str, value: str | None) -> InboundRequest:
    headers = [(key, val) for key, val in request.headers if key.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return InboundRequest(request.method, request.path, request.query, tuple(headers), request.body)


def refusal(verdict: apig.Verdict) -> Reason:
    assert isinstance(verdict, GatewayRefusal), verdict
    assert verdict.code == "APIGW.0303" and verdict.status == 401
    return verdict.reason


# --- what Huawei's signer produces is accepted ----------------------------------------------


def test_a_get_signed_by_the_sdk_verifies() -> None:
    verdict = apig.verify(sdk_signed(), KEYS, NOW)
    assert verdict == Authenticated(AK, ("host", "x-sdk-date"), NOW)


def test_a_json_post_signed_by_the_sdk_verifies() -> None:
    body = b'{"usage_records":[{"instance_id":"i-1","usage_value":"1"}]}'
    request = sdk_signed("POST", USAGE, [], {"Content-Type": "application/json"}, body)
    verdict = apig.verify(request, KEYS, NOW)
    assert isinstance(verdict, Authenticated)
    assert verdict.signed_headers == ("content-type", "host", "x-sdk-date")


def test_the_published_get_example_with_a_non_json_content_type_verifies() -> None:
    """A53: Huawei's Java sample sends text/plain; the SDK then declares UNSIGNED-PAYLOAD."""
    for content_type in ("text/plain", "application/json charset=UTF-8"):
        request = sdk_signed(headers={"Content-Type": content_type})
        assert isinstance(apig.verify(request, KEYS, NOW), Authenticated), content_type
    with_body = sdk_signed("POST", USAGE, [], {"Content-Type": "text/plain"}, b"anything")
    assert ("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD") in with_body.headers
    assert isinstance(apig.verify(with_body, KEYS, NOW), Authenticated)


def test_query_values_and_header_values_beyond_ascii_verify() -> None:
    query = [("orderId", "CS 1/2?&=+é"), ("orderLineId", "行-000001")]
    request = sdk_signed(query=query, headers={"X-Koosim-Note": "café"})
    assert isinstance(apig.verify(request, KEYS, NOW), Authenticated)


def test_a_header_value_as_wsgi_delivers_it_still_verifies() -> None:
    """WSGI hands headers over as ISO-8859-1 text of the raw (UTF-8) bytes."""
    request = sdk_signed(headers={"X-Koosim-Note": "café"})
    as_wsgi = tuple(
        (name, value if name != "X-Koosim-Note" else "café".encode().decode("iso-8859-1"))
        for name, value in request.headers
    )
    # the signer itself already rewrote the value that way
    assert ("X-Koosim-Note", "caf\xc3\xa9") in as_wsgi
    assert isinstance(
        apig.verify(InboundRequest("GET", PATH, request.query, as_wsgi), KEYS, NOW), Authenticated
    )


def test_the_client_helper_signs_what_the_gateway_accepts() -> None:
    signed = apig.sign(
        "GET",
        f"https://{HOST}{PATH}?orderLineId=MOCKONDEMAND-000001&orderId=MOCKONDEMAND",
        AK,
        SK,
        headers={"Content-Type": "application/json"},
        now=NOW,
    )
    assert signed.url == f"https://{HOST}{PATH}?orderId=MOCKONDEMAND&orderLineId=MOCKONDEMAND-000001"
    assert signed.headers["X-Sdk-Date"] == DATE and signed.headers["Host"] == HOST
    assert signed.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")
    assert isinstance(apig.verify(apig.inbound("GET", signed.url, signed.headers), KEYS, NOW), Authenticated)


def test_the_sdk_computes_the_scheme_protocol_md_describes() -> None:
    """§2.5 written out independently: canonical request, string to sign, hex HMAC."""
    query = [("orderId", "CS 1"), ("orderLineId", "CS 1-000001")]
    request = sdk_signed(query=query, headers={"Content-Type": "application/json"})
    headers = {name.lower(): value for name, value in request.headers}
    canonical_query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query))
    signed = ["content-type", "host", "x-sdk-date"]
    canonical = "\n".join(
        [
            "GET",
            PATH + "/",
            canonical_query,
            "".join(f"{name}:{headers[name]}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    to_sign = f"SDK-HMAC-SHA256\n{DATE}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = hmac.new(SK.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    assert (
        headers["authorization"]
        == f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={';'.join(signed)}, Signature={expected}"
    )


# --- one change, one refusal ----------------------------------------------------------------


def _tampered(request: InboundRequest, what: str) -> InboundRequest:
    if what == "body":
        return InboundRequest(
            request.method, request.path, request.query, request.headers, request.body.replace(b"1", b"2")
        )
    if what == "query":
        return InboundRequest(
            request.method, request.path, (("orderId", "MOCKPERIODYEARNEX"),), request.headers
        )
    if what == "path":
        return InboundRequest(
            request.method, request.path + "x", request.query, request.headers, request.body
        )
    if what == "method":
        return InboundRequest("PUT", request.path, request.query, request.headers, request.body)
    if what == "host":
        return replace_header(request, "Host", "127.0.0.1:5001")
    if what == "content-type":
        return replace_header(request, "Content-Type", "application/jsom")
    assert what == "date"
    return replace_header(request, "X-Sdk-Date", "20261129T220001Z")


@pytest.mark.parametrize("what", ["body", "query", "path", "method", "host", "content-type", "date"])
def test_one_changed_byte_header_or_date_fails_the_signature(what: str) -> None:
    request = sdk_signed(
        "POST", USAGE, [("orderId", "MOCKPERIODYEARNEW")], {"Content-Type": "application/json"}, b'{"a":1}'
    )
    assert isinstance(apig.verify(request, KEYS, NOW), Authenticated)
    assert refusal(apig.verify(_tampered(request, what), KEYS, NOW)) is Reason.SIGNATURE_MISMATCH


def test_a_wrong_secret_key_fails_the_signature() -> None:
    assert refusal(apig.verify(sdk_signed(sk=SK + "x"), KEYS, NOW)) is Reason.SIGNATURE_MISMATCH


def test_an_unknown_access_key_is_refused_as_such() -> None:
    assert refusal(apig.verify(sdk_signed(ak="SOMEONEELSE"), KEYS, NOW)) is Reason.UNKNOWN_ACCESS_KEY
    assert refusal(apig.verify(sdk_signed(), {}, NOW)) is Reason.UNKNOWN_ACCESS_KEY


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=15), True),
        (-timedelta(minutes=15), True),
        (timedelta(minutes=15, seconds=1), False),
        (-timedelta(minutes=15, seconds=1), False),
        (timedelta(days=365), False),
    ],
)
def test_the_date_must_be_within_15_minutes_either_way(offset: timedelta, accepted: bool) -> None:
    verdict = apig.verify(sdk_signed(), KEYS, NOW + offset)
    if accepted:
        assert isinstance(verdict, Authenticated)
    else:
        assert refusal(verdict) is Reason.DATE_OUT_OF_WINDOW
        assert verdict.reason.published


def test_the_same_signed_request_twice_within_the_window_is_accepted_twice() -> None:
    """The AK/SK scheme has no nonce and no page names a replay rule (U40): a merchant that asks
    for one order twice in a second (a resend, two copies of one call) is answered both times;
    once the window has passed, the date check refuses the old signature."""
    request = sdk_signed()
    assert isinstance(apig.verify(request, KEYS, NOW), Authenticated)
    assert isinstance(apig.verify(request, KEYS, NOW + timedelta(seconds=30)), Authenticated)
    assert refusal(apig.verify(request, KEYS, NOW + timedelta(minutes=16))) is Reason.DATE_OUT_OF_WINDOW


def test_the_replay_memory_is_bounded() -> None:
    replays = ReplayCache(capacity=3)
    for second in range(10):
        assert replays.remember(f"token-{second}", NOW + timedelta(minutes=15), NOW)
    assert len(replays) == 3
    assert replays.seen("token-9", NOW) and not replays.seen("token-0", NOW)
    assert not replays.remember("token-9", NOW + timedelta(minutes=15), NOW)
    # expired tokens go first and may be used again
    assert replays.remember("token-9", NOW, NOW + timedelta(minutes=16))
    with pytest.raises(ValueError, match="at least one"):
        ReplayCache(capacity=0)


def _with_authorization(value: str | None) -> InboundRequest:
    return replace_header(sdk_signed(), "Authorization", value)


def _signature_of(request: InboundRequest) -> str:
    return dict(request.headers)["Authorization"].rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, Reason.MISSING_AUTHORIZATION),
        ("", Reason.MALFORMED_AUTHORIZATION),
        ("Bearer abc", Reason.MALFORMED_AUTHORIZATION),
        (
            f"SDK-HMAC-SHA256 Access={AK},SignedHeaders=host;x-sdk-date,Signature={'0' * 64}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'A' * 64}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'0' * 63}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=Host;x-sdk-date, Signature={'0' * 64}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x_sdk_date, Signature={'0' * 64}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=, Signature={'0' * 64}",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'0' * 64}\n",
            Reason.MALFORMED_AUTHORIZATION,
        ),
        (
            f"SDK-HMAC-SM3 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'0' * 64}",
            Reason.UNSUPPORTED_ALGORITHM,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=x-sdk-date;host, Signature={'0' * 64}",
            Reason.SIGNED_HEADERS_NOT_SORTED,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;host;x-sdk-date, Signature={'0' * 64}",
            Reason.SIGNED_HEADERS_NOT_SORTED,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=x-sdk-date, Signature={'0' * 64}",
            Reason.REQUIRED_HEADER_NOT_SIGNED,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host, Signature={'0' * 64}",
            Reason.REQUIRED_HEADER_NOT_SIGNED,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-extra;x-sdk-date, Signature={'0' * 64}",
            Reason.SIGNED_HEADER_MISSING,
        ),
        (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'0' * 64}",
            Reason.SIGNATURE_MISMATCH,
        ),
    ],
)
def test_a_malformed_authorization_is_refused_with_its_reason(
    authorization: str | None, reason: Reason
) -> None:
    assert refusal(apig.verify(_with_authorization(authorization), KEYS, NOW)) is reason


def test_an_upper_case_signature_is_malformed() -> None:
    request = sdk_signed()
    upper = dict(request.headers)["Authorization"].replace(
        _signature_of(request), _signature_of(request).upper()
    )
    assert (
        refusal(apig.verify(replace_header(request, "Authorization", upper), KEYS, NOW))
        is Reason.MALFORMED_AUTHORIZATION
    )


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        (None, Reason.MISSING_DATE),
        ("", Reason.MALFORMED_DATE),
        ("20261129T220000", Reason.MALFORMED_DATE),
        ("2026-11-29T22:00:00Z", Reason.MALFORMED_DATE),
        ("20261329T220000Z", Reason.MALFORMED_DATE),
        ("20260230T220000Z", Reason.MALFORMED_DATE),
        ("20261129T250000Z", Reason.MALFORMED_DATE),
        ("２0261129T220000Z", Reason.MALFORMED_DATE),
        ("20261129t220000z", Reason.MALFORMED_DATE),
        ("Sun, 29 Nov 2026 22:00:00 GMT", Reason.MALFORMED_DATE),
    ],
)
def test_a_malformed_date_is_refused_without_an_exception(date: str | None, reason: Reason) -> None:
    assert refusal(apig.verify(replace_header(sdk_signed(), "X-Sdk-Date", date), KEYS, NOW)) is reason


def test_repeated_headers_are_refused() -> None:
    request = sdk_signed()
    doubled_date = InboundRequest("GET", PATH, request.query, (*request.headers, ("x-sdk-date", DATE)))
    assert refusal(apig.verify(doubled_date, KEYS, NOW)) is Reason.SIGNED_HEADER_REPEATED
    doubled_host = InboundRequest("GET", PATH, request.query, (*request.headers, ("host", HOST)))
    assert refusal(apig.verify(doubled_host, KEYS, NOW)) is Reason.SIGNED_HEADER_REPEATED
    auth = dict(request.headers)["Authorization"]
    doubled_auth = InboundRequest("GET", PATH, request.query, (*request.headers, ("authorization", auth)))
    assert refusal(apig.verify(doubled_auth, KEYS, NOW)) is Reason.MALFORMED_AUTHORIZATION


def test_the_error_body_is_the_gateways_and_holds_no_secret() -> None:
    verdict = apig.verify(sdk_signed(sk="other-secret"), KEYS, NOW)
    assert isinstance(verdict, GatewayRefusal)
    body = verdict.body("req-1")
    assert body == {
        "error_msg": Reason.SIGNATURE_MISMATCH.value,
        "error_code": "APIGW.0303",
        "request_id": "req-1",
    }
    assert SK not in str(body) and "other-secret" not in str(body)


def test_only_the_published_refusals_say_so() -> None:
    assert {reason for reason in Reason if reason.published} == {
        Reason.UNKNOWN_ACCESS_KEY,
        Reason.SIGNATURE_MISMATCH,
        Reason.DATE_OUT_OF_WINDOW,
    }


# --- fuzz: anything a client sends gets a typed answer, never an exception -------------------

_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\x00", "\n", ",", ";", "="]), max_size=80
)


@settings(max_examples=300, deadline=None)
@given(authorization=_text, date=_text)
def test_any_authorization_and_date_strings_are_refused_with_a_reason(authorization: str, date: str) -> None:
    request = replace_header(replace_header(sdk_signed(), "Authorization", authorization), "X-Sdk-Date", date)
    assert refusal(apig.verify(request, KEYS, NOW)) in Reason


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.sampled_from(["SDK-HMAC-SHA256 Access=", f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders="]),
    rest=_text,
)
def test_near_miss_authorizations_are_refused_with_a_reason(prefix: str, rest: str) -> None:
    assert refusal(apig.verify(_with_authorization(prefix + rest), KEYS, NOW)) in Reason


@settings(max_examples=200, deadline=None)
@given(
    method=_text,
    path=_text,
    query=st.lists(st.tuples(_text, _text), max_size=3),
    headers=st.lists(st.tuples(_text, _text), max_size=4),
    body=st.binary(max_size=64),
)
def test_any_request_around_a_valid_authorization_gets_a_verdict(
    method: str, path: str, query: list[tuple[str, str]], headers: list[tuple[str, str]], body: bytes
) -> None:
    signed = sdk_signed()
    request = InboundRequest(method, path, tuple(query), (*signed.headers, *headers), body)
    verdict = apig.verify(request, KEYS, NOW)
    assert isinstance(verdict, Authenticated | GatewayRefusal)


@settings(max_examples=100, deadline=None)
@given(
    query=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=12)), max_size=4),
    body=st.binary(max_size=200),
    flip=st.integers(min_value=0),
)
def test_whatever_the_sdk_signs_verifies_and_one_flipped_body_byte_does_not(
    query: list[tuple[str, str]], body: bytes, flip: int
) -> None:
    query = [(name.replace("\x00", ""), value) for name, value in query]
    request = sdk_signed("POST", USAGE, query or [("a", "b")], {"Content-Type": "application/json"}, body)
    assert isinstance(apig.verify(request, KEYS, NOW), Authenticated)
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
        tampered = InboundRequest("POST", USAGE, request.query, request.headers, changed)
        assert refusal(apig.verify(tampered, KEYS, NOW)) is Reason.SIGNATURE_MISMATCH
