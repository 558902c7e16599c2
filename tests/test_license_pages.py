"""License and pay-per-use requests and answers built literally from the pages docs/protocol.md
cites (§6.1 getLicense [S75]; §6.2 getLicenseAsync [S52]; §5.1 and §4.1-d pay-per-use
instances [S38][S2][S3]; §4.5 and §10.4 UsageInfo [S32]), in the style of tests/test_pages.py:
the contracts agree with the page, the reference merchant does what the page says, the checks
catch what it forbids, and what koosim sends has the page's shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import independent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from simulator.checks import REGISTRY, Verdict, select
from simulator.contracts import validate
from simulator.delivery import policy_for
from simulator.engine.run import run_checks
from simulator.model import OrderFactory
from simulator.protocol import public_key_pem
from simulator.protocol.profiles import Profile
from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.reference.activities import usage_info
from simulator.serving import BackgroundServer
from simulator.transport import Exchange, Target

ACCESS_KEY = "koosim-license-pages-key"


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    return MerchantConfig().rsa_private_key


def merchant(rsa_key: bytes, billing: str = "period") -> MerchantConfig:
    return MerchantConfig(access_key=ACCESS_KEY, rsa_private_key=rsa_key, billing=billing)


@pytest.fixture
def app(rsa_key: bytes) -> Iterator[Flask]:
    app = create_app(merchant(rsa_key, "on-demand"))
    yield app
    app.extensions["koosim.merchant"].store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post_v2(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    query = independent.v2_query(body, ACCESS_KEY)
    response = client.post(
        PRODUCE_PATH,
        query_string=query,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type="application/json;charset=utf8",
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()
    return answer


# --- getLicense: the rows of the License page [S75] ---------------------------------------------

PAGE_GET_LICENSE = {
    "activity": "getLicense",  # license开通取值:getLicense
    "customerId": "68cbc86abc2018ab880d92f36422fa0e",  # M, String, 100
    "customerName": "测试客户",  # O, String, 64
    "businessId": "6d1cd5a6-0c1e-4a8e-9b6f-3f3c8c2f6a11",  # M, 64, different on every request
    "orderId": "CS1906666666ABCDE",  # M, 64
    "skuCode": "sku-basic-0001",  # O, 64
}
"""getLicense with exactly the rows [S75] publishes (its authToken and timeStamp rows belong to the
authToken transport; koosim carries the call V2-signed, A56)."""


def test_the_page_request_conforms_and_each_mandatory_row_is_required() -> None:
    assert validate(PAGE_GET_LICENSE, "v2", "getLicense", "request") == []
    for row in ("activity", "customerId", "businessId", "orderId"):  # the rows marked M
        body = {name: value for name, value in PAGE_GET_LICENSE.items() if name != row}
        assert validate(body, "v2", "getLicense", "request"), row
    for row in ("customerName", "skuCode"):  # the rows marked O
        body = {name: value for name, value in PAGE_GET_LICENSE.items() if name != row}
        assert validate(body, "v2", "getLicense", "request") == [], row
    assert validate({**PAGE_GET_LICENSE, "customerId": "c" * 100}, "v2", "getLicense", "request") == []
    assert validate({**PAGE_GET_LICENSE, "customerId": "c" * 101}, "v2", "getLicense", "request")
    assert validate({**PAGE_GET_LICENSE, "customerName": "n" * 65}, "v2", "getLicense", "request")


def test_koosim_sends_the_page_rows_and_no_order_line() -> None:
    orders = OrderFactory(3)
    order = orders.order()
    sent = order.license_fields(orders.business_id())
    assert set(PAGE_GET_LICENSE) <= set(sent)
    assert "orderLineId" not in sent  # not a row of the page
    assert set(sent) - set(PAGE_GET_LICENSE) == {"productId", "expireTime"}  # U24 extras (U46)
    assert validate(sent, "v2", "getLicense", "request") == []
    again = order.license_fields(orders.business_id())
    assert again["businessId"] != sent["businessId"]  # "每一次请求,businessId皆不一致"
    assert {k: v for k, v in again.items() if k != "businessId"} == {
        k: v for k, v in sent.items() if k != "businessId"
    }


def test_the_reference_merchant_answers_the_same_license_for_the_same_order(client: FlaskClient) -> None:
    """ "针对同一订单号,商家的服务器应当返回成功的响应及License,不应该创建新的License" [S75]."""
    body = {**PAGE_GET_LICENSE, "orderId": f"CS{uuid.uuid4().hex[:14].upper()}"}
    first = post_v2(client, body)
    assert first["resultCode"] == "000000" and first["license"]
    resent = post_v2(client, {**body, "businessId": str(uuid.uuid4())})
    assert (resent["resultCode"], resent["license"]) == ("000000", first["license"])
    another = post_v2(client, {**body, "orderId": f"CS{uuid.uuid4().hex[:14].upper()}"})
    assert another["license"] != first["license"]
    assert validate(first, "v2", "getLicense", "response") == []


def test_the_license_opening_is_retried_hourly_for_three_hours() -> None:
    """ "云商店会持续调用3小时(每小时1次)后停止调用" [S75]: not the U11 assumption."""
    policy = policy_for("produce", "v2", "getLicense")
    assert not policy.assumed and "[S75]" in policy.basis
    assert [round(gap.total_seconds()) for gap in policy.cadence.gaps] == [3600] * 3


# --- getLicenseAsync: the table and the rules of its page [S52] ---------------------------------

PAGE_GET_LICENSE_ASYNC = {
    "activity": "getLicenseAsync",  # M, String, 20
    "instanceId": "inst-0001",  # M, String, 64: business resource instance ID
    "effectiveTime": "2023-10-27 10:30:15 z",  # M, String, 32: UTC, the page's example
    "expireTime": "2024-10-27 10:30:15 z",  # O, 32: mandatory for yearly/monthly, same style
    "eventId": "EV-20231027-0001",  # M, String, 64: with the fingerprint, the repeat key
    "deviceFingerprint": "FP-9c2a7e",  # O, String, 1024: hardware-bound licences
    "testFlag": "0",  # O, String, 2: 1/0, default 0
}
"""getLicenseAsync with every row of its table, values in the page's example style (§6.2)."""


