"""Requests and answers built literally from the tables and examples docs/protocol.md cites.

Each body below is written from the spec's table (§4 V2, §5 V1, §7 Kit), not from koosim's own
builders; the tests show that the reference merchant accepts it (or refuses what the pages say
to refuse), that the contracts agree with it, and that what koosim sends has the same shape.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import independent
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from flask import Flask, Response, request
from flask.testing import FlaskClient

from simulator.checks import REGISTRY, Verdict
from simulator.contracts import validate
from simulator.engine.run import run_check
from simulator.model import OrderFactory, v1_fields
from simulator.protocol import canonical_body, encrypt_client_secret, public_key_pem
from simulator.protocol.crypto import RSA_KEY_BITS, load_rsa_private_key
from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.transport import Target, Transport

ACCESS_KEY = "koosim-pages-access-key"
SYNC_KEY = "koosim-pages-sync-key"


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    return MerchantConfig().rsa_private_key


@pytest.fixture
def app(rsa_key: bytes) -> Iterator[Flask]:
    app = create_app(MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY, rsa_private_key=rsa_key))
    yield app
    app.extensions["koosim.merchant"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post_v2(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` as the page's example does: JSON, signed in the query string (§2.1)."""
    query = independent.v2_query(body, ACCESS_KEY)
    query["signature"] = query["signature"].upper()  # the interface pages' examples: upper case (A4)
    response = client.post(
        PRODUCE_PATH,
        query_string=query,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Accept": "application/json", "Content-Type": "application/json;charset=utf8"},
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()
    return answer


def order_id() -> str:
    return f"CS{uuid.uuid4().hex[:15].upper()}"


def page_new_instance(order: str | None = None, **extra: str) -> dict[str, Any]:
    """§4.1's table: activity, orderId, orderLineId, businessId, testFlag. Nothing else."""
    order = order or order_id()
    return {
        "activity": "newInstance",
        "orderId": order,
        "orderLineId": f"{order}-000001",
        "businessId": str(uuid.uuid4()),
        "testFlag": "1",
    } | extra


@pytest.fixture
def instance(client: FlaskClient) -> dict[str, Any]:
    body = page_new_instance()
    answer = post_v2(client, body)
    assert answer["resultCode"] == "000000", answer
    return body | answer


# --- §4.1 newInstance -------------------------------------------------------------------------


def test_the_five_field_new_instance_is_accepted_and_answered_as_the_console_requires(
    client: FlaskClient,
) -> None:
    body = page_new_instance()
    assert validate(body, "v2", "newInstance", "request") == []
    answer = post_v2(client, body)
    assert answer["resultCode"] == "000000"
    # §4.1 / §10.4 D4-D5: instanceId (U4: ≤ 64) and appInfo.frontEndUrl (≤ 512) on success.
    assert 1 <= len(answer["instanceId"]) <= 64
    assert 1 <= len(answer["appInfo"]["frontEndUrl"]) <= 512


@pytest.mark.parametrize("test_flag", [None, "0", "1"], ids=["absent", "0", "1"])
def test_new_instance_accepts_test_flag_absent_0_and_1(client: FlaskClient, test_flag: str | None) -> None:
    # §4: testFlag O, default 0; A14: a merchant must accept it absent and "0".
    body = {k: v for k, v in page_new_instance().items() if k != "testFlag"}
    if test_flag is not None:
        body["testFlag"] = test_flag
    assert post_v2(client, body)["resultCode"] == "000000"


def test_new_instance_resent_with_a_new_business_id_gets_the_same_instance(client: FlaskClient) -> None:
    # §4.1-a: same orderId + orderLineId, a new businessId on every request: the same instanceId.
    first = page_new_instance()
    again = first | {"businessId": str(uuid.uuid4())}
    assert post_v2(client, first)["instanceId"] == post_v2(client, again)["instanceId"]


@pytest.mark.parametrize("missing", ["orderId", "orderLineId", "businessId"])
def test_new_instance_without_a_mandatory_field_is_refused(client: FlaskClient, missing: str) -> None:
    body = {k: v for k, v in page_new_instance().items() if k != missing}
    assert validate(body, "v2", "newInstance", "request") != []
    assert post_v2(client, body)["resultCode"] != "000000"


def test_koosim_sends_exactly_the_table_of_new_instance() -> None:
    orders = OrderFactory(1)
    order = orders.order()
    assert set(order.new_instance_fields(orders.business_id())) == {
        "activity",
        "orderId",
        "orderLineId",
        "businessId",
    }
    assert set(orders.order(test=True).new_instance_fields(orders.business_id())) == {
        "activity",
        "orderId",
        "orderLineId",
        "businessId",
        "testFlag",
    }


# --- §4.2 refreshInstance ---------------------------------------------------------------------


@pytest.mark.parametrize("scene", ["TRIAL_TO_FORMAL", "RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD"])
def test_refresh_names_its_own_order_and_the_instance_by_instance_id(
    client: FlaskClient, instance: dict[str, Any], scene: str
) -> None:
    renewal = order_id()  # not the purchase order: the scene's own order (§4.2)
    body = {
        "activity": "refreshInstance",
        "scene": scene,
        "orderId": renewal,
        "orderLineId": f"{renewal}-000001",
        "instanceId": instance["instanceId"],
        "expireTime": "20991231235959",
        "testFlag": "1",
    }
    if scene == "TRIAL_TO_FORMAL":
        body["productId"] = "00301-666666-0--1"
    assert validate(body, "v2", "refreshInstance", "request") == []
    assert post_v2(client, body)["resultCode"] == "000000"


def test_refresh_without_scene_breaks_the_contract() -> None:
    # §4.2: scene is M.
    body = {
        "activity": "refreshInstance",
        "orderId": "CS1",
        "orderLineId": "CS1-000001",
        "instanceId": "inst-1",
        "expireTime": "20991231235959",
    }
    assert [v.path for v in validate(body, "v2", "refreshInstance", "request")] == ["$.scene"]


def test_refresh_of_an_unknown_instance_is_000003(client: FlaskClient) -> None:
    renewal = order_id()
    body = {
        "activity": "refreshInstance",
        "scene": "RENEWAL",
        "orderId": renewal,
        "orderLineId": f"{renewal}-000001",
        "instanceId": "inst-never-created",
        "expireTime": "20991231235959",
    }
    assert post_v2(client, body)["resultCode"] == "000003"  # §3.2: tied to renewal


def test_koosim_refresh_carries_the_scene_order_not_the_purchase_order() -> None:
    orders = OrderFactory(2)
    order = orders.order()
    for scene in ("TRIAL_TO_FORMAL", "RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD"):
        fields = order.refresh_fields("inst-1", "20991231235959", scene)
        assert fields["scene"] == scene and fields["orderId"] != order.order_id
        assert validate(fields, "v2", "refreshInstance", "request") == []
    # The cancelled renewal is the renewal order (§4.2).
    assert (
        order.refresh_fields("i", "20991231235959", "UNSUBSCRIBE_RENEWAL_PERIOD")["orderId"]
        == order.refresh_fields("i", "20991231235959", "RENEWAL")["orderId"]
    )


# --- §4.3 upgradeInstance, §4.4, §4.5, §4.6, §4.7 ---------------------------------------------


def test_upgrade_instance_with_its_published_body(client: FlaskClient, instance: dict[str, Any]) -> None:
    upgrade = order_id()
    body = {
        "activity": "upgradeInstance",
        "instanceId": instance["instanceId"],
        "orderId": upgrade,
        "orderLineId": f"{upgrade}-000001",
        "testFlag": "1",
    }
    assert validate(body, "v2", "upgradeInstance", "request") == []
    assert post_v2(client, body)["resultCode"] == "000000"
    # `upgrade` is V1's name (§5.7): not a V2 activity.
    assert post_v2(client, body | {"activity": "upgrade"})["resultCode"] == "000002"


def test_koosim_upgrade_is_upgrade_instance_without_product_fields() -> None:
    orders = OrderFactory(3)
    order = orders.order()
    fields = order.upgrade_fields("inst-1")
    assert set(fields) == {"activity", "instanceId", "orderId", "orderLineId"}
    assert fields["activity"] == "upgradeInstance" and fields["orderId"] != order.order_id


@pytest.mark.parametrize("status", ["FREEZE", "UNFREEZE"])
def test_update_instance_status(client: FlaskClient, instance: dict[str, Any], status: str) -> None:
    body = {"activity": "updateInstanceStatus", "instanceId": instance["instanceId"], "status": status}
    assert validate(body, "v2", "updateInstanceStatus", "request") == []
    assert post_v2(client, body)["resultCode"] == "000000"


def test_query_instance_within_100_characters(client: FlaskClient, instance: dict[str, Any]) -> None:
    ids = f"{instance['instanceId']},inst-unknown-1,inst-unknown-2"
    assert len(ids) <= 100
    answer = post_v2(client, {"activity": "queryInstance", "instanceId": ids, "testFlag": "1"})
    assert answer["resultCode"] == "000000"
    assert [item["instanceId"] for item in answer["info"]] == [instance["instanceId"]]
    too_long = {"activity": "queryInstance", "instanceId": "i" * 101}
    assert [v.path for v in validate(too_long, "v2", "queryInstance", "request")] == ["$.instanceId"]


def test_release_on_unsubscription_names_the_cancelled_order(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    cancelled = order_id()
    body = {
        "activity": "releaseInstance",
        "instanceId": instance["instanceId"],
        "orderId": cancelled,
        "orderLineId": f"{cancelled}-000001",
        "testFlag": "1",
    }
    assert validate(body, "v2", "releaseInstance", "request") == []
    assert post_v2(client, body)["resultCode"] == "000000"
    assert post_v2(client, body)["resultCode"] == "000000"  # a resend answers success (U6)


def test_change_instance_check_with_an_object_product_info_and_no_test_flag(
    client: FlaskClient, instance: dict[str, Any]
) -> None:
    body = {
        "activity": "changeInstanceCheck",
        "instanceId": instance["instanceId"],
        "productInfo": {"productId": "00301-666666-0--2", "skuCode": "sku-pro"},
    }
    assert validate(body, "v2", "changeInstanceCheck", "request") == []
    assert post_v2(client, body)["resultCode"] == "000000"


# --- §2.1 the canonical form and the signature ------------------------------------------------


def test_koosim_bodies_are_canonical_and_signatures_alternate_hex_case(serve: Any, app: Flask) -> None:
    sent: list[tuple[bytes, str]] = []
    view = app.view_functions["produce.produce_v2"]

    def capture() -> Response:
        sent.append((request.get_data(), request.args.get("signature", "")))
        nonces.append(request.args.get("nonce", ""))
        return view()  # type: ignore[no-any-return]

    nonces: list[str] = []

    app.view_functions["produce.produce_v2"] = capture
    url = serve(app)
    transport = Transport(Target(url=url, access_key=ACCESS_KEY))
    orders = OrderFactory(4)
    try:
        for _ in range(4):
            exchange = transport.send(orders.order().new_instance_fields(orders.business_id()))
            assert exchange.result_code == "000000"
    finally:
        transport.close()
    assert [payload for payload, _ in sent] == [
        canonical_body(json.loads(payload)).encode("utf-8") for payload, _ in sent
    ]
    signatures = [signature for _, signature in sent]
    assert any(s == s.lower() for s in signatures) and any(s == s.upper() for s in signatures)
    # testFlag varied between absent and "0" (A14)
    flags = [json.loads(payload).get("testFlag") for payload, _ in sent]
    assert None in flags and "0" in flags
    # the nonce in both published shapes (A19): 64 upper-case hex [S1][S7][S12], 16 alphanumerics [S19][S21]
    hex64 = [n for n in nonces if len(n) == 64 and all(c in "0123456789ABCDEF" for c in n)]
    alnum16 = [n for n in nonces if len(n) == 16 and n.isalnum() and n.isascii()]
    assert hex64 and alnum16 and len(hex64) + len(alnum16) == len(nonces)
    assert len(set(nonces)) == len(nonces)


def _hashes_the_received_bytes(app: Flask) -> None:
    """A merchant that computes the inner HMAC over the bytes as received."""
    view = app.view_functions["produce.produce_v2"]

    def produce_v2() -> Response:
        timestamp, nonce = request.args.get("timestamp", ""), request.args.get("nonce", "")
        inner = hmac.new(ACCESS_KEY.encode(), request.get_data(), hashlib.sha256).hexdigest()
        outer = hmac.new(
            ACCESS_KEY.encode(), (ACCESS_KEY + nonce + timestamp + inner).encode(), hashlib.sha256
        )
        if (request.args.get("signature") or "").lower() != outer.hexdigest():
            return Response(
                '{"resultCode":"000001","resultMsg":"bad signature"}', mimetype="application/json"
            )
        return view()  # type: ignore[no-any-return]

    app.view_functions["produce.produce_v2"] = produce_v2


@pytest.mark.parametrize("raw_bytes", [False, True], ids=["reference", "hashes-received-bytes"])
def test_the_key_order_check_names_a_merchant_hashing_the_received_bytes(
    serve: Any, app: Flask, raw_bytes: bool
) -> None:
    if raw_bytes:
        _hashes_the_received_bytes(app)
    target = Target(url=serve(app), access_key=ACCESS_KEY)
    transport = Transport(target)
    try:
        result = run_check(REGISTRY["security.v2-body-key-order"], target, transport, OrderFactory(5), [])
    finally:
        transport.close()
    if not raw_bytes:
        assert result.verdict is Verdict.PASSED, result.findings
        return
    assert result.verdict is Verdict.WARNED  # U1: an assumption, never an error
    assert (
        "signature computed over the body as received, not the canonical form" in result.findings[0].message
    )


# --- §5 V1 --------------------------------------------------------------------------------------


def test_v1_calls_have_no_order_line_and_use_v1_names() -> None:
    orders = OrderFactory(6)
    order = orders.order()
    new = v1_fields(order.new_instance_fields(orders.business_id()))
    assert "orderLineId" not in new  # §5.1, U22
    refresh = v1_fields(order.refresh_fields("inst-1", "20991231235959"))
    assert "orderLineId" not in refresh and "scene" not in refresh  # §5.3
    upgrade = v1_fields(order.upgrade_fields("inst-1"))
    assert upgrade["activity"] == "upgrade"  # §5.7
    assert {"instanceId", "orderId", "skuCode", "productId"} <= set(upgrade)


# --- §7 Kit -------------------------------------------------------------------------------------


def post_kit(client: FlaskClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    timestamp, nonce = independent.now_ms(), independent.nonce()
    headers = {
        "Content-Type": "application/json;charset=UTF-8",
        "x-timestamp": timestamp,
        "x-nonce": nonce,
        "x-sign": independent.sync_signature(body, SYNC_KEY, timestamp, nonce),
    }
    response = client.post(path, data=json.dumps(body, ensure_ascii=False).encode("utf-8"), headers=headers)
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()
    return answer


TENANT_SYNC_EXAMPLE = {
    # §7.2's table, with the page example's JSON numbers for flag and testFlag (A39)
    "instanceId": "inst-001",
    "orderId": "CS1906666666ABCDE",
    "tenantId": "68cbc86abc2018ab880d92f36422fa0e",
    "tenantCode": "acme",
    "name": "Acme 有限公司",
    "domainName": "https://example.tenantaccount.com",
    "flag": 1,
    "testFlag": 0,
    "timeStamp": "20220413093539534",
}


def test_tenant_sync_example_on_its_published_path(client: FlaskClient) -> None:
    assert validate(TENANT_SYNC_EXAMPLE, "sync", "tenantSync", "request") == []
    assert post_kit(client, "/produceAPI/tenantSync", TENANT_SYNC_EXAMPLE)["resultCode"] == "000000"
    # A string flag is not what the table types (Integer(2), A39).
    assert validate(TENANT_SYNC_EXAMPLE | {"flag": "1"}, "sync", "tenantSync", "request") != []


@pytest.mark.parametrize("flag", [1, 2, 3, 0])
def test_auth_sync_with_every_flag_on_the_v2_path(client: FlaskClient, flag: int) -> None:
    body = {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "appId": "app-001",
        "userList": [
            {"userName": "alice", "name": "Alice", "orgCode": "org-001", "role": "admin", "enable": "true"}
        ],
        "currentSyncTime": "20220420114117642",
        "flag": flag,
        "testFlag": 0,
        "timeStamp": "20220420114117642",
    }
    assert validate(body, "sync", "authSync", "request") == []
    assert post_kit(client, "/produceAPI/v2/authSync", body)["resultCode"] == "000000"


def test_single_and_all_org_sync_as_published(client: FlaskClient) -> None:
    single = {
        "instanceId": "",  # may be empty (A40)
        "tenantId": "t-001",
        "orgCode": "org-001",
        "orgName": "研发部",
        "parentCode": "",
        "flag": 1,
        "testFlag": 0,
        "timeStamp": "20220420114117642",
    }
    assert validate(single, "sync", "singleOrgSync", "request") == []
    assert post_kit(client, "/produceAPI/singleOrgSync", single)["resultCode"] == "000000"
    all_orgs = {
        "instanceId": "inst-001",
        "tenantId": "t-001",
        "orgInfo": json.dumps(
            [{"orgCode": "org-001", "name": "研发部", "parentCode": ""}], ensure_ascii=False
        ),
        "testFlag": 0,
        "timeStamp": "20220420114117642",
    }
    assert validate(all_orgs, "sync", "allOrgSync", "request") == []
    assert post_kit(client, "/produceAPI/allOrgSync", all_orgs)["resultCode"] == "000000"


def test_kit_calls_with_an_empty_instance_id_are_accepted_and_signed(client: FlaskClient) -> None:
    # §7.1, A40: instanceId (and tenantSync's orderId) sent empty when the seller applies for
    # application credentials; [S56]: the example answer carries Body-Sign (key: U25).
    body = TENANT_SYNC_EXAMPLE | {"instanceId": "", "orderId": ""}
    assert validate(body, "sync", "tenantSync", "request") == []
    timestamp, nonce = independent.now_ms(), independent.nonce()
    response = client.post(
        "/produceAPI/tenantSync",
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={
            "Content-Type": "application/json;charset=UTF-8",
            "x-timestamp": timestamp,
            "x-nonce": nonce,
            "x-sign": independent.sync_signature(body, SYNC_KEY, timestamp, nonce),
        },
    )
    assert response.get_json()["resultCode"] == "000000"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)


@pytest.mark.parametrize("flag", [0, 3], ids=["delete", "cancel"])
def test_auth_sync_delete_needs_no_instance(client: FlaskClient, flag: int) -> None:
    # §7.4 [S54][S55]: "a delete must not depend on the instance from the subscription call existing".
    body = {
        "instanceId": "inst-never-subscribed",
        "tenantId": "t-001",
        "appId": "app-001",
        "userList": [
            {"userName": "bob", "name": "Bob", "orgCode": "org-001", "role": "user", "enable": "false"}
        ],
        "currentSyncTime": "20220420114117642",
        "flag": flag,
        "testFlag": 1,
        "timeStamp": "20220420114117642",
    }
    assert validate(body, "sync", "authSync", "request") == []
    for _ in range(2):  # and a repeat succeeds too
        assert post_kit(client, "/produceAPI/v2/authSync", body)["resultCode"] == "000000"


def test_client_secret_is_rsa_oaep_sha256_mgf1_sha1_with_a_3072_bit_key(rsa_key: bytes) -> None:
    key = load_rsa_private_key(rsa_key)
    assert key.key_size >= 3072 == RSA_KEY_BITS  # §2.8, U26
    secret = encrypt_client_secret("s3cret-client", public_key_pem(rsa_key))
    # Decrypts as Huawei's sample does: RSA/ECB/OAEPPadding, SHA-256, MGF1-SHA1 [X1].
    plain = key.decrypt(
        base64.b64decode(secret),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None),
    )
    assert plain == b"s3cret-client"
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_key_pem(rsa_key)


def _run_v1(serve: Any, app: Flask, check_id: str) -> Any:
    target = Target(url=serve(app), access_key=ACCESS_KEY, protocol="v1")
    transport = Transport(target)
    try:
        return run_check(REGISTRY[check_id], target, transport, OrderFactory(7), [])
    finally:
        transport.close()


def test_the_v1_stale_timestamp_probe_is_a_warning(serve: Any, app: Flask, monkeypatch: Any) -> None:
    # §2.2, U17: no published window; the reference merchant applies 60 s, so the probe passes.
    assert _run_v1(serve, app, "security.v1-timestamp-stale").verdict is Verdict.PASSED
    monkeypatch.setattr("simulator.reference.produce._v1_fresh", lambda time_stamp: True)
    result = _run_v1(serve, app, "security.v1-timestamp-stale")
    assert result.verdict is Verdict.WARNED
    assert "ASSUMPTION U17" in result.findings[0].message


def test_the_wrong_authtoken_probe_covers_every_v1_activity(serve: Any, app: Flask, monkeypatch: Any) -> None:
    # §2.2: every V1 call carries an authToken; a merchant verifying it only on the subscription fails.
    from simulator.reference import produce

    real = produce.verify_v1
    monkeypatch.setattr(
        produce, "verify_v1", lambda params, key: real(params, key) or params.get("activity") != "newInstance"
    )
    result = _run_v1(serve, app, "security.v1-authtoken-wrong")
    assert result.verdict is Verdict.FAILED
    refused = {finding.message.split(" with a wrong authToken")[0] for finding in result.findings}
    # The default profile is yearly/monthly: its V1 set has expireInstance, not instanceStatus (§1.2, §5.1).
    assert refused == {"refreshInstance", "upgrade", "expireInstance", "releaseInstance"}


# --- §5.4-§5.6 V1 expireInstance, releaseInstance, instanceStatus -------------------------------


def get_v1(client: FlaskClient, params: dict[str, str], access_key: str = ACCESS_KEY) -> Any:
    """A V1 call as the pages show it: GET, every value a percent-encoded query parameter, the
    authToken over the decoded values (§2.2), e.g. ``…/produceAPI?activity=expireInstance&…``."""
    from urllib.parse import quote

    pairs = {**params, "authToken": independent.v1_auth_token(params, access_key)}
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs.items())
    return client.get(f"{PRODUCE_PATH}?{query}")


