"""simulator.protocol.usage_signature: the usage push's signature/ts/nonce headers (protocol.md §2.6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.protocol.mkt import MktCode
from simulator.protocol.replay import ReplayCache
from simulator.protocol.usage_signature import (
    BodyForm,
    UsageReason,
    UsageRefusal,
    UsageSigned,
    natural_body,
    sign_usage_push,
    signature,
    verify_usage_push,
)

KEY = "koosim-test-key"
NOW = datetime(2026, 11, 29, 22, 0, 0, tzinfo=UTC)
TS = "1795989600000"
BODY = {
    "usage_records": [
        {
            "metering_sn": "sn-1",
            "instance_id": "i-1",
            "usage_value": "1.5",
            "record_time": "20261129T210500Z",
            "end_time": "20261129T210000Z",
            "begin_time": "20261129T200000Z",
        }
    ]
}


def refused(verdict: UsageSigned | UsageRefusal) -> UsageReason:
    assert isinstance(verdict, UsageRefusal), verdict
    return verdict.reason


def test_ts_is_the_clock_in_milliseconds() -> None:
    assert int(TS) == int(NOW.timestamp() * 1000)


def test_the_natural_form_sorts_members_at_every_depth_and_keeps_array_order() -> None:
    value = {"b": [{"z": 1, "a": "é"}, {"y": None}], "a": 0.5}
    assert natural_body(value) == '{"a":0.5,"b":[{"a":"é","z":1},{"y":null}]}'


def test_the_signature_is_base64_hmac_sha256_over_ts_nonce_body() -> None:
    expected = hmac.new(KEY.encode(), f"ts={TS}&nonce=n1&body={{}}".encode(), hashlib.sha256).digest()
    assert signature(KEY, TS, "n1", "{}") == base64.b64encode(expected).decode()


def test_signed_by_the_helper_verifies_in_the_sorted_form() -> None:
    body, headers = sign_usage_push(KEY, BODY, now=NOW, nonce="nonce-1")
    assert body == natural_body(BODY).encode() and headers["ts"] == TS
    verdict = verify_usage_push(KEY, headers, body, NOW)
    assert verdict == UsageSigned(BodyForm.SORTED, NOW, skewed=False, replayed=False)
    assert verdict.warnings == []


def test_a_merchant_signing_the_unsorted_bytes_it_sends_is_accepted_with_a_warning() -> None:
    raw = json.dumps(BODY, indent=1).encode()
    headers = {"ts": TS, "nonce": "n", "signature": signature(KEY, TS, "n", raw)}
    verdict = verify_usage_push(KEY, headers, raw, NOW)
    assert isinstance(verdict, UsageSigned) and verdict.form is BodyForm.RAW
    assert any("U37" in warning for warning in verdict.warnings)


def test_a_signature_over_the_sorted_form_verifies_whatever_the_bytes_order() -> None:
    raw = json.dumps(BODY).encode()  # members in the merchant's order, with spaces
    headers = {"ts": TS, "nonce": "n", "signature": signature(KEY, TS, "n", natural_body(BODY))}
    verdict = verify_usage_push(KEY, headers, raw, NOW)
    assert isinstance(verdict, UsageSigned) and verdict.form is BodyForm.SORTED


@pytest.mark.parametrize("change", ["key", "body", "ts", "nonce"])
def test_one_change_fails_the_signature(change: str) -> None:
    body, headers = sign_usage_push(KEY, BODY, now=NOW, nonce="nonce-1")
    key = KEY + "x" if change == "key" else KEY
    if change == "body":
        body = body.replace(b"1.5", b"1.6")
    if change == "ts":
        headers["ts"] = str(int(TS) + 1)
    if change == "nonce":
        headers["nonce"] = "nonce-2"
    verdict = verify_usage_push(key, headers, body, NOW)
    assert refused(verdict) is UsageReason.SIGNATURE_MISMATCH
    assert verdict.code is MktCode.AUTH_FAILED and verdict.code.status == 401


@pytest.mark.parametrize(
    ("offset", "outcome"),
    [
        (timedelta(0), "fresh"),
        (timedelta(seconds=60), "fresh"),
        (timedelta(seconds=61), "skewed"),
        (-timedelta(minutes=15), "skewed"),
        (timedelta(minutes=15, milliseconds=1), "refused"),
        (-timedelta(minutes=15, milliseconds=1), "refused"),
    ],
)
def test_ts_more_than_15_minutes_off_is_refused_and_more_than_60_s_warned(
    offset: timedelta, outcome: str
) -> None:
    body, headers = sign_usage_push(KEY, BODY, now=NOW + offset, nonce="n")
    verdict = verify_usage_push(KEY, headers, body, NOW)
    if outcome == "refused":
        assert refused(verdict) is UsageReason.TS_OUT_OF_WINDOW
    else:
        assert isinstance(verdict, UsageSigned) and verdict.skewed is (outcome == "skewed")


@pytest.mark.parametrize(
    ("headers", "reason", "code"),
    [
        ({"ts": TS, "nonce": "n"}, UsageReason.MISSING_HEADER, MktCode.UNDEFINED_PARAMETER),
        ({"ts": TS, "nonce": "", "signature": "x"}, UsageReason.MISSING_HEADER, MktCode.UNDEFINED_PARAMETER),
        (
            {"ts": TS, "nonce": "n" * 65, "signature": "x"},
            UsageReason.HEADER_TOO_LONG,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": TS, "nonce": "n", "signature": "x" * 1001},
            UsageReason.HEADER_TOO_LONG,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": "1" * 21, "nonce": "n", "signature": "x"},
            UsageReason.HEADER_TOO_LONG,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": TS[:-3], "nonce": "n", "signature": "x"},
            UsageReason.MALFORMED_TS,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": TS + "0", "nonce": "n", "signature": "x"},
            UsageReason.MALFORMED_TS,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": "-" + TS[1:], "nonce": "n", "signature": "x"},
            UsageReason.MALFORMED_TS,
            MktCode.INVALID_PARAMETER,
        ),
        (
            {"ts": "١" * 13, "nonce": "n", "signature": "x"},
            UsageReason.MALFORMED_TS,
            MktCode.INVALID_PARAMETER,
        ),
        ({"ts": TS, "nonce": "n", "signature": "é"}, UsageReason.SIGNATURE_MISMATCH, MktCode.AUTH_FAILED),
    ],
)
def test_bad_headers_are_refused_with_a_typed_reason(
    headers: dict[str, str], reason: UsageReason, code: MktCode
) -> None:
    verdict = verify_usage_push(KEY, headers, b"{}", NOW)
    assert refused(verdict) is reason and verdict.code is code


def test_header_names_match_without_case_and_may_not_repeat() -> None:
    body, headers = sign_usage_push(KEY, BODY, now=NOW, nonce="n")
    upper = [(name.upper(), value) for name, value in headers.items()]
    assert isinstance(verify_usage_push(KEY, upper, body, NOW), UsageSigned)
    assert refused(verify_usage_push(KEY, [*upper, ("nonce", "m")], body, NOW)) is UsageReason.HEADER_REPEATED


def test_a_replayed_nonce_is_observed_and_refused_only_on_request() -> None:
    """The spec (U36) reads no replay cache; issue 16 asks for refusal: the caller decides."""
    body, headers = sign_usage_push(KEY, BODY, now=NOW, nonce="n-once")
    observed = ReplayCache()
    assert verify_usage_push(KEY, headers, body, NOW, observed).replayed is False  # type: ignore[union-attr]
    again = verify_usage_push(KEY, headers, body, NOW + timedelta(seconds=5), observed)
    assert isinstance(again, UsageSigned) and again.replayed
    assert any("U36" in warning for warning in again.warnings)
    refusing = ReplayCache()
    assert isinstance(verify_usage_push(KEY, headers, body, NOW, refusing, refuse_replays=True), UsageSigned)
    verdict = verify_usage_push(KEY, headers, body, NOW, refusing, refuse_replays=True)
    assert refused(verdict) is UsageReason.NONCE_REPLAYED and verdict.code is MktCode.AUTH_FAILED


def test_a_body_that_is_not_json_can_only_match_as_sent() -> None:
    raw = b"\xff\xfe not json"
    headers = {"ts": TS, "nonce": "n", "signature": signature(KEY, TS, "n", raw)}
    verdict = verify_usage_push(KEY, headers, raw, NOW)
    assert isinstance(verdict, UsageSigned) and verdict.form is BodyForm.RAW


_text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\x00", "\n"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(st.sampled_from(["ts", "nonce", "signature", "TS", "x"]) | _text, _text), max_size=5
    ),
    body=st.binary(max_size=64) | st.sampled_from([b'{"a":NaN}', b'"\\ud800"', b"[" * 5000]),
)
def test_any_headers_and_body_get_a_typed_verdict_never_an_exception(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    verdict = verify_usage_push(KEY, headers, body, NOW, ReplayCache(), refuse_replays=True)
    assert isinstance(verdict, UsageRefusal) and verdict.code in MktCode