def test_the_async_page_request_conforms_and_each_mandatory_row_is_required() -> None:
    assert validate(PAGE_GET_LICENSE_ASYNC, "v2", "getLicenseAsync", "request") == []
    for row in ("activity", "instanceId", "effectiveTime", "eventId"):  # the rows marked M
        body = {name: value for name, value in PAGE_GET_LICENSE_ASYNC.items() if name != row}
        assert validate(body, "v2", "getLicenseAsync", "request"), row
    for row in ("expireTime", "deviceFingerprint", "testFlag"):  # the rows marked O
        body = {name: value for name, value in PAGE_GET_LICENSE_ASYNC.items() if name != row}
        assert validate(body, "v2", "getLicenseAsync", "request") == [], row
    assert validate({**PAGE_GET_LICENSE_ASYNC, "eventId": "e" * 65}, "v2", "getLicenseAsync", "request")


def test_koosim_sends_exactly_the_async_table() -> None:
    orders = OrderFactory(5)
    order = orders.order()
    sent = order.license_async_fields(
        orders.event_id(), orders.license_effective_time(), device_fingerprint=orders.device_fingerprint()
    )
    assert set(sent) == set(PAGE_GET_LICENSE_ASYNC)  # the table's rows, nothing else
    assert validate(sent, "v2", "getLicenseAsync", "request") == []
    assert sent["effectiveTime"].endswith(" z") and len(sent["effectiveTime"]) == 21  # the example's style
    one_time = order.license_async_fields("EV-1", orders.license_effective_time(), period=False)
    assert "expireTime" not in one_time and "deviceFingerprint" not in one_time  # O rows left out
    assert one_time["testFlag"] == "0"