def v1_instance(client: FlaskClient, **extra: str) -> dict[str, str]:
    """A V1 subscription with §5.2's established fields; returns them with the instanceId."""
    params = {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order_id(),
        "timeStamp": independent.v1_timestamp(),
        **extra,
    }
    answer = get_v1(client, params).get_json()
    assert answer["resultCode"] == "000000", answer
    return params | {"instanceId": answer["instanceId"]}


def test_v1_expire_instance_as_its_table(client: FlaskClient) -> None:
    # §5.4 [S40][S41]: activity, instanceId, orderId (the subscription order), testFlag O,
    # authToken, timeStamp; the merchant freezes the instance.
    created = v1_instance(client)
    params = {
        "activity": "expireInstance",
        "instanceId": created["instanceId"],
        "orderId": created["orderId"],
        "testFlag": "0",
        "timeStamp": independent.v1_timestamp(),
    }
    assert validate({**params, "authToken": "x"}, "v1", "expireInstance", "request") == []
    response = get_v1(client, params)
    assert response.get_json()["resultCode"] == "000000"
    assert independent.body_sign_ok(response.get_data(), response.headers.get("Body-Sign"), ACCESS_KEY)
    without_order = {k: v for k, v in params.items() if k != "orderId"}
    assert validate({**without_order, "authToken": "x"}, "v1", "expireInstance", "request") != []
    unknown = get_v1(client, {**params, "instanceId": "inst-never-created"})
    assert unknown.get_json()["resultCode"] == "000003"  # §3.2: 000003 tied to expiry


