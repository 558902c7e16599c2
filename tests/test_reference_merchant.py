"""The bundled reference merchant, driven with requests signed by tests/independent.py.

Every call is signed by the independent implementation of protocol.md, not by
simulator.protocol, so a merchant that accepts them agrees with the text of the protocol.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import independent
import pytest
import requests
import vectors
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from flask import Flask
from flask.testing import FlaskClient

from simulator.protocol import EncryptType, decrypt, encrypt
from simulator.reference import MerchantConfig, create_app, generate_rsa_private_key, public_key_pem
from simulator.serving import BackgroundServer

ACCESS_KEY = "merchant-test-access-key"
SYNC_KEY = "merchant-test-sync-key"
PATH = "/produceAPI"


# --- the independent implementation reproduces protocol.md's vectors --------------------------


def test_independent_signer_reproduces_the_protocol_vectors() -> None:
    assert independent.canonical(vectors.V2_BODY) == vectors.V2_CANONICAL
    assert independent.v2_inner(vectors.V2_BODY, vectors.KEY) == vectors.V2_INNER
    assert (
        independent.v2_signature(vectors.V2_BODY, vectors.KEY, vectors.T, vectors.N) == vectors.V2_SIGNATURE
    )
    assert independent.v1_auth_token(vectors.V1_PARAMS, vectors.KEY) == vectors.V1_TOKEN
    signature = vectors.V1_BODY_SIGN.split(", ", 1)[1]
    assert independent.body_sign_ok(vectors.V1_BODY, vectors.V1_BODY_SIGN, vectors.KEY)
    assert independent.body_sign_ok(vectors.V1_BODY, f'sign_type="HMAC-SHA256",{signature}', vectors.KEY)
    assert not independent.body_sign_ok(vectors.V1_BODY + b" ", vectors.V1_BODY_SIGN, vectors.KEY)
    assert (
        independent.sync_signature(vectors.SYNC_BODY, vectors.KEY, vectors.T, vectors.N) == vectors.SYNC_SIGN
    )


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    return generate_rsa_private_key()


def make_app(rsa_key: bytes, **config: Any) -> Flask:
    config = {"access_key": ACCESS_KEY, "sync_key": SYNC_KEY, "rsa_private_key": rsa_key, **config}
    return create_app(MerchantConfig(**config))


def close(app: Flask) -> None:
    app.extensions["koosim.merchant"].store.close()


@pytest.fixture
def app(rsa_key: bytes) -> Iterator[Flask]:
    app = make_app(rsa_key)
    yield app
    close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def as_json(response: Any) -> dict[str, Any]:
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = json.loads(response.get_data())
    assert isinstance(answer["resultCode"], str) and isinstance(answer["resultMsg"], str)
    return answer


def post_v2(
    client: FlaskClient,
    body: dict[str, Any],
    query: dict[str, str] | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """POST ``body`` (or ``data`` as the raw bytes) signed with the independent signer."""
    query = independent.v2_query(body, ACCESS_KEY) if query is None else query
    # Sent as a Java client might: member order as built, spaces, nulls kept, raw UTF-8.
    data = json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8") if data is None else data
    response = client.post(PATH, query_string=query, data=data, content_type="application/json")
    return as_json(response)


def resend(body: dict[str, Any]) -> dict[str, Any]:
    """The same call as the marketplace resends it: a new businessId (and new time and nonce)."""
    return {**body, "businessId": str(uuid.uuid4())}


@pytest.fixture
def instance(client: FlaskClient) -> dict[str, Any]:
    """A created instance: the newInstance body and answer, merged."""
    body = independent.new_order()
    answer = post_v2(client, body)
    assert answer["resultCode"] == "000000", answer
    return {**body, **answer}


# --- v2: what is accepted ----------------------------------------------------------------------


def test_v2_new_instance_signed_independently_is_accepted(client: FlaskClient) -> None:
    answer = post_v2(client, independent.new_order())
    assert answer["resultCode"] == "000000"
    assert 1 <= len(answer["instanceId"]) <= 64
    assert answer["encryptType"] in ("1", "2")
    app_info = answer["appInfo"]
    assert set(app_info) >= {"frontEndUrl", "adminUrl", "userName", "password", "memo"}
    # The secrets travel encrypted with the access key (protocol.md §5) and decrypt with it.
    encrypt_type = EncryptType(answer["encryptType"])
    assert decrypt(app_info["userName"], ACCESS_KEY, encrypt_type).startswith("admin-")
    assert decrypt(app_info["password"], ACCESS_KEY, encrypt_type)


def test_v2_signature_in_upper_case_is_accepted(client: FlaskClient) -> None:
    body = independent.new_order()
    query = independent.v2_query(body, ACCESS_KEY)
    query["signature"] = query["signature"].upper()
    assert post_v2(client, body, query)["resultCode"] == "000000"


def test_v2_body_with_unicode_escapes_is_accepted(client: FlaskClient) -> None:
    # The signature covers the parsed body, not the bytes: \u escapes and member order are free.
    body = independent.new_order()
    data = json.dumps(dict(reversed(list(body.items())))).encode("ascii")
    assert post_v2(client, body, data=data)["resultCode"] == "000000"


# --- v2: what is refused -----------------------------------------------------------------------


def test_v2_body_with_any_one_byte_changed_is_refused_with_000001(client: FlaskClient) -> None:
    # Members the page does not list are ignored (U46) but still signed: room for many bytes.
    body = independent.new_order(saasExtendParams="eyJrIjoidiJ9" * 8, customerName="测试客户")
    query = independent.v2_query(body, ACCESS_KEY)
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    positions = [i for i, byte in enumerate(data) if chr(byte).isascii() and chr(byte).isalnum()]
    assert len(positions) > 200
    for position in positions:
        changed = data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]
        answer = post_v2(client, body, query, data=changed)
        assert answer["resultCode"] == "000001", (position, changed[position - 10 : position + 10])


def test_v2_without_signature_is_refused_with_000001(client: FlaskClient) -> None:
    body = independent.new_order()
    query = independent.v2_query(body, ACCESS_KEY)
    del query["signature"]
    assert post_v2(client, body, query)["resultCode"] == "000001"
    assert post_v2(client, body, {**query, "signature": ""})["resultCode"] == "000001"


def test_v2_signed_with_another_key_is_refused_with_000001(client: FlaskClient) -> None:
    body = independent.new_order()
    assert post_v2(client, body, independent.v2_query(body, ACCESS_KEY + "x"))["resultCode"] == "000001"


def test_v2_signature_over_other_time_or_nonce_is_refused_with_000001(client: FlaskClient) -> None:
    body = independent.new_order()
    query = independent.v2_query(body, ACCESS_KEY)
    other = independent.v2_query(body, ACCESS_KEY)
    assert post_v2(client, body, {**query, "nonce": other["nonce"]})["resultCode"] == "000001"
    later = str(int(query["timestamp"]) + 1)
    assert post_v2(client, body, {**query, "timestamp": later})["resultCode"] == "000001"


@pytest.mark.parametrize("missing", ["timestamp", "nonce"])
def test_v2_without_timestamp_or_nonce_is_refused_with_000002(client: FlaskClient, missing: str) -> None:
    body = independent.new_order()
    query = independent.v2_query(body, ACCESS_KEY)
    del query[missing]
    assert post_v2(client, body, query)["resultCode"] == "000002"


@pytest.mark.parametrize("offset_ms", [-61_000, 61_000, -300_000], ids=["61s-old", "61s-ahead", "5min-old"])
def test_v2_stale_timestamp_is_refused_with_000002(client: FlaskClient, offset_ms: int) -> None:
    body = independent.new_order()
    timestamp = str(int(independent.now_ms()) + offset_ms)
    assert post_v2(client, body, independent.v2_query(body, ACCESS_KEY, timestamp))["resultCode"] == "000002"


def test_v2_timestamp_59s_old_is_accepted(client: FlaskClient) -> None:
    body = independent.new_order()
    timestamp = str(int(independent.now_ms()) - 59_000)
    assert post_v2(client, body, independent.v2_query(body, ACCESS_KEY, timestamp))["resultCode"] == "000000"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"", b"[1, 2]", b'"a string"', b"null", b'{"activity": ', b'{"a":"\xff\xfe"}'],
    ids=["text", "empty", "array", "string", "null", "truncated", "not-utf8"],
)
def test_v2_body_that_is_not_a_json_object_is_refused_with_000002(client: FlaskClient, data: bytes) -> None:
    assert post_v2(client, {}, data=data)["resultCode"] == "000002"


@pytest.mark.parametrize("field", ["businessId", "orderId", "orderLineId"])
def test_v2_missing_required_field_is_refused_with_000002(client: FlaskClient, field: str) -> None:
    body = independent.new_order()
    del body[field]
    answer = post_v2(client, body)
    assert answer["resultCode"] == "000002"
    assert field in answer["resultMsg"]


@pytest.mark.parametrize(
    "change",
    [{"testFlag": "yes"}, {"orderId": "x" * 65}, {"businessId": 42}, {"activity": "newInstance" + "x" * 10}],
    ids=["testFlag-enum", "orderId-too-long", "businessId-not-a-string", "activity-too-long"],
)
def test_v2_malformed_field_is_refused_with_000002(client: FlaskClient, change: dict[str, Any]) -> None:
    assert post_v2(client, independent.new_order(**change))["resultCode"] == "000002"


@pytest.mark.parametrize("activity", ["deleteEverything", "", None])
def test_v2_unknown_activity_is_refused_with_000002(client: FlaskClient, activity: str | None) -> None:
    assert post_v2(client, independent.new_order(activity=activity))["resultCode"] == "000002"


@pytest.mark.parametrize("activity", [["newInstance"], {"name": "newInstance"}], ids=["list", "object"])
def test_v2_activity_that_is_not_a_string_is_refused_with_000002(client: FlaskClient, activity: Any) -> None:
    assert post_v2(client, independent.new_order(activity=activity))["resultCode"] == "000002"


def test_v2_non_ascii_signature_is_refused_with_000001(client: FlaskClient) -> None:
    body = independent.new_order()
    query = {**independent.v2_query(body, ACCESS_KEY), "signature": "é" * 64}
    assert post_v2(client, body, query)["resultCode"] == "000001"


def test_v2_body_with_a_lone_surrogate_is_refused(client: FlaskClient) -> None:
    answer = post_v2(client, {}, independent.v2_query({}, ACCESS_KEY), data=b'{"activity":"\\ud800"}')
    assert answer["resultCode"] in ("000001", "000002")


def test_v2_deeply_nested_body_is_refused_with_000002(client: FlaskClient) -> None:
    assert post_v2(client, {}, data=b"[" * 100_000)["resultCode"] == "000002"


def test_v2_refused_by_a_v1_only_merchant(rsa_key: bytes) -> None:
    app = make_app(rsa_key, protocols=frozenset({"v1"}))
    try:
        assert post_v2(app.test_client(), independent.new_order())["resultCode"] == "000002"
    finally:
        close(app)


# --- v1: GET with an authToken, Body-Sign on the answer ----------------------------------------


def encrypted_with_plus_slash_and_equals(plaintext: str) -> str:
    """``plaintext`` AES-256-encrypted under ACCESS_KEY, with an IV chosen so that the value
    holds '+', '/' and '=': what a client that does not percent-encode would break."""
    for attempt in range(10_000):
        value = encrypt(plaintext, ACCESS_KEY, EncryptType.AES256, iv=f"iv{attempt:014d}")
        if "+" in value and "/" in value and value.endswith("="):
            return value
    raise AssertionError("no IV gave a ciphertext with '+', '/' and '='")


def v1_params(**overrides: str) -> dict[str, str]:
    order_id = f"CS{uuid.uuid4().hex[:14].upper()}"
    params = {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order_id,
        "orderLineId": f"{order_id}-000001",
        "customerId": uuid.uuid4().hex,
        "productId": "00301-666666-0--0",
        "skuCode": "sku-basic",
        "email": encrypted_with_plus_slash_and_equals("buyer@example.com"),
        "saasExtendParams": "eyJrZXkiOiJ2YWx+dWUifQ+/==",
        "testFlag": "1",
        "timeStamp": independent.v1_timestamp(),
    }
    return {**params, **overrides}


def get_v1(client: FlaskClient, params: dict[str, str], token: str | None = None, encode: bool = True) -> Any:
    token = independent.v1_auth_token(params, ACCESS_KEY) if token is None else token
    pairs = {**params, "authToken": token}
    quote_value = (lambda v: quote(v, safe="")) if encode else (lambda v: v)
    query = "&".join(f"{name}={quote_value(value)}" for name, value in pairs.items())
    return client.get(f"{PATH}?{query}")


def test_v1_call_with_a_correct_auth_token_is_accepted_and_its_answer_signed(client: FlaskClient) -> None:
    params = v1_params()
    token = independent.v1_auth_token(params, ACCESS_KEY)
    response = get_v1(client, params, token)
    answer = as_json(response)
    assert answer["resultCode"] == "000000", answer
    assert answer["instanceId"]
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


def test_v1_auth_token_with_plus_slash_equals_percent_encoded_is_accepted(client: FlaskClient) -> None:
    # Find a call whose token itself holds '+', '/' and '=': the token is percent-encoded too.
    for _ in range(200):
        params = v1_params()
        token = independent.v1_auth_token(params, ACCESS_KEY)
        if "+" in token and "/" in token:
            break
    else:
        raise AssertionError("no token with '+' and '/' in 200 tries")
    response = get_v1(client, params, token)
    assert as_json(response)["resultCode"] == "000000"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


def test_v1_values_sent_unencoded_arrive_changed_and_are_refused(client: FlaskClient) -> None:
    # '+' unencoded arrives as a space (protocol.md §3 pitfall): the token no longer matches.
    response = get_v1(client, v1_params(), encode=False)
    assert as_json(response)["resultCode"] == "000001"


def test_v1_wrong_auth_token_is_refused_with_000001_and_still_signed(client: FlaskClient) -> None:
    params = v1_params()
    wrong = independent.v1_auth_token(params, ACCESS_KEY + "x")
    response = get_v1(client, params, wrong)
    assert as_json(response)["resultCode"] == "000001"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


def test_v1_token_over_encoded_values_is_refused_with_000001(client: FlaskClient) -> None:
    params = v1_params()
    encoded = {name: quote(value, safe="") for name, value in params.items()}
    response = get_v1(client, params, independent.v1_auth_token(encoded, ACCESS_KEY))
    assert as_json(response)["resultCode"] == "000001"


def test_v1_without_time_stamp_is_refused_with_000002_and_signed(client: FlaskClient) -> None:
    params = v1_params()
    token = independent.v1_auth_token(params, ACCESS_KEY)
    del params["timeStamp"]
    response = get_v1(client, params, token)
    assert as_json(response)["resultCode"] == "000002"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


def test_v1_email_that_does_not_decrypt_is_refused_with_000002(client: FlaskClient) -> None:
    other_key_value = encrypt(
        "buyer@example.com", ACCESS_KEY + "x", EncryptType.AES256, iv="0123456789abcdef"
    )
    response = get_v1(client, v1_params(email=other_key_value))
    assert as_json(response)["resultCode"] == "000002"


def test_v1_unknown_activity_is_refused_with_000002(client: FlaskClient) -> None:
    response = get_v1(client, v1_params(activity="getLicenseAsync"))
    assert as_json(response)["resultCode"] == "000002"


def test_v1_refused_by_a_v2_only_merchant_and_signed(rsa_key: bytes) -> None:
    app = make_app(rsa_key, protocols=frozenset({"v2"}))
    try:
        response = get_v1(app.test_client(), v1_params())
        assert as_json(response)["resultCode"] == "000002"
        assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)
    finally:
        close(app)


def test_v1_non_ascii_auth_token_is_refused_with_000001_and_signed(client: FlaskClient) -> None:
    response = get_v1(client, v1_params(), token="é" * 44)
    assert as_json(response)["resultCode"] == "000001"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


# --- newInstance idempotency -------------------------------------------------------------------


def test_resent_new_instance_returns_the_same_instance_and_app_info(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    body = {name: instance[name] for name in independent.new_order()}
    for _ in range(3):
        again = post_v2(client, resend(body))
        assert again["resultCode"] == "000000"
        assert again["instanceId"] == instance["instanceId"]
        assert again["appInfo"] == instance["appInfo"]


def test_another_order_line_gets_another_instance(client: FlaskClient, instance: dict[str, Any]) -> None:
    body = {name: instance[name] for name in independent.new_order()}
    other = post_v2(client, {**resend(body), "orderLineId": body["orderLineId"] + "2"})
    assert other["resultCode"] == "000000"
    assert other["instanceId"] != instance["instanceId"]


def test_v1_and_v2_resends_of_one_order_line_share_the_instance(client: FlaskClient) -> None:
    params = v1_params()
    first = as_json(get_v1(client, params))
    body = {name: value for name, value in params.items() if name not in ("timeStamp", "email")}
    second = post_v2(client, resend(body))
    assert first["resultCode"] == second["resultCode"] == "000000"
    assert first["instanceId"] == second["instanceId"]


def test_concurrent_resends_through_a_real_server_yield_one_instance(rsa_key: bytes, tmp_path: Path) -> None:
    app = make_app(rsa_key, database=str(tmp_path / "concurrent.db"))
    body = independent.new_order()
    copies = 8
    barrier = threading.Barrier(copies)
    try:
        with BackgroundServer(app) as server:
            assert server.base_url.startswith("http://127.0.0.1:")
            url = server.base_url + PATH

            def send(_: int) -> dict[str, Any]:
                copy = resend(body)
                query = independent.v2_query(copy, ACCESS_KEY)
                data = json.dumps(copy, ensure_ascii=False).encode("utf-8")
                barrier.wait(timeout=10)
                response = requests.post(
                    url, params=query, data=data, headers={"Content-Type": "application/json"}, timeout=10
                )
                assert response.status_code == 200
                return response.json()

            with ThreadPoolExecutor(copies) as pool:
                answers = list(pool.map(send, range(copies)))
    finally:
        close(app)
    assert [a["resultCode"] for a in answers] == ["000000"] * copies
    assert len({a["instanceId"] for a in answers}) == 1
    assert len({json.dumps(a["appInfo"], sort_keys=True) for a in answers}) == 1


# --- the rest of the lifecycle -----------------------------------------------------------------


def lifecycle_call(instance: dict[str, Any], activity: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"activity": activity, "instanceId": instance["instanceId"]}
    # Follow-up calls name their own, new order (docs/protocol.md §4.2, §4.3).
    if activity in ("refreshInstance", "upgradeInstance"):
        base.update(orderId=instance["orderId"] + "N", orderLineId=instance["orderId"] + "N-000001")
    if activity == "refreshInstance":
        base.update(expireTime="21001231235959", scene="RENEWAL")
    if activity == "updateInstanceStatus":
        base.update(status="FREEZE")
    if activity == "changeInstanceCheck":
        base.update(productInfo={"productId": "00301-666666-0--1", "skuCode": "sku-pro"})
    return {**base, **fields}


@pytest.mark.parametrize(
    ("activity", "fields"),
    [
        ("refreshInstance", {}),
        ("refreshInstance", {"scene": "UNSUBSCRIBE_RENEWAL_PERIOD"}),
        ("refreshInstance", {"scene": "TRIAL_TO_FORMAL", "productId": "p-formal"}),
        ("updateInstanceStatus", {"status": "FREEZE"}),
        ("updateInstanceStatus", {"status": "UNFREEZE"}),
        ("upgradeInstance", {}),
        ("changeInstanceCheck", {}),
    ],
    ids=[
        "renewal",
        "unsubscribe-renewal",
        "trial-to-formal",
        "freeze",
        "unfreeze",
        "upgrade",
        "change-check",
    ],
)
def test_lifecycle_call_succeeds_and_again_when_resent(
    client: FlaskClient, instance: dict[str, Any], activity: str, fields: dict[str, Any]
) -> None:
    body = lifecycle_call(instance, activity, **fields)
    assert post_v2(client, body)["resultCode"] == "000000"
    assert post_v2(client, body)["resultCode"] == "000000"


def test_freeze_unfreeze_freeze_each_succeed(client: FlaskClient, instance: dict[str, Any]) -> None:
    for status in ("FREEZE", "UNFREEZE", "FREEZE", "UNFREEZE"):
        body = lifecycle_call(instance, "updateInstanceStatus", status=status)
        assert post_v2(client, body)["resultCode"] == "000000"


@pytest.mark.parametrize(
    ("activity", "fields"),
    [
        ("updateInstanceStatus", {"status": "DELETE"}),
        ("refreshInstance", {"scene": "FOREVER"}),
        ("refreshInstance", {"expireTime": "tomorrow"}),
    ],
    ids=["unknown-status", "unknown-scene", "bad-expire-time"],
)
def test_lifecycle_call_with_a_bad_value_is_refused_with_000002(
    client: FlaskClient, instance: dict[str, Any], activity: str, fields: dict[str, Any]
) -> None:
    assert post_v2(client, lifecycle_call(instance, activity, **fields))["resultCode"] == "000002"


def test_query_instance_answers_the_known_ids_with_their_app_info(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    other = post_v2(client, independent.new_order())
    ids = f"{instance['instanceId']},inst-unknown,{other['instanceId']}"
    answer = post_v2(client, {"activity": "queryInstance", "instanceId": ids})
    assert answer["resultCode"] == "000000"
    assert answer["encryptType"] == instance["encryptType"]
    assert answer["info"] == [
        {"instanceId": instance["instanceId"], "appInfo": instance["appInfo"]},
        {"instanceId": other["instanceId"], "appInfo": other["appInfo"]},
    ]


def test_query_instance_takes_100_characters_and_refuses_101(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    # docs/protocol.md §4.5: instanceId is a String of at most 100 characters (A9).
    ids = f"{instance['instanceId']},".ljust(100, "x")
    answer = post_v2(client, {"activity": "queryInstance", "instanceId": ids})
    assert answer["resultCode"] == "000000"
    assert [item["instanceId"] for item in answer["info"]] == [instance["instanceId"]]
    too_long = ids + "x"
    assert post_v2(client, {"activity": "queryInstance", "instanceId": too_long})["resultCode"] == "000002"


def test_release_then_resend_then_everything_else_is_000003(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    release = lifecycle_call(instance, "releaseInstance", orderId=instance["orderId"])
    assert post_v2(client, release)["resultCode"] == "000000"
    assert post_v2(client, release)["resultCode"] == "000000"  # a resend (practice)
    for activity in ("refreshInstance", "updateInstanceStatus", "upgradeInstance", "changeInstanceCheck"):
        assert post_v2(client, lifecycle_call(instance, activity))["resultCode"] == "000003", activity
    query = post_v2(client, {"activity": "queryInstance", "instanceId": instance["instanceId"]})
    assert query["resultCode"] == "000000"
    assert query["info"] == []


@pytest.mark.parametrize(
    "activity",
    ["refreshInstance", "updateInstanceStatus", "releaseInstance", "upgradeInstance", "changeInstanceCheck"],
)
def test_unknown_instance_is_000003(client: FlaskClient, activity: str) -> None:
    ghost = {"instanceId": "inst-does-not-exist", "orderId": "CS0", "orderLineId": "CS0-1"}
    assert post_v2(client, lifecycle_call(ghost, activity))["resultCode"] == "000003"


def test_lifecycle_works_over_v1_too(client: FlaskClient) -> None:
    """V1's own activities (docs/protocol.md §5.1): expireInstance (§5.4), instanceStatus (§5.6),
    releaseInstance with the subscription order (§5.5); no V2 updateInstanceStatus (U21)."""
    params = v1_params()
    created = as_json(get_v1(client, params))
    instance = {"instanceId": created["instanceId"], "timeStamp": independent.v1_timestamp()}
    calls = [
        {"activity": "expireInstance", **instance, "orderId": params["orderId"]},
        {"activity": "instanceStatus", **instance, "instanceStatus": "NORMAL"},
        {"activity": "instanceStatus", **instance, "instanceStatus": "FREEZE"},
    ]
    for call in calls:
        response = get_v1(client, call)
        assert as_json(response)["resultCode"] == "000000", call
        assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)
        ghost = get_v1(client, {**call, "instanceId": "inst-does-not-exist"})
        assert as_json(ghost)["resultCode"] == "000003"
    v2_status = {"activity": "updateInstanceStatus", **instance, "status": "FREEZE"}
    assert as_json(get_v1(client, v2_status))["resultCode"] == "000002"
    no_order = {"activity": "releaseInstance", **instance}
    assert as_json(get_v1(client, no_order))["resultCode"] == "000002"
    release = get_v1(client, {**no_order, "orderId": params["orderId"]})
    assert as_json(release)["resultCode"] == "000000"


# --- licence products --------------------------------------------------------------------------


def license_order() -> dict[str, Any]:
    """A getLicense body built from the rows the License page publishes (docs/protocol.md §6.1,
    [S75]): customerId (M, 100), customerName (O, 64), businessId (M, new on every request),
    orderId (M), skuCode (O). No orderLineId: not among the rows read."""
    order_id = f"CS{uuid.uuid4().hex[:14].upper()}"
    return {
        "activity": "getLicense",
        "customerId": "68cbc86abc2018ab880d92f36422fa0e" + "c" * 68,  # the page allows 100 characters
        "customerName": "测试客户",
        "businessId": str(uuid.uuid4()),
        "orderId": order_id,
        "skuCode": "sku-basic",
        "testFlag": "1",
    }


def test_license_lifecycle(client: FlaskClient) -> None:
    order = license_order()
    got = post_v2(client, order)
    assert got["resultCode"] == "000000"
    license_code = got["license"]
    assert license_code
    # "For the same order number ... return the License created before" [S75]: a resend carries a
    # new businessId (every request does) and gets the same code.
    assert post_v2(client, resend(order))["license"] == license_code
    other = post_v2(client, license_order())["license"]
    assert other and other != license_code  # another order, another License

    ref = {"orderId": order["orderId"], "license": license_code}  # the follow-up tables are U24
    refresh = {"activity": "refreshLicense", **ref, "expireTime": "21001231235959", "scene": "RENEWAL"}
    assert post_v2(client, refresh)["resultCode"] == "000000"
    assert post_v2(client, refresh)["resultCode"] == "000000"
    expire = {"activity": "expireLicense", **ref}
    assert post_v2(client, expire)["resultCode"] == "000000"
    assert post_v2(client, expire)["resultCode"] == "000000"
    assert post_v2(client, refresh)["resultCode"] == "000000"  # renewal after expiry
    release = {"activity": "releaseLicense", **ref}
    assert post_v2(client, release)["resultCode"] == "000000"
    assert post_v2(client, release)["resultCode"] == "000000"
    assert post_v2(client, refresh)["resultCode"] == "000003"
    assert post_v2(client, expire)["resultCode"] == "000003"


@pytest.mark.parametrize("activity", ["refreshLicense", "expireLicense", "releaseLicense"])
def test_unknown_license_is_000003(client: FlaskClient, activity: str) -> None:
    body = {"activity": activity, "orderId": "CS0", "license": "LIC-NOPE"}
    if activity == "refreshLicense":
        body["expireTime"] = "21001231235959"
    assert post_v2(client, body)["resultCode"] == "000003"


@pytest.mark.parametrize("mandatory", ["customerId", "businessId", "orderId"])
def test_get_license_without_a_mandatory_row_is_000002(client: FlaskClient, mandatory: str) -> None:
    """The rows [S75] marks M; orderLineId is not one of them (the spec changed: it was assumed)."""
    order = license_order()
    del order[mandatory]
    assert post_v2(client, order)["resultCode"] == "000002"


def test_get_license_longer_customer_id_than_the_page_allows_is_000002(client: FlaskClient) -> None:
    assert post_v2(client, {**license_order(), "customerId": "c" * 101})["resultCode"] == "000002"


# --- user-authorization sync -------------------------------------------------------------------


def post_sync(
    client: FlaskClient, call: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    headers = independent.sync_headers(body, SYNC_KEY) if headers is None else headers
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    # The published paths (docs/protocol.md §7.1, A36): /produceAPI/<name>, authSync under /v2.
    path = f"{PATH}/v2/authSync" if call == "authSync" else f"{PATH}/{call}"
    return as_json(client.post(path, data=data, headers=headers))


KIT = {"testFlag": 0, "timeStamp": "20220420114117642"}
"""Every Kit call's mandatory testFlag (Integer) and timeStamp (docs/protocol.md §7.1)."""


