"""simulator.openapi: Querying-an-Order answers, the MOCK orders and usage-push validation (§8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.contracts import validate
from simulator.model import OrderFactory
from simulator.openapi import (
    MOCK_ORDERS,
    ChargingMode,
    OrderType,
    Sale,
    mock_order,
    order_info,
    query_order,
    validate_usage_push,
)
from simulator.protocol.mkt import MktCode

NOW = datetime(2026, 11, 29, 22, 0, 0, tzinfo=UTC)
PUBLISHED_MOCKS = [
    "MOCKPERIODYEARNEW",
    "MOCKONETIMENEW",
    "MOCKONDEMAND",
    "MOCKONDEMANDPKG",
    "MOCKPERIODDAYTRIAL",
    "MOCKMONTYTRIALTOFORMAL",
    "MOCKMONTYUNSUBSCRIBE",
    "MOCKMONTYRENEW",
    "MOCKMONTYCHANGE",
]


def nothing_sold(order_id: str) -> None:
    return None


def schema_errors(body: dict[str, Any], name: str = "queryOrder", direction: str = "response") -> list[str]:
    return [f"{v.path}: {v.message}" for v in validate(body, "openapi", name, direction)]


# --- MOCK orders (§8.2) ---------------------------------------------------------------------


def test_all_nine_published_mock_orders_are_served() -> None:
    assert list(MOCK_ORDERS) == PUBLISHED_MOCKS


@pytest.mark.parametrize("order_id", PUBLISHED_MOCKS)
def test_each_mock_order_is_complete_and_valid(order_id: str) -> None:
    answer = query_order([("orderId", order_id)], nothing_sold, NOW)
    assert answer.status == 200 and answer.code == "MKT.0000"
    assert schema_errors(answer.body) == []
    info = answer.body["orderInfo"]
    assert info["orderId"] == order_id and info["createTime"] == "20261129220000"
    [line] = info["orderLine"]
    assert line["orderLineId"] == f"{order_id}-000001"
    assert set(line) >= {"chargingMode", "productInfo", "currency", "currencyAfterDiscount", "trialFlag"}
    assert set(info["buyerInfo"]) == {
        "mobilePhone",
        "email",
        "customerId",
        "customerName",
        "customerRealName",
        "customerType",
        "userId",
        "userName",
    }
    [product] = line["productInfo"]
    assert set(product) == {"productId", "skuCode", "linearValue", "productName"}
    if "periodType" in line:
        assert line["expireTime"].endswith("235959") and line["expireTime"] > info["createTime"]


def test_the_yearly_mock_has_the_live_answers_shape() -> None:
    """[X3]: NEW, PERIOD, year x 1, expiring at the end of the day a year later."""
    info = mock_order("MOCKPERIODYEARNEW", NOW)
    assert info is not None
    line = info["orderLine"][0]
    assert (info["orderType"], line["chargingMode"], line["periodType"], line["periodNumber"]) == (
        "NEW",
        "PERIOD",
        "year",
        1,
    )
    assert line["expireTime"] == "20271129235959"
    assert line["currency"] == "100" and isinstance(line["productInfo"][0]["linearValue"], int)
    assert info["buyerInfo"]["customerType"] == 0 and info["buyerInfo"]["email"] is None


def test_mock_contents_follow_their_names() -> None:
    def line(order_id: str) -> dict[str, Any]:
        info = mock_order(order_id, NOW)
        assert info is not None
        return {"orderType": info["orderType"], **info["orderLine"][0]}

    assert line("MOCKONETIMENEW")["chargingMode"] == "ONE_TIME"
    assert line("MOCKONDEMAND")["chargingMode"] == "ON_DEMAND" and "periodType" not in line("MOCKONDEMAND")
    assert line("MOCKONDEMANDPKG")["chargingMode"] == "ON_DEMAND_PKG"
    trial = line("MOCKPERIODDAYTRIAL")
    assert (trial["trialFlag"], trial["periodType"], trial["expireTime"]) == ("1", "day", "20261130235959")
    assert line("MOCKMONTYTRIALTOFORMAL")["orderType"] == "TRIAL_TO_FORMAL"
    assert line("MOCKMONTYUNSUBSCRIBE")["orderType"] == "UNSUBSCRIBE"
    assert line("MOCKMONTYRENEW")["orderType"] == "RENEW"
    change = line("MOCKMONTYCHANGE")
    assert (
        change["orderType"] == "CHANGE"
        and change["productInfo"][0]["skuCode"] != line("MOCKMONTYRENEW")["productInfo"][0]["skuCode"]
    )
    assert mock_order("MOCKSOMETHINGELSE", NOW) is None


def test_mock_dates_are_recent() -> None:
    later = NOW + timedelta(days=400)
    info = mock_order("MOCKMONTYRENEW", later)
    assert info is not None and info["createTime"] == later.strftime("%Y%m%d%H%M%S")
    # 31 January + 1 month ends on the last day of February
    january = mock_order("MOCKMONTYRENEW", datetime(2027, 1, 31, 8, tzinfo=UTC))
    assert january is not None and january["orderLine"][0]["expireTime"] == "20270228235959"


# --- orders koosim sold (§8.1) ----------------------------------------------------------------


def test_the_answer_for_a_sold_order_agrees_with_the_model() -> None:
    order = OrderFactory(seed=7, now=NOW).order(trial=True)
    sale = Sale(order, created=NOW, amount=Decimal("199.00"), amount_after_discount=Decimal("150.5"))
    info = order_info([sale])
    answer = query_order([("orderId", order.order_id)], {order.order_id: info}.get, NOW)
    assert answer.status == 200 and schema_errors(answer.body) == []
    got = answer.body["orderInfo"]
    line = got["orderLine"][0]
    assert got["buyerInfo"]["customerId"] == order.customer_id
    assert got["buyerInfo"]["customerName"] == order.customer_name
    assert line["productInfo"][0]["productId"] == order.product_id
    assert line["productInfo"][0]["skuCode"] == order.sku_code
    assert line["orderLineId"] == order.order_line_id and line["expireTime"] == order.expire_time
    assert (line["chargingMode"], line["periodType"], line["periodNumber"]) == ("PERIOD", "month", 1)
    assert line["trialFlag"] == "1"
    assert (line["currency"], line["currencyAfterDiscount"]) == ("199", "150.5")


def test_the_order_tells_what_the_new_instance_call_does_not() -> None:
    # docs/protocol.md §4.1: the call names the order only; its terms come from Querying an Order.
    order = OrderFactory(seed=1, now=NOW).order()
    fields = order.new_instance_fields("b-1")
    assert set(fields) == {"activity", "orderId", "orderLineId", "businessId"}
    line = order_info([Sale(order, created=NOW)])["orderLine"][0]
    assert line["orderLineId"] == fields["orderLineId"]
    assert (line["chargingMode"], line["periodType"], line["periodNumber"]) == ("PERIOD", "month", 1)
    assert line["productInfo"][0]["productId"] == order.product_id


def test_an_order_with_several_lines_answers_one_line_on_request() -> None:
    factory = OrderFactory(seed=3, now=NOW)
    first = factory.order()
    second = factory.order(order_id=first.order_id, order_line_id=f"{first.order_id}-000002")
    info = order_info(
        [Sale(first, NOW), Sale(second, NOW, charging_mode=ChargingMode.ON_DEMAND, period_type=None)]
    )
    sold = {first.order_id: info}.get
    whole = query_order([("orderId", first.order_id)], sold, NOW)
    assert [line["orderLineId"] for line in whole.body["orderInfo"]["orderLine"]] == [
        first.order_line_id,
        second.order_line_id,
    ]
    one = query_order([("orderId", first.order_id), ("orderLineId", second.order_line_id)], sold, NOW)
    assert [line["orderLineId"] for line in one.body["orderInfo"]["orderLine"]] == [second.order_line_id]
    assert info["orderLine"][1] == one.body["orderInfo"]["orderLine"][0]  # the stored order is not cut
    assert len(info["orderLine"]) == 2
    with pytest.raises(ValueError, match="same orderId"):
        order_info([Sale(first, NOW), Sale(factory.order(), NOW)])
    with pytest.raises(ValueError, match="at least one"):
        order_info([])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    trial=st.booleans(),
    order_type=st.sampled_from(OrderType),
    charging=st.sampled_from(ChargingMode),
    period=st.sampled_from([("year", 1), ("month", 3), ("day", 7), ("hour", 5), (None, None)]),
    amount=st.decimals(min_value=0, max_value=10**6, places=2),
    created=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    expire=st.booleans(),
)
def test_query_answers_for_generated_orders_are_valid(
    seed: int,
    trial: bool,
    order_type: OrderType,
    charging: ChargingMode,
    period: tuple[str | None, int | None],
    amount: Decimal,
    created: datetime,
    expire: bool,
) -> None:
    order = OrderFactory(seed=seed, now=created).order(trial=trial, **({} if expire else {"expire_time": ""}))
    sale = Sale(order, created, order_type, charging, period[0], period[1], amount=amount)
    answer = query_order([("orderId", order.order_id)], {order.order_id: order_info([sale])}.get, NOW)
    assert answer.status == 200 and schema_errors(answer.body) == []
    line = answer.body["orderInfo"]["orderLine"][0]
    assert Decimal(line["currency"]) == amount and line["trialFlag"] == ("1" if trial else "0")


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ([("orderId", "CS404")], 500, "MKT.0100"),
        ([("orderId", "MOCKPERIODYEARNEW"), ("orderLineId", "MOCKPERIODYEARNEW-000002")], 500, "MKT.0100"),
        ([], 400, "MKT.0101"),
        ([("orderLineId", "MOCKPERIODYEARNEW-000001")], 400, "MKT.0101"),
        ([("orderId", "MOCKPERIODYEARNEW"), ("foo", "bar")], 400, "MKT.0101"),
        ([("orderId", "MOCKPERIODYEARNEW"), ("orderId", "MOCKONDEMAND")], 400, "MKT.0101"),
        ([("orderId", "")], 500, "MKT.0100"),
        ([("orderId", "C" * 65)], 500, "MKT.0100"),
        ([("orderId", "MOCKPERIODYEARNEW"), ("orderLineId", "L" * 65)], 500, "MKT.0100"),
    ],
)
def test_refused_queries_answer_the_published_codes_without_order_info(
    params: list[tuple[str, str]], status: int, code: str
) -> None:
    answer = query_order(params, nothing_sold, NOW)
    assert (answer.status, answer.code) == (status, code)
    assert "orderInfo" not in answer.body and schema_errors(answer.body) == []
    assert answer.body["resultMsg"].startswith(MktCode(code).meaning)
    assert ("extra_info" in answer.body) is MktCode(code).carries_extra_info


def test_every_published_code_has_its_published_status() -> None:
    statuses = {code.value: code.status for code in MktCode}
    assert statuses == {
        "MKT.0000": 200, "MKT.0999": 500, "MKT.0100": 500, "MKT.0101": 400, "MKT.0199": 400, "MKT.0150": 401,
        "MKT.0151": 401, "MKT.0154": 401, "MKT.0250": 406, "MKT.9001": 500, "MKT.9002": 500, "MKT.9003": 500,
        "MKT.9004": 500,
    }  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["orderId", "orderLineId"]) | st.text(max_size=8), st.text(max_size=70))
    )
)
def test_any_query_gets_a_valid_answer(params: list[tuple[str, str]]) -> None:
    answer = query_order(params, nothing_sold, NOW)
    assert answer.status in (200, 400, 500) and schema_errors(answer.body) == []


# --- usage push (§8.3) ----------------------------------------------------------------------


def record(**changes: Any) -> dict[str, Any]:
    base = {
        "instance_id": "inst-1",
        "record_time": "20261129T211000Z",
        "begin_time": "20261129T200000Z",
        "end_time": "20261129T210000Z",
        "usage_value": "99",
        "metering_sn": "sn-1",
    }
    return {name: value for name, value in (base | changes).items() if value is not None}


def push(*records: dict[str, Any], known: set[str] | None = None, **top: Any) -> Any:
    body = json.dumps({"usage_records": list(records), **top}).encode()
    return validate_usage_push(body, NOW, known)


def test_a_good_push_is_accepted_and_parsed() -> None:
    result = push(record(), record(metering_sn="sn-2", usage_value="0.0001", relate_pkg_instance="pkg-1"))
    assert result.accepted and result.answer.status == 200 and result.warnings == ()
    assert result.answer.body == {"resultCode": "MKT.0000", "resultMsg": "Success"}
    assert schema_errors(result.answer.body, "usagePush") == []
    assert [r.usage_value for r in result.records] == [Decimal("99"), Decimal("0.0001")]
    assert result.records[1].relate_pkg_instance == "pkg-1"
    assert result.records[0].begin_time == datetime(2026, 11, 29, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"usage_value": "0"}, "MKT.0100"),
        ({"usage_value": "0.0000"}, "MKT.0100"),
        ({"usage_value": "0.00001"}, "MKT.0100"),
        ({"usage_value": "-1"}, "MKT.0100"),
        ({"usage_value": "1e3"}, "MKT.0100"),
        ({"usage_value": "01"}, "MKT.0100"),
        ({"usage_value": " 1"}, "MKT.0100"),
        ({"usage_value": "1" * 18}, "MKT.0100"),
        ({"usage_value": True}, "MKT.0100"),
        ({"usage_value": None}, "MKT.0101"),
        ({"usage_value": 0}, "MKT.0100"),
        ({"usage_value": 1.00001}, "MKT.0100"),
        ({"begin_time": "20261129200000"}, "MKT.0100"),
        ({"begin_time": "2026-11-29T20:00:00Z"}, "MKT.0100"),
        ({"record_time": "20261329T200000Z"}, "MKT.0100"),
        ({"end_time": 20261129}, "MKT.0100"),
        ({"end_time": "20261129T200000Z"}, "MKT.9002"),
        ({"end_time": "20261129T190000Z"}, "MKT.9002"),
        ({"begin_time": "20261108T215959Z"}, "MKT.9004"),
        ({"begin_time": "20261129T221600Z", "end_time": "20261129T230000Z"}, "MKT.9004"),
        ({"instance_id": ""}, "MKT.0100"),
        ({"instance_id": "i" * 65}, "MKT.0100"),
        ({"metering_sn": 7}, "MKT.0100"),
        ({"relate_pkg_instance": ""}, "MKT.0100"),
        ({"product_id": "OFFI1"}, "MKT.0101"),
        ({"metering_sn": None}, "MKT.0101"),
    ],
)
def test_a_bad_record_is_refused_with_its_code(changes: dict[str, Any], code: str) -> None:
    result = push(record(**changes))
    assert result.answer.code == code and not result.accepted and result.records == ()
    assert result.answer.status == MktCode(code).status
    assert schema_errors(result.answer.body, "usagePush") == []


def test_the_21_day_window_is_measured_from_now() -> None:
    assert push(record(begin_time="20261108T220000Z")).accepted
    assert push(record(begin_time="20261108T215959Z")).answer.code == "MKT.9004"


def test_a_number_usage_value_is_accepted_with_a_warning() -> None:
    result = push(record(usage_value=0.5))
    assert result.accepted and any("A46" in warning for warning in result.warnings)
    assert result.records[0].usage_value == Decimal("0.5")


def test_record_counts_follow_a45() -> None:
    many = [record(metering_sn=f"sn-{n}") for n in range(1001)]
    assert push(*many).answer.code == "MKT.9003" and push(*many).answer.status == 500
    thousand = push(*many[:1000])
    assert thousand.accepted and any("A45" in warning for warning in thousand.warnings)
    assert push(*many[:100]).warnings == ()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "MKT.0199"),
        (b"\xff", "MKT.0199"),
        (b"[]", "MKT.0199"),
        (b'{"usage_records": NaN}', "MKT.0199"),
        (b"{}", "MKT.0101"),
        (b'{"usage_records": []}', "MKT.0100"),
        (b'{"usage_records": {}}', "MKT.0100"),
        (b'{"usage_records": [1]}', "MKT.0100"),
        (b'{"usage_records": [], "extra": 1}', "MKT.0101"),
    ],
)
def test_a_bad_body_is_refused_with_its_code(body: bytes, code: str) -> None:
    assert validate_usage_push(body, NOW).answer.code == code


def test_repeated_metering_sn_and_unknown_instances() -> None:
    assert push(record(), record()).answer.code == "MKT.9002"
    assert push(record(), known={"inst-1"}).accepted
    unknown = push(record(instance_id="inst-2"), known={"inst-1"})
    assert unknown.answer.code == "MKT.9001" and "extra_info" in unknown.answer.body


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "instance_id": st.text(max_size=3),
                "record_time": st.sampled_from(["20261129T211000Z", "x"]),
                "begin_time": st.sampled_from(["20261129T200000Z", "20261129T210000Z", "20200101T000000Z"]),
                "end_time": st.sampled_from(["20261129T210000Z", "20261129T200000Z"]),
                "usage_value": st.one_of(st.text(max_size=6), st.floats(), st.integers(), st.booleans()),
                "metering_sn": st.text(max_size=3),
                "relate_pkg_instance": st.text(max_size=3),
            },
        ),
        max_size=3,
    )
)
def test_any_push_gets_a_valid_answer_and_acceptance_implies_the_schema(
    records: list[dict[str, Any]],
) -> None:
    body = json.dumps({"usage_records": records}).encode()
    result = validate_usage_push(body, NOW)
    assert schema_errors(result.answer.body, "usagePush") == []
    if result.accepted:
        assert schema_errors(json.loads(body), "usagePush", "request") == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_any_bytes_get_an_answer(body: bytes) -> None:
    result = validate_usage_push(body, NOW)
    assert result.answer.code in {code.value for code in MktCode}


def test_refusals_no_page_states_are_flagged_unpublished() -> None:
    """Review 2, finding 1.4: the checks judge by this flag, never by the words of the message."""
    nothing_sold: Any = lambda _: None  # noqa: E731
    repeated = query_order([("orderId", "a"), ("orderId", "b")], nothing_sold, NOW)
    assert repeated.code == "MKT.0101" and not repeated.published
    assert not query_order([("orderId", "CS-nothing")], nothing_sold, NOW).published  # U32
    extra = query_order([("orderId", "a"), ("what", "b")], nothing_sold, NOW)
    assert extra.code == "MKT.0101" and extra.published
    future = push(record(begin_time="20261129T221600Z", end_time="20261129T230000Z"))
    assert future.answer.code == "MKT.9004" and not future.answer.published
    old = push(record(begin_time="20261108T215959Z"))
    assert old.answer.code == "MKT.9004" and old.answer.published
    unknown = push(record(instance_id="inst-2"), known={"inst-1"})
    assert not unknown.answer.published
    assert "not an instance created in this run" in unknown.answer.body["resultMsg"]
    assert not push(record(), record()).answer.published  # U38
    assert push(record(usage_value="-1")).answer.published