@pytest.mark.parametrize("status", ["FREEZE", "NORMAL"])
def test_v1_instance_status_as_its_table(client: FlaskClient, status: str) -> None:
    # §5.6 [S44]: authToken, activity, instanceId, instanceStatus FREEZE/NORMAL, timeStamp, testFlag O.
    created = v1_instance(client, productId="00301-666666-0--0")
    params = {
        "activity": "instanceStatus",
        "instanceId": created["instanceId"],
        "instanceStatus": status,
        "timeStamp": "20230327070251713",  # the page's example value, as a format
    }
    assert validate({**params, "authToken": "x"}, "v1", "instanceStatus", "request") == []
    params["timeStamp"] = independent.v1_timestamp()
    assert get_v1(client, params).get_json()["resultCode"] == "000000"
    assert validate(
        {**params, "instanceStatus": "UNFREEZE", "authToken": "x"}, "v1", "instanceStatus", "request"
    )


def test_v1_release_names_the_subscription_order(client: FlaskClient) -> None:
    # §5.5 [S42][S43]: orderId M, the subscription order (V2 differs, A34).
    created = v1_instance(client)
    params = {
        "activity": "releaseInstance",
        "instanceId": created["instanceId"],
        "timeStamp": independent.v1_timestamp(),
    }
    assert validate({**params, "authToken": "x"}, "v1", "releaseInstance", "request") != []
    assert get_v1(client, params).get_json()["resultCode"] == "000002"
    params["orderId"] = created["orderId"]
    assert get_v1(client, params).get_json()["resultCode"] == "000000"