def user(name: str, role: str = "user") -> dict[str, str]:
    return {"userName": name, "name": name.title(), "orgCode": "o-1", "role": role, "enable": "true"}


def auth_body(flag: int) -> dict[str, Any]:
    return {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "appId": "app-001",
        "userList": [user("alice", "admin"), user("bob")],
        "currentSyncTime": "20220420114117642",
        "flag": flag,
        **KIT,
    }


def test_auth_sync_add_twice_and_delete_twice_all_succeed(app: Flask, client: FlaskClient) -> None:
    store = app.extensions["koosim.merchant"].store
    for _ in range(2):
        assert post_sync(client, "authSync", auth_body(1))["resultCode"] == "000000"
        assert store.entries("user", "inst-001", "t-001", "app-001") == ["alice", "bob"]
    for _ in range(2):
        assert post_sync(client, "authSync", auth_body(0))["resultCode"] == "000000"
        assert store.entries("user", "inst-001", "t-001", "app-001") == []


def test_sync_with_a_wrong_signature_is_000001(client: FlaskClient) -> None:
    body = auth_body(1)
    headers = independent.sync_headers(body, SYNC_KEY)
    wrong = {**headers, "x-sign": headers["x-sign"][:-1] + ("0" if headers["x-sign"][-1] != "0" else "1")}
    assert post_sync(client, "authSync", body, wrong)["resultCode"] == "000001"
    assert post_sync(client, "authSync", body, {**headers, "x-sign": ""})["resultCode"] == "000001"
    # Signed with the produce access key instead of the sync key.
    produce_key = independent.sync_headers(body, ACCESS_KEY)
    assert post_sync(client, "authSync", body, produce_key)["resultCode"] == "000001"
    # The v2 scheme (with an inner HMAC) is not the sync scheme.
    v2_style = {
        **headers,
        "x-sign": independent.v2_signature(body, SYNC_KEY, headers["x-timestamp"], headers["x-nonce"]),
    }
    assert post_sync(client, "authSync", body, v2_style)["resultCode"] == "000001"


