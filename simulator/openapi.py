"""What the marketplace's open APIs answer (protocol.md §8), as data: no HTTP, no clock of its own.

- **Querying an Order** (§8.1): :func:`order_info` builds the ``orderInfo`` of an order koosim
  sold (a :class:`Sale`: the model's :class:`~simulator.model.Order` plus the billing terms the
  thin newInstance does not carry), :func:`mock_order` the nine MOCK debug orders (§8.2), and
  :func:`query_order` the whole answer to a request's query parameters.
- **Usage push** (§8.3): :func:`validate_usage_push` judges a body (records, limits, formats,
  the 21-day window against an injected "now") and gives the answer the marketplace returns.
- **Answers** (§8.4): :class:`OpenApiAnswer`, an HTTP status and a ``resultCode``/``resultMsg``
  body with ``extra_info`` where §8.4 says failures carry it.

The member set of ``orderInfo`` is the one §8.1 knows from [S63] and the live MOCK answer
[X3]; which members are mandatory, their lengths and every enumeration value beyond ``NEW``,
``PERIOD`` and ``year`` are ASSUMPTION U30, and the content of the eight MOCK orders other than
MOCKPERIODYEARNEW is ASSUMPTION U31. Both are named where they are used below.

The server (``simulator/server/``) turns these into routes; authentication lives in
:mod:`simulator.protocol.apig` (Querying an Order) and
:mod:`simulator.protocol.usage_signature` (usage push).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from simulator.model import Order, line_of
from simulator.protocol.apig import Authenticated, GatewayRefusal
from simulator.protocol.limits import BASIC_UTC_FORMAT, COMPACT_TIME_FORMAT, GATEWAY_CLOCK_WINDOW
from simulator.protocol.mkt import MktCode
from simulator.protocol.usage_signature import UsageRefusal, UsageSigned, natural_body

_log = logging.getLogger(__name__)

PREFIX = "/api/mkp-openapi-public/global/v1"
QUERY_ORDER_PATH = f"{PREFIX}/order/query"
"""§8.1: ``GET``, parameters in the query string."""
USAGE_PUSH_PATH = f"{PREFIX}/isv/usage-data"
"""§8.3: ``POST``, JSON body."""

ORDER_TIME_FORMAT = COMPACT_TIME_FORMAT
USAGE_TIME_FORMAT = BASIC_UTC_FORMAT
MAX_ID_LENGTH = 64
SUCCESS_MESSAGE = "Success"
"""The live answer's ``resultMsg`` [X3]."""


# --- answers (§8.4) ---------------------------------------------------------------------


@dataclass(frozen=True)
class OpenApiAnswer:
    """An open-API answer: the HTTP status §8.4 prints beside the code, and the JSON body."""

    status: int
    body: dict[str, Any]
    published: bool = True
    """A refusal a page states (§0); False when the refusal rests on an ASSUMPTION (a warning at most)."""

    @property
    def code(self) -> str:
        return str(self.body.get("resultCode", ""))


def answer(code: MktCode, detail: str = "", *, published: bool = True, **members: Any) -> OpenApiAnswer:
    """The answer for ``code``: ``resultMsg`` is the generic text plus ``detail`` on failure,
    and a failure whose code §8.4 lists with ``extra_info`` carries the detail there too
    (its shape is not published: a string, ASSUMPTION U35)."""
    if code is MktCode.SUCCESS:
        return OpenApiAnswer(code.status, {"resultCode": code.value, "resultMsg": SUCCESS_MESSAGE, **members})
    message = f"{code.meaning}: {detail}" if detail else code.meaning
    body: dict[str, Any] = {"resultCode": code.value, "resultMsg": message[:1024]}
    if code.carries_extra_info:
        body["extra_info"] = detail or code.meaning
    return OpenApiAnswer(code.status, body | members, published)


# --- Querying an Order (§8.1) -----------------------------------------------------------


class OrderType(StrEnum):
    """``orderInfo.orderType``. Only ``NEW`` is on a page [S63][X3]; the rest is ASSUMPTION U30,
    named as koosim's order notification (server/notify.py) already names them."""

    NEW = "NEW"
    RENEW = "RENEW"
    CHANGE = "CHANGE"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    TRIAL_TO_FORMAL = "TRIAL_TO_FORMAL"