def test_koosim_sends_v1_expiry_status_and_release_as_their_tables() -> None:
    from simulator.model import expire_fields, instance_status_fields, release_call, status_fields

    orders = OrderFactory(9)
    order = orders.order()
    assert expire_fields("inst-1", order.order_id) == {
        "activity": "expireInstance",
        "instanceId": "inst-1",
        "orderId": order.order_id,
    }
    assert set(instance_status_fields("inst-1", "NORMAL")) == {"activity", "instanceId", "instanceStatus"}
    assert release_call("v1", "inst-1", order.order_id)["orderId"] == order.order_id
    assert "orderId" not in release_call("v2", "inst-1", order.order_id)  # §4.6: only on unsubscription
    # No V1 page lists updateInstanceStatus (§5.1, U21): the V1 profiles never require it.
    from simulator.protocol.profiles import BILLINGS, Profile

    for billing in BILLINGS:
        assert not Profile(billing=billing).requires(status_fields("i", "FREEZE")["activity"], "v1")
    assert Profile(billing="period").requires("expireInstance", "v1")
    assert Profile(billing="on-demand").requires("instanceStatus", "v1")


# --- §2.7 the seller's encryption choice (U20) ---------------------------------------------------


@pytest.mark.parametrize("encrypt_type", ["1", "2"])
def test_the_reference_merchant_decrypts_v1_values_with_the_configured_cipher(
    serve: Any, rsa_key: bytes, encrypt_type: str
) -> None:
    from simulator.protocol import EncryptType, encrypt

    chosen = EncryptType(encrypt_type)
    other = EncryptType.AES128 if chosen is EncryptType.AES256 else EncryptType.AES256
    merchant = create_app(MerchantConfig(access_key=ACCESS_KEY, encrypt_type=chosen, rsa_private_key=rsa_key))
    client = merchant.test_client()
    accepted = v1_instance(client, email=encrypt("buyer+tag@example.com", ACCESS_KEY, chosen))
    assert accepted["instanceId"]
    params = {
        "activity": "newInstance",
        "businessId": str(uuid.uuid4()),
        "orderId": order_id(),
        "email": encrypt("buyer+tag@example.com", ACCESS_KEY, other),
        "timeStamp": independent.v1_timestamp(),
    }
    refused = get_v1(client, params).get_json()
    assert refused["resultCode"] == "000002"
    assert ("AES-256" if chosen is EncryptType.AES256 else "AES-128") in refused["resultMsg"]
    # koosim's check sends under the target's encrypt type: passes on a match, warns (naming the
    # encryption, not '+' encoding) on a mismatch.
    url = serve(merchant)
    for target_type, verdict in ((encrypt_type, Verdict.PASSED), (other.value, Verdict.WARNED)):
        target = Target(url=url, access_key=ACCESS_KEY, protocol="v1", encrypt_type=target_type)
        transport = Transport(target)
        try:
            result = run_check(
                REGISTRY["security.v1-encrypted-values"], target, transport, OrderFactory(3), []
            )
        finally:
            transport.close()
        assert result.verdict is verdict, result.findings
        if verdict is Verdict.WARNED:
            message = result.findings[0].message
            assert "encrypted with encryptType" in message and "'+'" not in message