@pytest.mark.parametrize("missing", ["x-timestamp", "x-nonce"])
def test_sync_without_timestamp_or_nonce_is_000002(client: FlaskClient, missing: str) -> None:
    body = auth_body(1)
    headers = independent.sync_headers(body, SYNC_KEY)
    del headers[missing]
    assert post_sync(client, "authSync", body, headers)["resultCode"] == "000002"


def test_sync_with_a_stale_timestamp_is_000002(client: FlaskClient) -> None:
    body = auth_body(1)
    stale = str(int(independent.now_ms()) - 61_000)
    answer = post_sync(client, "authSync", body, independent.sync_headers(body, SYNC_KEY, stale))
    assert answer["resultCode"] == "000002"


def test_sync_missing_field_and_unknown_call_are_000002(client: FlaskClient) -> None:
    body = auth_body(1)
    del body["appId"]
    assert post_sync(client, "authSync", body)["resultCode"] == "000002"
    assert post_sync(client, "userDelete", auth_body(1))["resultCode"] == "000002"


def application_body(client_secret: str, flag: int = 1) -> dict[str, Any]:
    return {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "appId": "app-001",
        "name": "应用",
        "clientId": "client-001",
        "clientSecret": client_secret,
        "flag": flag,
        **KIT,
    }


def encrypt_for(private_key_pem: bytes, secret: str) -> str:
    """RSA/ECB/OAEPPadding (SHA-256, MGF1-SHA1) with the merchant's public key, as Huawei's sample
    decrypts it (docs/protocol.md §2.8, U26), done here with cryptography directly."""
    public_key = load_pem_public_key(public_key_pem(private_key_pem))
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None)
    return base64.b64encode(public_key.encrypt(secret.encode(), oaep)).decode()


