"""The reference merchant's side of the open APIs: a client of the marketplace (docs/protocol.md §8).

A merchant calls the marketplace back twice: **Querying an Order** (§8.1), to learn what the thin
V2 newInstance does not say (customer, product, SKU, period, trial), and **usage push** (§8.3),
to report what a pay-per-use instance consumed. Both go to a base URL the merchant configures
(the host differs per edition, A43; in CI it is koosim's open API): nothing here hard-codes one.

Authentication is Huawei's own: Querying an Order is signed with the API gateway's AK/SK scheme
through ``huaweicloudsdkcore``'s signer (§2.5, :func:`simulator.protocol.apig.sign`); a usage push
carries its ``signature``/``ts``/``nonce`` headers keyed with the interface's access key (§2.6,
A48) and is also AK/SK-signed, which one edition asks for (A47).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from simulator.openapi import QUERY_ORDER_PATH, USAGE_PUSH_PATH, USAGE_TIME_FORMAT
from simulator.protocol import apig
from simulator.protocol.mkt import MktCode
from simulator.protocol.usage_signature import sign_usage_push

MARKET_TIMEOUT = 2.0
"""Seconds the merchant waits for the marketplace: the whole newInstance must answer within the
marketplace's 5 s (§3.3), so a lookup may take only part of it."""
JSON_TYPE = "application/json;charset=UTF-8"
"""The example request's Content-Type (§8.1, A53): with it the signer hashes the (empty) body."""


class MarketError(Exception):
    """The marketplace did not give what was asked: unreachable, refused, or an answer that is not
    the published one. The message says which, without a secret."""


@dataclass
class MarketClient:
    """Calls the marketplace's open APIs at ``base_url`` with the seller's credentials."""

    base_url: str
    access_key: str
    """The AK of the API gateway (KOOSIM_MARKET_AK)."""
    secret_key: str = field(repr=False)
    """The SK of the API gateway (KOOSIM_MARKET_SK)."""
    usage_key: str = field(repr=False, default="")
    """The key the usage push signature is keyed with: the interface's access key (§2.6, A48)."""
    timeout: float = MARKET_TIMEOUT
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def query_order(self, order_id: str, order_line_id: str | None = None) -> dict[str, Any]:
        """The ``orderInfo`` of an order (§8.1); :class:`MarketError` when there is none."""
        params = {"orderId": order_id} | ({"orderLineId": order_line_id} if order_line_id else {})
        url = f"{self._url(QUERY_ORDER_PATH)}?{urlencode(params)}"
        signed = apig.sign("GET", url, self.access_key, self.secret_key, headers={"Content-Type": JSON_TYPE})
        body = self._call("GET", signed.url, signed.headers, b"", "Querying an Order")
        info = body.get("orderInfo")
        if not isinstance(info, dict):
            raise MarketError("Querying an Order succeeded without an orderInfo object")
        return info

    def push_usage(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Report usage records (§8.3), signed as §2.6 and the gateway (A47) ask."""
        payload, headers = sign_usage_push(self.usage_key, {"usage_records": list(records)})
        headers["Content-Type"] = JSON_TYPE
        signed = apig.sign(
            "POST",
            self._url(USAGE_PUSH_PATH),
            self.access_key,
            self.secret_key,
            headers=headers,
            body=payload,
        )
        self._call("POST", signed.url, signed.headers, payload, "usage push")

    def _call(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, what: str
    ) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, url, headers=dict(headers), data=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise MarketError(f"{what}: the marketplace did not answer ({type(exc).__name__})") from None
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise MarketError(f"{what}: HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise MarketError(f"{what}: HTTP {response.status_code} with a body that is not a JSON object")
        # Read resultCode, not only the status line (§8.4); gateway refusals say error_code (§2.5).
        code = answer.get("resultCode") or answer.get("error_code")
        if code != MktCode.SUCCESS.value:
            message = answer.get("resultMsg") or answer.get("error_msg") or ""
            raise MarketError(f"{what}: {code or f'HTTP {response.status_code}'} {message}".strip())
        return answer


# --- what the merchant takes from an order ----------------------------------------------------------

PAY_PER_USE = frozenset({"ON_DEMAND", "ON_DEMAND_PKG"})
"""The ``chargingMode`` values of pay-per-use lines (U30), the ones usage is pushed for (§4.1-e)."""


@dataclass(frozen=True)
class OrderDetails:
    """What the merchant keeps of one order line, as Querying an Order told it (§8.1)."""

    customer_id: str | None
    product_id: str | None
    sku_code: str | None
    expire_time: str | None
    trial: bool
    charging_mode: str | None

    @property
    def pay_per_use(self) -> bool:
        return self.charging_mode in PAY_PER_USE

    def as_fields(self) -> dict[str, str]:
        """The details as the store's column names know them from a call's fields."""
        fields = {
            "customerId": self.customer_id,
            "productId": self.product_id,
            "skuCode": self.sku_code,
            "expireTime": self.expire_time,
        }
        kept = {name: value for name, value in fields.items() if isinstance(value, str) and value}
        return kept | ({"trialFlag": "1"} if self.trial else {})


def order_details(order_info: Mapping[str, Any], order_line_id: str | None) -> OrderDetails:
    """The details of line ``order_line_id`` (the first line when None) of an ``orderInfo``.

    Numbers and strings are both accepted where the answer may carry either (A7)."""
    lines = [line for line in order_info.get("orderLine") or [] if isinstance(line, dict)]
    line = next((item for item in lines if item.get("orderLineId") == order_line_id), None)
    if line is None:
        if order_line_id is not None and lines:
            raise MarketError(f"the order has no line {order_line_id!r}")
        line = lines[0] if lines else {}
    products = [item for item in line.get("productInfo") or [] if isinstance(item, dict)]
    product = products[0] if products else {}
    buyer_info = order_info.get("buyerInfo")
    buyer: Mapping[str, Any] = buyer_info if isinstance(buyer_info, dict) else {}
    return OrderDetails(
        customer_id=_text(buyer.get("customerId")),
        product_id=_text(product.get("productId")),
        sku_code=_text(product.get("skuCode")),
        expire_time=_text(line.get("expireTime")),
        trial=str(line.get("trialFlag", "0")) == "1",
        charging_mode=_text(line.get("chargingMode")),
    )


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def usage_record(instance_id: str, now: datetime, value: str = "1") -> dict[str, str]:
    """One usage record (§8.3) for the hour before ``now``: begin and end on the hour, UTC."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    begin = end - timedelta(hours=1)
    return {
        "instance_id": instance_id,
        "record_time": now.astimezone(UTC).strftime(USAGE_TIME_FORMAT),
        "begin_time": begin.strftime(USAGE_TIME_FORMAT),
        "end_time": end.strftime(USAGE_TIME_FORMAT),
        "usage_value": value,
        "metering_sn": f"koosim-ref-{secrets.token_hex(12)}",  # unique per record (§8.3)
    }