def test_the_reference_merchant_answers_the_same_license_for_the_same_request(client: FlaskClient) -> None:
    """ "同一请求" (eventId + deviceFingerprint): the same License, none created [S52]."""
    body = {**PAGE_GET_LICENSE_ASYNC, "eventId": f"EV-{uuid.uuid4().hex}"}
    first = post_v2(client, body)
    assert first["resultCode"] == "000000" and first["license"]
    assert validate(first, "v2", "getLicenseAsync", "response") == []
    assert post_v2(client, body)["license"] == first["license"]
    another_event = post_v2(client, {**body, "eventId": f"EV-{uuid.uuid4().hex}"})
    assert another_event["resultCode"] == "000000" and another_event["license"] != first["license"]
    another_device = post_v2(client, {**body, "deviceFingerprint": "FP-other"})
    assert another_device["license"] not in (first["license"], another_event["license"])
    without = {k: v for k, v in body.items() if k != "eventId"}
    assert post_v2(client, without)["resultCode"] == "000002"


def test_get_license_async_is_sent_only_to_a_product_that_declares_it() -> None:
    """A41: which products receive getLicenseAsync is not stated; sending it to a product that
    did not declare it would be a false alarm. And the other way round for getLicense."""
    check = REGISTRY["idempotency.license-async-resend"]
    assert check.severity.value == "error"  # the page's rule [S52]
    assert Profile(product="license").skip_reason(check.needs) is not None
    declared = Profile(product="license", license_call="getLicenseAsync")
    assert declared.skip_reason(check.needs) is None
    assert declared.skip_reason(check.needs, "v1") is not None  # a V2 call (§6.2)
    assert "getLicenseAsync" in str(declared)
    for opening in ("lifecycle.license", "idempotency.license-resend"):
        assert declared.skip_reason(REGISTRY[opening].needs) is not None
    with pytest.raises(ValueError, match="license_call"):
        Profile(product="license", license_call="getLicenseSync")


def test_get_license_async_resends_are_played_by_assumption() -> None:
    """No schedule on the page [S52] ("may resend"): U11, not getLicense's 3 h hourly [S75]."""
    policy = policy_for("produce", "v2", "getLicenseAsync")
    assert policy.assumed and "U11" in policy.rule and "[S52]" in policy.basis


@pytest.mark.parametrize("billing", ["period", "one-time"])
def test_the_reference_merchant_passes_the_async_license_profile(rsa_key: bytes, billing: str) -> None:
    config = merchant(rsa_key)
    profile = Profile(product="license", billing=billing, license_call="getLicenseAsync")
    with BackgroundServer(create_app(config)) as server:
        run = run_checks(_target(server, config, "v2", profile), select([]))
    alarms = [
        f"{r.check.id}: {r.verdict} {[f.message for f in r.findings]}"
        for r in run.results
        if r.verdict in (Verdict.FAILED, Verdict.WARNED)
    ]
    assert not alarms, "\n".join(alarms)
    verdicts = {r.check.id: r.verdict for r in run.results}
    assert verdicts["idempotency.license-async-resend"] is Verdict.PASSED
    assert verdicts["lifecycle.license"] is Verdict.SKIPPED  # getLicense is not sent (A41)
    assert not [e for e in run.exchanges if e.activity == "getLicense"]
    sent = [e for e in run.exchanges if e.activity == "getLicenseAsync"]
    assert sent and all(e.method == "POST" for e in sent)
    assert all(("expireTime" in e.fields) == (billing == "period") for e in sent)


# --- pay-per-use: one instance per billing item (orderId + productId) ----------------------------


def post_v1(client: FlaskClient, params: dict[str, str]) -> dict[str, Any]:
    """GET with every field a query parameter and the authToken (§2.2, §5.1)."""
    params = {**params, "timeStamp": independent.v1_timestamp()}
    pairs = {**params, "authToken": independent.v1_auth_token(params, ACCESS_KEY)}
    response = client.get(f"{PRODUCE_PATH}?{urlencode(pairs, quote_via=quote)}")
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()
    return answer