def test_application_sync_with_a_secret_for_the_merchant_key_succeeds(
    client: FlaskClient, rsa_key: bytes
) -> None:
    body = application_body(encrypt_for(rsa_key, "s3cr3t-ключ"))
    assert post_sync(client, "applicationSync", body)["resultCode"] == "000000"
    assert post_sync(client, "applicationSync", body)["resultCode"] == "000000"
    assert post_sync(client, "applicationSync", {**body, "flag": 0})["resultCode"] == "000000"


def test_application_sync_with_a_pkcs1_v15_secret_is_000101(client: FlaskClient, rsa_key: bytes) -> None:
    # §2.8 (U26): the secret is OAEP; PKCS#1 v1.5 is the old, wrong padding.
    public_key = load_pem_public_key(public_key_pem(rsa_key))
    v15 = base64.b64encode(public_key.encrypt(b"s3cr3t-client", asym_padding.PKCS1v15())).decode()
    assert post_sync(client, "applicationSync", application_body(v15))["resultCode"] == "000101"


@pytest.mark.parametrize(
    "secret",
    ["not base64!", base64.b64encode(b"far too short for a 3072-bit key").decode(), "密钥"],
    ids=["not-base64", "wrong-length", "non-ascii"],
)
def test_application_sync_with_a_garbage_secret_is_000101(client: FlaskClient, secret: str) -> None:
    assert post_sync(client, "applicationSync", application_body(secret))["resultCode"] == "000101"