class ChargingMode(StrEnum):
    """``orderLine[].chargingMode``. Only ``PERIOD`` is on a page [S63][X3] (ASSUMPTION U30)."""

    PERIOD = "PERIOD"
    ONE_TIME = "ONE_TIME"
    ON_DEMAND = "ON_DEMAND"
    ON_DEMAND_PKG = "ON_DEMAND_PKG"


NEW_INSTANCE_CHARGING_MODES = {
    "0": ChargingMode.PERIOD,
    "1": ChargingMode.ON_DEMAND,
    "3": ChargingMode.ONE_TIME,
}
"""The digit koosim's newInstance sends today (model.Order.new_instance_fields) → the name here."""


@dataclass(frozen=True)
class Sale:
    """One order line koosim sold: the model's order line and what the buyer agreed to pay.

    The defaults describe what koosim sells unless told otherwise (PERIOD, one month): the
    newInstance call names only the order (docs/protocol.md §4.1), so this answer is where a
    merchant learns the terms.
    """

    order: Order
    created: datetime
    order_type: OrderType = OrderType.NEW
    charging_mode: ChargingMode = ChargingMode.PERIOD
    period_type: str | None = "month"
    period_number: int | None = 1
    amount: Decimal = Decimal("100")
    amount_after_discount: Decimal | None = None
    linear_value: int | None = None
    product_name: str = ""
    extend_params: Mapping[str, str] = field(default_factory=dict)


def _amount(value: Decimal) -> str:
    """An amount as the live answer writes one: a string holding a number (``"100"``) [X3]."""
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def _end_of_day(day: date) -> str:
    """Expiry as in the live answer: the last second of a day (``…235959``) [X3]."""
    return datetime.combine(day, time(23, 59, 59)).strftime(ORDER_TIME_FORMAT)


def _add_period(start: datetime, period_type: str, number: int) -> datetime:
    if period_type == "year":
        return _add_months(start, 12 * number)
    if period_type == "month":
        return _add_months(start, number)
    if period_type == "day":
        return start + timedelta(days=number)
    return start + timedelta(hours=number)


def _add_months(start: datetime, months: int) -> datetime:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    for day in range(start.day, 0, -1):  # 31 January + 1 month = 28/29 February
        try:
            return start.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable: day 1 exists in every month")


def order_line(sale: Sale) -> dict[str, Any]:
    """One ``orderLine`` entry for ``sale``, in the live answer's member order [X3]."""
    order = sale.order
    line: dict[str, Any] = {"orderLineId": order.order_line_id, "chargingMode": sale.charging_mode.value}
    if sale.period_type is not None and sale.period_number is not None:
        line["periodType"] = sale.period_type
        line["periodNumber"] = sale.period_number
        expire = order.expire_time or _end_of_day(
            _add_period(sale.created, sale.period_type, sale.period_number).date()
        )
        line["expireTime"] = expire
    elif order.expire_time:
        line["expireTime"] = order.expire_time
    product: dict[str, Any] = {"productId": order.product_id, "skuCode": order.sku_code}
    if sale.linear_value is not None:
        product["linearValue"] = sale.linear_value
    product["productName"] = sale.product_name or f"koosim test product {order.product_id} / {order.sku_code}"
    line["productInfo"] = [product]
    line["extendParams"] = [{"name": name, "value": value} for name, value in sale.extend_params.items()]
    line["currency"] = _amount(sale.amount)
    after = sale.amount if sale.amount_after_discount is None else sale.amount_after_discount
    line["currencyAfterDiscount"] = _amount(after)
    # ASSUMPTION U30: the trial state as the signing example's vocabulary writes it [S21].
    line["trialFlag"] = "1" if order.trial else "0"
    return line


def buyer_info(order: Order) -> dict[str, Any]:
    """``orderInfo.buyerInfo`` with the live answer's members [X3]: what koosim knows of the
    customer; the rest ``null`` as the live answer has them. ``customerType`` 0 as in [X3]."""
    return {
        "mobilePhone": None,
        "email": None,
        "customerId": order.customer_id,
        "customerName": order.customer_name,
        "customerRealName": order.customer_name,
        "customerType": 0,
        "userId": None,
        "userName": None,
    }