def test_the_reference_merchant_opens_one_instance_per_billing_item(client: FlaskClient) -> None:
    """[S38] 2024-08-20: several billing items, one instance each, same orderId, different
    productId; a resend of one item gets that item's instance."""
    order_id = f"CS{uuid.uuid4().hex[:14].upper()}"
    item = {"activity": "newInstance", "orderId": order_id, "testFlag": "1"}
    ids = {}
    for product_id in ("OFFI000000000001", "OFFI000000000002"):
        first = post_v1(client, {**item, "productId": product_id, "businessId": str(uuid.uuid4())})
        again = post_v1(client, {**item, "productId": product_id, "businessId": str(uuid.uuid4())})
        assert first["resultCode"] == again["resultCode"] == "000000"
        assert first["instanceId"] == again["instanceId"]
        ids[product_id] = first["instanceId"]
    assert len(set(ids.values())) == 2


def test_usage_info_carries_usage_value_and_statistical_time(client: FlaskClient) -> None:
    """A pay-per-use merchant's queryInstance answer: every UsageInfo has usageValue and
    statisticalTime (§4.5, [S32] D4)."""
    created = post_v2(client, independent.new_order())
    answer = post_v2(client, {"activity": "queryInstance", "instanceId": created["instanceId"]})
    (info,) = answer["info"]
    assert set(info["usageInfo"]) >= {"usageValue", "statisticalTime"}
    assert validate(answer, "v2", "queryInstance", "response") == []


def _query_answer(body: dict[str, Any]) -> Exchange:
    return Exchange(
        interface="produce",
        protocol="v2",
        activity="queryInstance",
        method="POST",
        url="http://merchant/produceAPI",
        fields={"activity": "queryInstance", "instanceId": "i-1"},
        request_headers={},
        request_body=b"{}",
        started_at=0.0,
        status=200,
        response_headers={"Content-Type": "application/json"},
        response_body=json.dumps(body).encode(),
        elapsed=0.01,
    )


@pytest.mark.parametrize(
    ("usage", "missing"),
    [
        ({"usageValue": "12.5"}, "statisticalTime"),
        ({"statisticalTime": "20250101T000000Z"}, "usageValue"),
        ([usage_info(), {"usageValue": "3"}], "statisticalTime"),
    ],
)
def test_a_usage_info_without_its_members_breaks_the_contract_and_the_console_check(
    usage: Any, missing: str
) -> None:
    body = {"resultCode": "000000", "info": [{"instanceId": "i-1", "usageInfo": usage}]}
    assert any(missing in str(v) for v in validate(body, "v2", "queryInstance", "response"))
    check = REGISTRY["contract.console-members"]
    problem = check.judge(
        _query_answer(body), Target(url="http://merchant/produceAPI", access_key=ACCESS_KEY)
    )
    assert problem and missing in problem
    assert check.severity.value == "error"  # the console fails the call [S32]: a page rule


def test_an_answer_without_usage_info_is_not_judged_on_it() -> None:
    body = {"resultCode": "000000", "info": [{"instanceId": "i-1"}]}
    assert validate(body, "v2", "queryInstance", "response") == []
    target = Target(url="http://merchant/produceAPI", access_key=ACCESS_KEY)
    assert REGISTRY["contract.console-members"].judge(_query_answer(body), target) is None


# --- the whole catalog: the reference merchant passes the License and pay-per-use profiles --------


def _target(server: BackgroundServer, config: MerchantConfig, protocol: str, profile: Profile) -> Target:
    return Target(
        profile=profile,
        url=server.base_url + PRODUCE_PATH,
        access_key=config.access_key,
        protocol=protocol,
        sync_key=config.sync_key,
        rsa_public_key=public_key_pem(config.rsa_private_key),
        timeout=5.0,
    )


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_reference_merchant_passes_the_pay_per_use_profile(rsa_key: bytes, protocol: str) -> None:
    config = merchant(rsa_key, "on-demand")
    profile = Profile(product="saas", billing="on-demand")
    with BackgroundServer(create_app(config)) as server:
        run = run_checks(_target(server, config, protocol, profile), select([]))
    alarms = [
        f"{r.check.id}: {r.verdict} {[f.message for f in r.findings]}"
        for r in run.results
        if r.verdict in (Verdict.FAILED, Verdict.WARNED)
    ]
    assert not alarms, "\n".join(alarms)
    ran = {r.check.id for r in run.results if r.verdict is Verdict.PASSED}
    if protocol == "v1":
        assert "idempotency.per-product-instances" in ran