def test_application_sync_with_random_bytes_of_the_key_length_is_000101(
    client: FlaskClient, rsa_key: bytes
) -> None:
    # OAEP checks its padding: random bytes of the right length never decrypt.
    key = load_pem_private_key(rsa_key, password=None)
    garbage = base64.b64encode(os.urandom(key.key_size // 8)).decode()
    assert post_sync(client, "applicationSync", application_body(garbage))["resultCode"] == "000101"


def test_tenant_org_and_full_org_sync_succeed_repeatedly(app: Flask, client: FlaskClient) -> None:
    tenant = {
        "instanceId": "inst-001",
        "orderId": "CS1",
        "tenantId": "t-001",
        "tenantCode": "acme",
        "name": "ACME",
        "domainName": "https://acme.example",
        **KIT,
    }
    org = {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "orgCode": "o-1",
        "orgName": "R&D",
        "parentCode": "",
        **KIT,
    }
    for flag in (1, 1, 0, 0):
        assert post_sync(client, "tenantSync", {**tenant, "flag": flag})["resultCode"] == "000000"
        assert post_sync(client, "singleOrgSync", {**org, "flag": flag})["resultCode"] == "000000"
    full = {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "orgInfo": json.dumps([{"orgCode": "o-2", "name": "Sales"}, {"orgCode": "o-3", "name": "Ops"}]),
        **KIT,
    }
    store = app.extensions["koosim.merchant"].store
    for _ in range(2):
        assert post_sync(client, "allOrgSync", full)["resultCode"] == "000000"
        assert store.entries("org", "inst-001", "t-001", "") == ["o-2", "o-3"]


# --- durability --------------------------------------------------------------------------------


def test_file_backed_store_keeps_instances_across_app_restarts(rsa_key: bytes, tmp_path: Path) -> None:
    database = str(tmp_path / "m.db")
    first = make_app(rsa_key, database=database)
    try:
        body = independent.new_order()
        created = post_v2(first.test_client(), body)
        assert created["resultCode"] == "000000"
    finally:
        close(first)
    second = make_app(rsa_key, database=database)
    try:
        client = second.test_client()
        query = post_v2(client, {"activity": "queryInstance", "instanceId": created["instanceId"]})
        assert query["info"] == [{"instanceId": created["instanceId"], "appInfo": created["appInfo"]}]
        again = post_v2(client, resend(body))
        assert again["instanceId"] == created["instanceId"]
        assert again["appInfo"] == created["appInfo"]
    finally:
        close(second)