def order_info(sales: Sequence[Sale]) -> dict[str, Any]:
    """The ``orderInfo`` of one order made of ``sales`` (its lines, at least one, one order ID).

    Customer, product, SKU, trial flag and expiry come from the model's orders; billing mode,
    period and amounts from the sales. The order's type and creation time are the first line's.
    """
    if not sales:
        raise ValueError("an order has at least one line")
    first = sales[0]
    if any(sale.order.order_id != first.order.order_id for sale in sales):
        raise ValueError("every line of an order carries the same orderId")
    return {
        "orderId": first.order.order_id,
        "orderType": first.order_type.value,
        "createTime": first.created.astimezone(UTC).strftime(ORDER_TIME_FORMAT),
        "orderLine": [order_line(sale) for sale in sales],
        "buyerInfo": buyer_info(first.order),
        "extendParams": [],
    }


# --- the MOCK debug orders (§8.2) ---------------------------------------------------------


@dataclass(frozen=True)
class _Mock:
    meaning: str
    order_type: OrderType
    charging_mode: ChargingMode
    period_type: str | None
    period_number: int | None
    trial: bool = False
    sku_code: str = "0a4d1578-5295-46a7-92d4-7c803dccc51d"
    amount: str = "100"


MOCK_ORDERS: dict[str, _Mock] = {
    # Known from the live answer [X3].
    "MOCKPERIODYEARNEW": _Mock("new purchase, yearly/monthly", OrderType.NEW, ChargingMode.PERIOD, "year", 1),
    # ASSUMPTION U31: the content of every mock below is koosim's reading of its name (§8.2).
    "MOCKONETIMENEW": _Mock("new purchase, one-time", OrderType.NEW, ChargingMode.ONE_TIME, None, None),
    "MOCKONDEMAND": _Mock(
        "new purchase, pay-per-use specification",
        OrderType.NEW,
        ChargingMode.ON_DEMAND,
        None,
        None,
        amount="0",
    ),
    "MOCKONDEMANDPKG": _Mock(
        "new purchase, pay-per-use package", OrderType.NEW, ChargingMode.ON_DEMAND_PKG, "month", 1
    ),
    "MOCKPERIODDAYTRIAL": _Mock(
        "trial", OrderType.NEW, ChargingMode.PERIOD, "day", 1, trial=True, amount="0"
    ),
    "MOCKMONTYTRIALTOFORMAL": _Mock(
        "trial → commercial", OrderType.TRIAL_TO_FORMAL, ChargingMode.PERIOD, "month", 1
    ),
    "MOCKMONTYUNSUBSCRIBE": _Mock("unsubscription", OrderType.UNSUBSCRIBE, ChargingMode.PERIOD, "month", 1),
    "MOCKMONTYRENEW": _Mock("renewal", OrderType.RENEW, ChargingMode.PERIOD, "month", 1),
    "MOCKMONTYCHANGE": _Mock(
        "change / upgrade",
        OrderType.CHANGE,
        ChargingMode.PERIOD,
        "month",
        1,
        sku_code="7b5e2f3c-8d14-4c6a-9f0e-2a1b3c4d5e6f",
        amount="200",
    ),
}
"""The nine debug orders koosim serves (§8.2, A44), in the order the pages list them."""

_MOCK_PRODUCT_ID = "OFFI846204237451911168"
_MOCK_PRODUCT_NAME = "MOCK测试商品,测试规格,基础版,包周期"
_MOCK_BUYER = {
    "mobilePhone": "18688888888",
    "email": None,
    "customerId": "459bbbec25d24749b2eb83be37b602a8",
    "customerName": "mock_user_01",
    "customerRealName": "测试用户1",
    "customerType": 0,
    "userId": None,
    "userName": None,
}
"""Product and buyer of the live MOCKPERIODYEARNEW answer [X3], shared by all nine (U31)."""
_MOCK_EXTEND_PARAMS = {"emailDomainName": "test.xxxx.com", "ip": "127.0.0.1"}


