"""The reference merchant when it talks back: Querying an Order, async provisioning, usage push.

:class:`ConversingMerchant` is the :class:`~simulator.reference.activities.Merchant` with the
marketplace's side of the conversation switched on (docs/protocol.md §4.1, §8, §10.2):

- with a :class:`~simulator.reference.market.MarketClient` (``koosim merchant --market-url``) a
  newInstance is answered only after Querying an Order (§8.1) told the merchant what was bought:
  customer, product, SKU, expiry, trial (asked once per order line: resends reuse the answer).
  Without that answer the order is not provisioned: the
  merchant answers ``000005`` and the marketplace asks again later (§3.2, §10.1). An upgrade
  learns the new specification the same way (§4.3). A pay-per-use line gets its usage pushed
  (§8.3, §4.1-e) once the instance exists.
- with ``async_provisioning`` (``--async-provisioning``) it answers newInstance at once with the
  instanceId (§4.1-c) and finishes provisioning in the background; here "the background" is
  the first queryInstance that asks for the instance: that poll leaves it out of ``info`` (not
  ready yet), the next one lists it (§10.2). A real merchant keeps the job's state in its
  database; this model keeps it in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulator.protocol import ResultCode
from simulator.reference.activities import Answer, Merchant, answer
from simulator.reference.market import MarketClient, MarketError, OrderDetails, order_details, usage_record


@dataclass
class ConversingMerchant(Merchant):
    """The reference merchant that asks the marketplace and may provision asynchronously."""

    market: MarketClient | None = None
    async_provisioning: bool = False
    usage_errors: list[str] = field(default_factory=list)
    """Why usage pushes failed (the instance stands; the next hour's push carries the usage)."""
    _provisioning: set[str] = field(default_factory=set, repr=False)
    _created: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _orders: dict[tuple[str, str | None], OrderDetails] = field(default_factory=dict, repr=False)
    _lookup: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def order(self, order_id: str, order_line_id: str | None) -> OrderDetails:
        """What the marketplace says of an order line, asked once: a paid order does not change,
        so resends and concurrent copies of one call reuse the first answer (a failed lookup is
        asked again). Raises :class:`MarketError`."""
        assert self.market is not None
        key = (order_id, order_line_id)
        with self._lookup:  # one lookup at a time: concurrent copies wait for the first one's answer
            if key not in self._orders:
                info = self.market.query_order(order_id, order_line_id)
                self._orders[key] = order_details(info, order_line_id)
            return self._orders[key]

    def new_instance(self, fields: dict[str, str]) -> Answer:
        details = None
        if self.market is not None:
            try:
                details = self.order(fields["orderId"], fields.get("orderLineId"))
            except MarketError as exc:  # nothing is provisioned for an order the merchant cannot read
                return answer(ResultCode.INTERNAL_ERROR, f"could not read the order: {exc}")
            fields = details.as_fields() | fields
        result = super().new_instance(fields)
        instance_id = result.get("instanceId")
        if not isinstance(instance_id, str):
            return result
        with self._lock:
            first = instance_id not in self._created
            self._created.add(instance_id)
            if first and self.async_provisioning:
                self._provisioning.add(instance_id)
        if first and details is not None and details.pay_per_use:
            self._push_usage(instance_id, fields)
        return result

    def upgrade_instance(self, fields: dict[str, str]) -> Answer:
        """The upgrade order says what the instance becomes (§4.3, §8.1)."""
        if self.market is not None and "productId" not in fields:
            try:
                details = self.order(fields["orderId"], fields.get("orderLineId"))
            except MarketError as exc:
                return answer(ResultCode.INTERNAL_ERROR, f"could not read the upgrade order: {exc}")
            product = {"productId": details.product_id, "skuCode": details.sku_code}
            fields = {name: value for name, value in product.items() if value} | fields
        return super().upgrade_instance(fields)

    def query_instance(self, fields: dict[str, str]) -> Answer:
        result = super().query_instance(fields)
        info = result.get("info")
        if not self.async_provisioning or not isinstance(info, list):
            return result
        asked = set(fields["instanceId"].split(","))
        with self._lock:
            not_ready = asked & self._provisioning
            self._provisioning -= not_ready  # the job finishes now: the next poll lists it
        result["info"] = [item for item in info if item.get("instanceId") not in not_ready]
        return result

    def _push_usage(self, instance_id: str, fields: dict[str, str]) -> None:
        """Report the instance's first hour of use (§8.3) under the instanceId it was given."""
        assert self.market is not None
        try:
            self.market.push_usage([usage_record(instance_id, datetime.now(UTC))])
        except MarketError as exc:
            self.usage_errors.append(str(exc))