def test_the_console_target_page_offers_and_saves_the_encrypt_type(tmp_path: Any) -> None:
    from simulator.server import create_app as create_server
    from simulator.server import token as server_token
    from simulator.store import Store

    server = create_server(Store(tmp_path / "koosim.db"))
    try:
        client = server.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {server_token(server)}"
        page = client.get("/target").get_data(as_text=True)
        assert 'name="encrypt_type"' in page and "AES-128" in page
        assert client.post("/target", data={"encrypt_type": "2"}).status_code == 302
        assert client.get("/api/target").json["encrypt_type"] == "2"
        assert 'value="2" selected' in client.get("/target").get_data(as_text=True)
        refused = client.post("/target", data={"encrypt_type": "3"})
        assert refused.status_code == 400
        assert "encrypt_type must be 1 (AES-256) or 2 (AES-128)" in refused.get_data(as_text=True)
    finally:
        server.extensions["koosim.marketplace"].close()


def test_the_console_offers_the_v1_activities_for_a_v1_target(tmp_path: Any) -> None:
    # §5.1: expireInstance and instanceStatus exist on V1 only; the console's hand-made calls offer
    # them and refuse them for a V2 target.
    from simulator.server import calls
    from simulator.server import create_app as create_server
    from simulator.store import Store

    produce = calls.activities()["produce"]
    assert {"expireInstance", "instanceStatus"} <= set(produce)
    assert calls.family_of("expireInstance", "v1") == "v1"
    with pytest.raises(calls.CallError, match="V1 activity"):
        calls.family_of("instanceStatus", "v2")
    server = create_server(Store(tmp_path / "koosim.db"))
    try:
        market = server.extensions["koosim.marketplace"]
        expire = calls.template("expireInstance", market)
        assert set(expire) == {"activity", "instanceId", "orderId"}
        status = calls.template("instanceStatus", market)
        assert status["instanceStatus"] in ("FREEZE", "NORMAL")
    finally:
        server.extensions["koosim.marketplace"].close()