def mock_order(order_id: str, now: datetime) -> dict[str, Any] | None:
    """The ``orderInfo`` of MOCK order ``order_id`` as of ``now``, or None if it is not one.

    Dates are recent, as in the live answer (created now, expiring at the end of the day one
    period later) [X3]; each order has exactly one line, ``<orderId>-000001`` (§8.2).
    """
    mock = MOCK_ORDERS.get(order_id)
    if mock is None:
        return None
    order = Order(
        order_id=order_id,
        order_line_id=f"{order_id}-000001",
        customer_id=str(_MOCK_BUYER["customerId"]),
        product_id=_MOCK_PRODUCT_ID,
        sku_code=mock.sku_code,
        customer_name=str(_MOCK_BUYER["customerName"]),
        trial=mock.trial,
        test=True,
    )
    sale = Sale(
        order=order,
        created=now,
        order_type=mock.order_type,
        charging_mode=mock.charging_mode,
        period_type=mock.period_type,
        period_number=mock.period_number,
        amount=Decimal(mock.amount),
        linear_value=50,
        product_name=_MOCK_PRODUCT_NAME,
        extend_params=_MOCK_EXTEND_PARAMS,
    )
    info = order_info([sale])
    info["buyerInfo"] = dict(_MOCK_BUYER)
    return info


QUERY_PARAMETERS = ("orderId", "orderLineId")


def query_order(
    params: Sequence[tuple[str, str]],
    find: Callable[[str], Mapping[str, Any] | None],
    now: datetime,
) -> OpenApiAnswer:
    """The answer to Querying an Order with query parameters ``params`` (§8.1).

    ``find`` returns the ``orderInfo`` of an order koosim sent in this run (for example
    :func:`order_info` of its sales), or None; the MOCK orders are answered first. An unknown
    order, or a line the order does not have, is ``MKT.0100`` with HTTP 500 and no
    ``orderInfo`` (ASSUMPTIONs U32, U34).
    """
    names = [name for name, _ in params]
    extra = sorted({name for name in names if name not in QUERY_PARAMETERS})
    if extra:
        return answer(MktCode.UNDEFINED_PARAMETER, f"parameters not defined by the API: {', '.join(extra)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return answer(
            MktCode.UNDEFINED_PARAMETER,
            f"parameters given more than once: {', '.join(repeated)} (no page says so)",
            published=False,
        )
    values = dict(params)
    order_id, line_id = values.get("orderId"), values.get("orderLineId")
    if order_id is None:
        return answer(MktCode.UNDEFINED_PARAMETER, "the mandatory parameter orderId is missing")
    for name, value in (("orderId", order_id), ("orderLineId", line_id)):
        if value is not None and not 1 <= len(value) <= MAX_ID_LENGTH:
            return answer(MktCode.INVALID_PARAMETER, f"{name} must be 1 to {MAX_ID_LENGTH} characters")
    found = mock_order(order_id, now)
    if found is None:
        sold = find(order_id)
        found = json.loads(json.dumps(sold)) if sold is not None else None
    if found is None:
        return answer(
            MktCode.INVALID_PARAMETER, f"order {order_id!r} does not exist (ASSUMPTION U32)", published=False
        )
    if line_id is not None:
        found["orderLine"] = [line for line in found["orderLine"] if line.get("orderLineId") == line_id]
        if not found["orderLine"]:
            return answer(
                MktCode.INVALID_PARAMETER,
                f"order {order_id!r} has no line {line_id!r} (ASSUMPTION U32)",
                published=False,
            )
    return answer(MktCode.SUCCESS, orderInfo=found)


# --- usage push (§8.3) --------------------------------------------------------------------

MAX_RECORDS = 1000
"""§8.3 [S64][S66]: more is refused with MKT.9003 (A45)."""
STRICT_MAX_RECORDS = 100
"""The MKT.9003 row's figure [S63]: 101 to 1000 records is accepted with a warning (A45)."""
MAX_AGE = timedelta(days=21)
"""A record's begin time must be within the last 21 days (MKT.9004) [S63]."""
FUTURE_SKEW = GATEWAY_CLOCK_WINDOW
"""ASSUMPTION (beside U39): a begin time later than now by more than the gateway's 15-minute
clock window (§2.5) is not "within the last 21 days" either: MKT.9004."""
MAX_USAGE_VALUE_LENGTH = 17
"""A46: the stricter edition's String(17)."""

RECORD_FIELDS = ("instance_id", "record_time", "begin_time", "end_time", "usage_value", "metering_sn")
OPTIONAL_RECORD_FIELDS = ("relate_pkg_instance",)
_USAGE_TIME = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z", re.ASCII)
_USAGE_VALUE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]{1,4})?", re.ASCII)