def test_the_per_product_check_applies_to_v1_pay_per_use_only() -> None:
    check = REGISTRY["idempotency.per-product-instances"]
    assert check.severity.value == "warning"  # A21: the newer editions only
    assert Profile(billing="on-demand").skip_reason(check.needs, "v1") is None
    assert Profile(billing="period").skip_reason(check.needs, "v1") is not None
    assert check.protocols == frozenset({"v1"})  # the V2 newInstance carries no productId (A21)


def test_each_billing_item_is_sent_with_its_own_product() -> None:
    orders = OrderFactory(9)
    order = orders.order()
    second = replace(order, product_id="OFFI000000000002", extra={"productId": "OFFI000000000002"})
    fields = second.new_instance_fields(orders.business_id())
    assert (fields["orderId"], fields["productId"]) == (order.order_id, "OFFI000000000002")


# --- the merchant written from the pages alone (tests/page_merchant.py) ---------------------------


@pytest.mark.parametrize(
    "profile",
    [
        Profile(product="license"),
        Profile(product="license", license_call="getLicenseAsync"),
        Profile(product="saas", billing="on-demand"),
    ],
    ids=["license", "license-async", "on-demand"],
)
def test_the_page_merchant_passes_the_license_and_pay_per_use_profiles(profile: Profile) -> None:
    from page_merchant import create_app as page_merchant

    with BackgroundServer(page_merchant(ACCESS_KEY)) as server:
        target = Target(url=server.base_url + "/produceAPI", access_key=ACCESS_KEY, profile=profile)
        run = run_checks(target, select([]))
    failing = [f"{r.check.id}: {f.message}" for r in run.results for f in r.findings if f.fails(r.check)]
    assert not failing, "\n".join(failing)
    if profile.product == "license":
        checks = LICENSE_CHECKS if profile.license_call == "getLicense" else {ASYNC_CHECK}
        license_runs = {r.check.id: r.verdict for r in run.results if r.check.id in checks}
        assert license_runs == dict.fromkeys(checks, Verdict.PASSED)


LICENSE_CHECKS = {"lifecycle.license", "idempotency.license-resend"}
ASYNC_CHECK = "idempotency.license-async-resend"


def test_the_authtoken_form_of_get_license_is_the_page_table(client: FlaskClient) -> None:
    """The access guide's getLicense with its authToken and timeStamp rows [S75] (A56): GET,
    every field a query parameter, authToken per §2.2. Same order, same License."""
    body = {**PAGE_GET_LICENSE, "orderId": f"CS{uuid.uuid4().hex[:14].upper()}"}
    first = post_v1(client, body)
    assert first["resultCode"] == "000000" and first["license"]
    assert post_v1(client, {**body, "businessId": str(uuid.uuid4())})["license"] == first["license"]
    signed = {**body, "timeStamp": independent.v1_timestamp(), "authToken": "x" * 44}
    assert validate(signed, "v1", "getLicense", "request") == []
    assert validate({**signed, "authToken": "x" * 51}, "v1", "getLicense", "request")  # M, String, 50
    assert validate({k: v for k, v in signed.items() if k != "timeStamp"}, "v1", "getLicense", "request")
    assert post_v1(client, {k: v for k, v in body.items() if k != "customerId"})["resultCode"] == "000002"


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_reference_merchant_passes_the_license_checks_in_both_forms(
    rsa_key: bytes, protocol: str
) -> None:
    config = merchant(rsa_key)
    with BackgroundServer(create_app(config)) as server:
        target = _target(server, config, protocol, Profile(product="license"))
        run = run_checks(target, select(sorted(LICENSE_CHECKS)))
    assert {r.check.id: r.verdict for r in run.results} == dict.fromkeys(LICENSE_CHECKS, Verdict.PASSED)
    sent = [e for e in run.exchanges if e.activity == "getLicense"]
    assert sent and all(e.method == ("GET" if protocol == "v1" else "POST") for e in sent)
    if protocol == "v1":
        assert all(
            {"authToken", "timeStamp", "customerId", "businessId", "orderId"} <= set(e.fields) for e in sent
        )
