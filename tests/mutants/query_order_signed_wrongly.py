"""Querying an Order is signed over the path alone: the gateway refuses every lookup.

The bug: the merchant's own AK/SK signer builds the canonical request before the query string is
added, so it signs ``GET /…/order/query`` with an empty canonical query while the request goes
out with ``?orderId=…&orderLineId=…``. The API gateway recomputes the signature over what it
received and refuses the call with APIGW.0303 (docs/protocol.md §2.5); the merchant never learns
what was bought, and every newInstance fails.

Why it is tempting: hand-written signers are tested against a POST with a body and no query;
the GET's parameters are "just the URL".

How the reference merchant avoids it: it does not sign by hand. ``reference/market.py`` signs with
Huawei's own signer (``huaweicloudsdkcore``, through ``simulator.protocol.apig.sign``), which
builds the canonical query from the same parameters it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Flask

from simulator.openapi import QUERY_ORDER_PATH
from simulator.protocol import apig
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Merchant
from simulator.reference.conversation import ConversingMerchant
from simulator.reference.market import JSON_TYPE, MarketClient, MarketError

from .base import MERCHANT, mutant

UNCONFIGURED = "http://127.0.0.1:9"
"""Where the lookups go when no open API was given (nothing listens on the discard port)."""


@dataclass
class PathOnlySigner(MarketClient):
    def query_order(self, order_id: str, order_line_id: str | None = None) -> dict[str, object]:
        path_only = self._url(QUERY_ORDER_PATH)
        signed = apig.sign(
            "GET", path_only, self.access_key, self.secret_key, headers={"Content-Type": JSON_TYPE}
        )
        query = urlencode({"orderId": order_id} | ({"orderLineId": order_line_id} if order_line_id else {}))
        body = self._call(
            "GET", f"{signed.url}?{query}", signed.headers, b"", "Querying an Order"
        )  # the defect
        info = body.get("orderInfo")
        if not isinstance(info, dict):
            raise MarketError("Querying an Order succeeded without an orderInfo object")
        return info


def build(config: MerchantConfig) -> Flask:
    """The gallery points it at koosim's open API (``config.market_url``); built without one it
    still answers, and its lookups fail like any unreachable marketplace."""
    app = create_app(config)
    current: Merchant = app.extensions[MERCHANT]
    app.extensions[MERCHANT] = ConversingMerchant(
        store=current.store,
        access_key=current.access_key,
        base_url=current.base_url,
        encrypt_type=current.encrypt_type,
        market=PathOnlySigner(
            config.market_url or UNCONFIGURED, config.market_ak, config.market_sk, config.access_key
        ),
    )
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="conversation.query-order",
    evidence="not authenticated",
    rule="§2.5, §8.1",
    market=True,
)