@dataclass(frozen=True)
class UsageRecord:
    """One accepted usage record, parsed."""

    instance_id: str
    record_time: datetime
    begin_time: datetime
    end_time: datetime
    usage_value: Decimal
    metering_sn: str
    relate_pkg_instance: str | None = None


@dataclass(frozen=True)
class UsagePushResult:
    """The marketplace's answer to a usage push, the records it took, and warning-level notes."""

    answer: OpenApiAnswer
    records: tuple[UsageRecord, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.answer.code == MktCode.SUCCESS


class _Refused(Exception):
    def __init__(self, code: MktCode, detail: str, *, published: bool = True) -> None:
        super().__init__(detail)
        self.code, self.detail, self.published = code, detail, published


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def validate_usage_push(
    body: bytes,
    now: datetime,
    known_instances: Container[str] | None = None,
) -> UsagePushResult:
    """Judge a usage-push body as the marketplace does (§8.3, codes §8.4), against ``now``.

    The first fault decides the answer. ``known_instances``, when given, holds the instance IDs
    the merchant created; a record naming another is ``MKT.9001``. Never raises on any body.
    Repeated ``metering_sn`` across calls is for the caller's memory to decide (U38); repeated
    within one call is ``MKT.9002`` (U38).
    """
    warnings: list[str] = []
    try:
        records = _records(body, warnings)
        parsed = tuple(_record(index, record, now, warnings) for index, record in enumerate(records))
        _check_together(parsed, known_instances)
    except _Refused as refused:
        refusal = answer(refused.code, refused.detail, published=refused.published)
        return UsagePushResult(refusal, (), tuple(warnings))
    return UsagePushResult(answer(MktCode.SUCCESS), parsed, tuple(warnings))


def _records(body: bytes, warnings: list[str]) -> list[Any]:
    try:
        decoded = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _Refused(MktCode.OTHER_PARAMETER_ERROR, f"the body is not UTF-8 JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise _Refused(MktCode.OTHER_PARAMETER_ERROR, "the body must be a JSON object with usage_records")
    try:  # "\udfff" parses, but is no character: the body is not UTF-8 text after all
        natural_body(decoded).encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(
            MktCode.OTHER_PARAMETER_ERROR, "the body holds a lone surrogate: not UTF-8 JSON"
        ) from None
    except ValueError:
        pass  # a number it cannot write is judged where it stands
    extra = sorted(name for name in decoded if name != "usage_records")
    if extra:
        raise _Refused(MktCode.UNDEFINED_PARAMETER, f"members not defined by the API: {', '.join(extra)}")
    if "usage_records" not in decoded:
        raise _Refused(MktCode.UNDEFINED_PARAMETER, "the mandatory member usage_records is missing")
    records = decoded["usage_records"]
    if not isinstance(records, list) or not records:
        raise _Refused(MktCode.INVALID_PARAMETER, "$.usage_records must be a non-empty list")
    if len(records) > MAX_RECORDS:
        raise _Refused(
            MktCode.TOO_MANY_RECORDS, f"at most {MAX_RECORDS} usage_records per call, got {len(records)}"
        )
    if len(records) > STRICT_MAX_RECORDS:
        warnings.append(
            f"{len(records)} usage_records in one call: the MKT.9003 row allows {STRICT_MAX_RECORDS}, "
            f"the usage-push pages {MAX_RECORDS} (§8.3, A45)"
        )
    return records


def _record(index: int, record: Any, now: datetime, warnings: list[str]) -> UsageRecord:
    where = f"$.usage_records[{index}]"
    if not isinstance(record, dict):
        raise _Refused(MktCode.INVALID_PARAMETER, f"{where} must be an object")
    extra = sorted(name for name in record if name not in RECORD_FIELDS + OPTIONAL_RECORD_FIELDS)
    if extra:
        why = " (product_id belongs to the old usage push, §8.3)" if "product_id" in extra else ""
        raise _Refused(MktCode.UNDEFINED_PARAMETER, f"{where}: members not defined: {', '.join(extra)}{why}")
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise _Refused(
            MktCode.UNDEFINED_PARAMETER, f"{where}: mandatory members missing: {', '.join(missing)}"
        )
    for name in ("instance_id", "metering_sn", *OPTIONAL_RECORD_FIELDS):
        if name in record:
            value = record[name]
            if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
                raise _Refused(
                    MktCode.INVALID_PARAMETER,
                    f"{where}.{name} must be a string of 1 to {MAX_ID_LENGTH} characters",
                )
    times = {
        name: _usage_time(f"{where}.{name}", record[name])
        for name in ("record_time", "begin_time", "end_time")
    }
    if times["end_time"] <= times["begin_time"]:
        raise _Refused(
            MktCode.INVALID_USAGE,
            f"{where}: end_time is not after begin_time (ASSUMPTION U39)",
            published=False,
        )
    if times["begin_time"] < now - MAX_AGE:
        raise _Refused(MktCode.BEGIN_TIME_OUT_OF_RANGE, f"{where}.begin_time is more than 21 days ago")
    if times["begin_time"] > now + FUTURE_SKEW:
        raise _Refused(
            MktCode.BEGIN_TIME_OUT_OF_RANGE,
            f"{where}.begin_time is in the future (ASSUMPTION, beside U39)",
            published=False,
        )
    value = _usage_value(f"{where}.usage_value", record["usage_value"], warnings)
    return UsageRecord(
        instance_id=record["instance_id"],
        record_time=times["record_time"],
        begin_time=times["begin_time"],
        end_time=times["end_time"],
        usage_value=value,
        metering_sn=record["metering_sn"],
        relate_pkg_instance=record.get("relate_pkg_instance"),
    )


def _usage_time(where: str, value: Any) -> datetime:
    match = _USAGE_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Refused(MktCode.INVALID_PARAMETER, f"{where} must be a UTC time written yyyyMMdd'T'HHmmss'Z'")
    try:  # strptime(USAGE_TIME_FORMAT) without its cost: halves the time of a 1000-record push
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise _Refused(MktCode.INVALID_PARAMETER, f"{where}: {value!r} is not a real time") from None


def _usage_value(where: str, value: Any, warnings: list[str]) -> Decimal:
    """``usage_value``: > 0, at most 4 decimals; a JSON string of at most 17 characters, or a
    number accepted with a warning (A46)."""
    rule = "must be greater than 0 with at most 4 decimals"
    if isinstance(value, str):
        if len(value) > MAX_USAGE_VALUE_LENGTH or _USAGE_VALUE.fullmatch(value) is None:
            raise _Refused(MktCode.INVALID_PARAMETER, f"{where} {rule}, written in at most 17 characters")
        number = Decimal(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        warnings.append(f"{where} is a JSON number; the pages' examples send a string (§8.3, A46)")
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise _Refused(MktCode.INVALID_PARAMETER, f"{where} {rule}") from None
        exponent = number.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -4:
            raise _Refused(MktCode.INVALID_PARAMETER, f"{where} {rule}")
    else:
        raise _Refused(MktCode.INVALID_PARAMETER, f"{where} must be a string (or a number)")
    if number <= 0:
        raise _Refused(MktCode.INVALID_PARAMETER, f"{where} {rule}")
    return number


def _check_together(records: Sequence[UsageRecord], known_instances: Container[str] | None) -> None:
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.metering_sn in seen:
            raise _Refused(
                MktCode.INVALID_USAGE,
                f"$.usage_records[{index}].metering_sn repeats an earlier record of this call"
                " (ASSUMPTION U38)",
                published=False,
            )
        seen.add(record.metering_sn)
        if known_instances is not None and record.instance_id not in known_instances:
            raise _Refused(
                MktCode.INSTANCE_NOT_FOUND,
                f"$.usage_records[{index}].instance_id is not an instance created in this run: "
                "koosim cannot tell an earlier run's instance from a made-up one",
                published=False,
            )


# --- the orders of a run (§8.1 for what koosim sent) --------------------------------------

BILLING_TERMS: dict[str, tuple[ChargingMode, str | None, int | None, Decimal]] = {
    "period": (ChargingMode.PERIOD, "month", 1, Decimal("100")),
    "one-time": (ChargingMode.ONE_TIME, None, None, Decimal("100")),
    "on-demand": (ChargingMode.ON_DEMAND, None, None, Decimal("0")),
}
"""What a run's order costs, by the target's billing profile (``--billing``): billing mode,
period and amount (ASSUMPTION U30: the pages publish no amounts or periods for koosim's
orders; a month at 100 is what the defaults of :class:`Sale` already say)."""

FOLLOW_UPS: tuple[tuple[str, OrderType], ...] = (
    ("RENEWAL", OrderType.RENEW),
    ("UPGRADE", OrderType.CHANGE),
    ("TRIAL_TO_FORMAL", OrderType.TRIAL_TO_FORMAL),
)
"""The follow-up orders a refreshInstance / upgradeInstance names (model.Order.follow_up_order_id):
Querying an Order answers for them too, with the purchase's customer, product and SKU."""


ORDER_BOOK_CAPACITY = 50_000
"""Orders an :class:`OrderBook` answers for at most (with their follow-ups): the most recent ones.
A load run sells thousands a minute; a merchant asks about an order while provisioning it."""


class OrderBook:
    """Every order koosim sold in a run or a server's life, answerable by Querying an Order.

    Thread-safe: the open API answers on its own threads while the run adds orders. ``billing``
    is the target's billing profile; the clock ``now`` dates each order when it is added.
    """

    def __init__(
        self,
        billing: str = "period",
        now: Callable[[], datetime] | None = None,
        capacity: int = ORDER_BOOK_CAPACITY,
    ) -> None:
        self.billing = billing if billing in BILLING_TERMS else "period"
        self._now = now or (lambda: datetime.now(UTC))
        self._sales: OrderedDict[str, list[Sale]] = OrderedDict()
        self._capacity = capacity * (1 + len(FOLLOW_UPS))
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sales)

    def add(self, order: Order) -> None:
        """Remember ``order`` (a line; a second line of the same order joins it) and its follow-ups."""
        mode, period_type, period_number, amount = BILLING_TERMS[self.billing]
        created = self._now()
        sale = Sale(
            order=order,
            created=created,
            charging_mode=mode,
            period_type=("day" if order.trial and period_type else period_type),
            period_number=period_number,
            amount=Decimal("0") if order.trial else amount,
        )
        follow_ups = []
        for scene, order_type in FOLLOW_UPS:
            follow_id = order.follow_up_order_id(scene)
            follow_order = replace(order, order_id=follow_id, order_line_id=line_of(follow_id), trial=False)
            follow_ups.append(replace(sale, order=follow_order, order_type=order_type, amount=amount))
        with self._lock:
            lines = self._sales.setdefault(order.order_id, [])
            if all(line.order.order_line_id != order.order_line_id for line in lines):
                lines.append(sale)
            for follow in follow_ups:
                self._sales.setdefault(follow.order.order_id, [follow])
            while len(self._sales) > self._capacity:  # a long load run: the oldest orders go first
                self._sales.popitem(last=False)

    def find(self, order_id: str) -> dict[str, Any] | None:
        """The ``orderInfo`` of ``order_id``, or None when koosim never sold it."""
        with self._lock:
            sales = list(self._sales.get(order_id, ()))
        return order_info(sales) if sales else None

    def order_ids(self) -> list[str]:
        with self._lock:
            return list(self._sales)


# --- inbound calls: what a merchant sent to the open APIs, and what koosim answered ---------

INBOUND_DIRECTION = "merchant → marketplace"

GatewayVerdict = Authenticated | GatewayRefusal | UsageSigned | UsageRefusal
"""How the call's authentication was judged: the API gateway's AK/SK (Querying an Order, §2.5)
or the usage push's own signature headers (§2.6)."""


@dataclass(frozen=True)
class InboundCall:
    """One call a merchant made to koosim's open API during a run, and koosim's answer.

    ``api`` is ``queryOrder``, ``usagePush`` or ``None`` (no open API at that method and path).
    ``gateway`` is the authentication verdict (None when the call never reached it: an unknown
    path, a wrong method, a body too large). ``code`` is the answer's ``resultCode`` or gateway
    ``error_code``; ``problems`` say why the call was refused (empty when it was answered
    ``MKT.0000``); ``warnings`` are warning-level notes (A45, A46, U36, U37). ``fields`` are the
    query parameters or the decoded JSON body, kept only for an authenticated call.
    """

    id: str
    api: str | None
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    started_at: float
    status: int
    response_body: bytes
    elapsed: float = 0.0
    gateway: GatewayVerdict | None = None
    code: str = ""
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    direction: str = INBOUND_DIRECTION
    published: bool = True
    """The open API's refusal of the call is a page's rule (False: an ASSUMPTION). The gateway's
    own refusals carry their flag on their reason; :attr:`published_refusal` joins the two."""

    @property
    def authenticated(self) -> bool:
        return isinstance(self.gateway, Authenticated | UsageSigned)

    @property
    def accepted(self) -> bool:
        """Answered with success: authenticated, well-formed, about something koosim knows."""
        return self.code == MktCode.SUCCESS.value

    @property
    def published_refusal(self) -> bool:
        """Whether a page states the rule that refused this call (§0): the gateway's reason
        (``apig.Reason.published``, ``UsageReason.published``) and the open API's answer
        (:attr:`OpenApiAnswer.published`). A check fails the merchant only for such a refusal;
        any other refusal rests on an ASSUMPTION, a warning at most."""
        reason = getattr(self.gateway, "reason", None)
        return self.published and bool(getattr(reason, "published", True))

    @property
    def label(self) -> str:
        return f"{self.api or 'unknown call'} from the merchant"

    @property
    def verdict(self) -> dict[str, Any]:
        """The gateway's and the API's judgement, as the history and the reports keep it."""
        gateway: dict[str, Any] | None = None
        if isinstance(self.gateway, Authenticated):
            gateway = {
                "authenticated": True,
                "scheme": "SDK-HMAC-SHA256",
                "access_key": self.gateway.access_key,
            }
        elif isinstance(self.gateway, UsageSigned):
            gateway = {
                "authenticated": True,
                "scheme": "usage signature",
                "body_form": self.gateway.form.name,
            }
        elif isinstance(self.gateway, GatewayRefusal):
            gateway = {
                "authenticated": False,
                "scheme": "SDK-HMAC-SHA256",
                "reason": self.gateway.reason.name,
                "published": self.gateway.reason.published,
                "message": self.gateway.message,
            }
        elif isinstance(self.gateway, UsageRefusal):
            gateway = {
                "authenticated": False,
                "scheme": "usage signature",
                "reason": self.gateway.reason.name,
                "published": self.gateway.reason.published,
                "message": self.gateway.message,
            }
        return {
            "direction": self.direction,
            "api": self.api,
            "accepted": self.accepted,
            "code": self.code,
            "gateway": gateway,
            "problems": list(self.problems),
            "published": self.published_refusal,
            "warnings": list(self.warnings),
        }


INBOUND_LOG_CAPACITY = 10_000
"""Calls an :class:`InboundLog` keeps (a listener sees every one): a flood cannot exhaust memory."""


class InboundLog:
    """The inbound calls of one market server, in arrival order; thread-safe.

    A listener (:meth:`listen`) sees each call as it is added, on the server's thread: the run
    that is under way appends it to ``Run.inbound`` and to its history there. A listener that
    raises is not the caller's problem: the merchant still gets its answer, and the failure is
    logged (the exception's type only, never its text).
    """

    def __init__(self, capacity: int = INBOUND_LOG_CAPACITY) -> None:
        self._calls: deque[InboundCall] = deque(maxlen=capacity)
        self._listeners: list[Callable[[InboundCall], None]] = []
        self._lock = threading.Lock()
        self.total = 0
        """How many calls were ever added (the log keeps the most recent ``capacity``)."""
        self.refused = 0
        """How many of them were not answered ``MKT.0000``."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def calls(self) -> list[InboundCall]:
        with self._lock:
            return list(self._calls)

    def since(self, mark: int) -> list[InboundCall]:
        """The calls added after :attr:`total` was ``mark`` (those the log still keeps)."""
        with self._lock:
            newer = self.total - mark
            return list(self._calls)[-newer:] if newer > 0 else []

    def add(self, call: InboundCall) -> None:
        with self._lock:
            self._calls.append(call)
            self.total += 1
            self.refused += 0 if call.accepted else 1
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(call)
            except Exception as exc:  # the merchant still gets its answer; the failure is logged
                # Only the exception's type: its text may hold a secret, and this layer cannot
                # import simulator.redaction (a sibling layer).
                _log.warning(
                    "an inbound-call listener (%s) raised %s on call %s: the record of it is incomplete",
                    getattr(listener, "__qualname__", type(listener).__name__),
                    type(exc).__name__,
                    call.id,
                )

    @contextlib.contextmanager
    def listen(self, listener: Callable[[InboundCall], None]) -> Iterator[None]:
        with self._lock:
            self._listeners.append(listener)
        try:
            yield
        finally:
            with self._lock:
                self._listeners.remove(listener)
