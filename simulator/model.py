"""Orders as the marketplace sees them, and the lifecycle it expects an instance to follow.

The simulator plays the marketplace, so it knows what every instance *should* be: the
:class:`Lifecycle` answers "what resultCode must the merchant give to this activity now?",
which the checks and the explorer compare with what the merchant actually said.
"""

from __future__ import annotations

import random
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from simulator.protocol import ResultCode

EXPIRE_TIME_FORMAT = "%Y%m%d%H%M%S"


class InstanceState(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    RELEASED = "RELEASED"


@dataclass(frozen=True)
class Order:
    """One order line the marketplace asks a merchant to provision."""

    order_id: str
    order_line_id: str
    customer_id: str
    product_id: str = "OFFI000000000001"
    sku_code: str = "sku-basic-0001"
    customer_name: str = "测试客户"
    trial: bool = False
    test: bool = False
    expire_time: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def new_instance_fields(self, business_id: str) -> dict[str, str | None]:
        fields = {
            "activity": "newInstance",
            "businessId": business_id,
            "orderId": self.order_id,
            "orderLineId": self.order_line_id,
            "customerId": self.customer_id,
            "customerName": self.customer_name,
            "productId": self.product_id,
            "skuCode": self.sku_code,
            "chargingMode": "0",
            "periodType": "month",
            "periodNumber": "1",
            "expireTime": self.expire_time,
            # The marketplace sends null for empty optional fields; the signature drops them.
            "saasExtendParams": None,
        }
        if self.trial:
            fields["trialFlag"] = "1"
        if self.test:
            fields["testFlag"] = "1"
        return fields | self.extra

    def license_fields(self, business_id: str) -> dict[str, str]:
        return {
            "activity": "getLicense",
            "businessId": business_id,
            "orderId": self.order_id,
            "orderLineId": self.order_line_id,
            "customerId": self.customer_id,
            "productId": self.product_id,
            "skuCode": self.sku_code,
            "expireTime": self.expire_time,
        }

    def refresh_fields(self, instance_id: str, expire_time: str, scene: str = "RENEWAL") -> dict[str, str]:
        return {
            "activity": "refreshInstance",
            "instanceId": instance_id,
            "orderId": self.order_id,
            "orderLineId": self.order_line_id,
            "expireTime": expire_time,
            "scene": scene,
        }

    def upgrade_fields(self, instance_id: str, sku_code: str = "sku-pro-0002") -> dict[str, str]:
        return {
            "activity": "upgrade",
            "instanceId": instance_id,
            "orderId": self.order_id,
            "orderLineId": f"{self.order_id}-000002",
            "productId": self.product_id,
            "skuCode": sku_code,
            "amount": "199.00",
            "diffAmount": "100.00",
        }


def status_fields(instance_id: str, status: str) -> dict[str, str]:
    return {"activity": "updateInstanceStatus", "instanceId": instance_id, "status": status}


def release_fields(instance_id: str) -> dict[str, str]:
    return {"activity": "releaseInstance", "instanceId": instance_id}


def query_fields(*instance_ids: str) -> dict[str, str]:
    return {"activity": "queryInstance", "instanceId": ",".join(instance_ids)}


def change_check_fields(instance_id: str, product_id: str, sku_code: str) -> dict[str, object]:
    return {
        "activity": "changeInstanceCheck",
        "instanceId": instance_id,
        "productInfo": {"productId": product_id, "skuCode": sku_code},
    }


def fresh_seed() -> int:
    """A new seed per run: a merchant keeps its orders, so a rerun must not reuse order ids."""
    return secrets.randbelow(10**9)


class OrderFactory:
    """Deterministic order ids and business ids from a seed, shaped like the marketplace's."""

    def __init__(self, seed: int | str = 0, now: datetime | None = None) -> None:
        self._random = random.Random(str(seed))
        self._now = now or datetime.now(UTC)

    def order(self, **overrides: object) -> Order:
        letters = "".join(self._random.choices(string.ascii_uppercase, k=5))
        order_id = f"CS{self._random.randrange(10**9, 10**10)}{letters}"
        defaults: dict[str, object] = {
            "order_id": order_id,
            "order_line_id": f"{order_id}-000001",
            "customer_id": f"{self._random.getrandbits(128):032x}",
            "expire_time": self.expire_time(days=30),
        }
        return Order(**(defaults | overrides))  # type: ignore[arg-type]

    def business_id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def expire_time(self, days: int) -> str:
        return (self._now + timedelta(days=days)).strftime(EXPIRE_TIME_FORMAT)

    def unknown_instance_id(self) -> str:
        return f"koosim-unknown-{self._random.getrandbits(64):016x}"


# activity -> (states in which the merchant must succeed, resulting state)
_TRANSITIONS: dict[str, tuple[frozenset[InstanceState], InstanceState | None]] = {
    "refreshInstance": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "upgrade": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "changeInstanceCheck": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "FREEZE": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.FROZEN),
    "UNFREEZE": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.ACTIVE),
    "releaseInstance": (frozenset(InstanceState), InstanceState.RELEASED),
}


def transition_key(fields: dict[str, str]) -> str:
    """The lifecycle event a call is: the status for updateInstanceStatus, else the activity."""
    if fields.get("activity") == "updateInstanceStatus":
        return fields.get("status", "")
    return fields.get("activity", "")


class Lifecycle:
    """The state the marketplace believes each instance is in, and what it expects next."""

    def __init__(self) -> None:
        self.states: dict[str, InstanceState] = {}

    def created(self, instance_id: str) -> None:
        self.states.setdefault(instance_id, InstanceState.ACTIVE)

    def expected_code(self, fields: dict[str, str]) -> ResultCode:
        """What the merchant must answer to ``fields`` given what happened so far."""
        allowed, _ = _TRANSITIONS[transition_key(fields)]
        state = self.states.get(fields.get("instanceId", ""))
        return ResultCode.SUCCESS if state in allowed else ResultCode.INSTANCE_NOT_FOUND

    def apply(self, fields: dict[str, str]) -> None:
        """Record that the merchant accepted ``fields``."""
        _, new_state = _TRANSITIONS[transition_key(fields)]
        if new_state is not None:
            self.states[fields["instanceId"]] = new_state

    def live(self) -> list[str]:
        return [iid for iid, state in self.states.items() if state is not InstanceState.RELEASED]
