"""Orders as the marketplace sees them, and the lifecycle it expects an instance to follow.

The simulator plays the marketplace, so it knows what every instance *should* be: the
:class:`Lifecycle` answers "what resultCode must the merchant give to this activity now?",
which the checks and the explorer compare with what the merchant actually said.
"""

from __future__ import annotations

import json
import random
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from simulator.protocol import ResultCode

EXPIRE_TIME_FORMAT = "%Y%m%d%H%M%S"
LICENSE_ASYNC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S z"
"""getLicenseAsync's ``effectiveTime`` / ``expireTime``: UTC in the page's example style,
``2023-10-27 10:30:15 z`` (docs/protocol.md §6.2, A33), the zone letter as the example prints it."""


def license_async_time(moment: datetime | str) -> str:
    """A time in getLicenseAsync's style (§6.2, A33), from a datetime or a V2 ``expireTime``."""
    if isinstance(moment, str):
        moment = datetime.strptime(moment, EXPIRE_TIME_FORMAT).replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(LICENSE_ASYNC_TIME_FORMAT)


ID_MAX = 64
"""The published maximum length of orderId, orderLineId and instanceId (docs/protocol.md §4)."""


def line_of(order_id: str) -> str:
    """The first line of an order, as the MOCK orders number theirs (``<orderId>-000001``, §8.2),
    kept within 64 characters."""
    return f"{order_id[: ID_MAX - 7]}-000001"


_FOLLOW_UP_SUFFIX = {
    "TRIAL_TO_FORMAL": "F",
    "RENEWAL": "R",
    "UNSUBSCRIBE_RENEWAL_PERIOD": "R",  # the cancelled renewal is the renewal order
    "UPGRADE": "U",
}


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

    def new_instance_fields(self, business_id: str) -> dict[str, str]:
        """The V2 newInstance body: exactly the five fields of docs/protocol.md §4.1 (A6).

        Customer, product, SKU and period are not in the call: the merchant learns them from
        Querying an Order (§8.1), which koosim answers from this order (``openapi.Sale``).
        """
        fields = {
            "activity": "newInstance",
            "businessId": business_id,
            "orderId": self.order_id,
            "orderLineId": self.order_line_id,
        }
        if self.test:
            fields["testFlag"] = "1"
        return fields | self.extra

    def license_fields(self, business_id: str) -> dict[str, str]:
        """getLicense per docs/protocol.md §6.1: the rows the License page publishes [S75]
        (``customerId``, ``customerName``, ``businessId`` new on every copy, ``orderId`` the
        idempotency key, ``skuCode``), plus ``productId`` and ``expireTime`` from the rows not read
        (U24; a merchant ignores members it does not know, U46). No ``orderLineId``: not a row read.
        """
        fields = {
            "activity": "getLicense",
            "customerId": self.customer_id,
            "customerName": self.customer_name,
            "businessId": business_id,
            "orderId": self.order_id,
            "skuCode": self.sku_code,
            "productId": self.product_id,
            "expireTime": self.expire_time,
        }
        if self.test:
            fields["testFlag"] = "1"
        return fields

    def license_instance_id(self) -> str:
        """The ``instanceId`` getLicenseAsync names (§6.2: the business resource instance ID, M,
        at most 64): koosim derives it from the order, so every request of one order names one."""
        return f"LIC-{self.order_id}"[:ID_MAX]

    def license_async_fields(
        self,
        event_id: str,
        effective_time: str,
        *,
        period: bool = True,
        device_fingerprint: str | None = None,
    ) -> dict[str, str]:
        """getLicenseAsync exactly as the table of docs/protocol.md §6.2 lists it [S52]:
        ``activity``, ``instanceId``, ``effectiveTime`` (the page's style, A33), ``expireTime``
        (optional, mandatory for yearly/monthly: sent when ``period``), ``eventId`` (the
        idempotency key with ``deviceFingerprint``), ``deviceFingerprint`` when given and
        ``testFlag`` for a test order. Nothing else: the table has no order or customer row."""
        fields = {
            "activity": "getLicenseAsync",
            "instanceId": self.license_instance_id(),
            "effectiveTime": effective_time,
        }
        if period:
            fields["expireTime"] = license_async_time(self.expire_time)
        fields["eventId"] = event_id
        if device_fingerprint is not None:
            fields["deviceFingerprint"] = device_fingerprint
        fields["testFlag"] = "1" if self.test else "0"
        return fields

    def license_change_fields(self, activity: str, license_code: str) -> dict[str, str]:
        """refreshLicense / expireLicense / releaseLicense (§6.1, U24): the order and the licence
        code getLicense answered; refreshLicense also the new ``expireTime`` (set by the caller)."""
        return {"activity": activity, "orderId": self.order_id, "license": license_code}

    def follow_up_order_id(self, scene: str) -> str:
        """The order a follow-up call names (§4.2, §4.3): never the purchase order itself.

        TRIAL_TO_FORMAL names the commercial order, RENEWAL the renewal order,
        UNSUBSCRIBE_RENEWAL_PERIOD the renewal order being cancelled (the same renewal order),
        UPGRADE the upgrade order. Derived from the purchase order so a run stays reproducible.
        """
        suffix = _FOLLOW_UP_SUFFIX[scene]
        order_id = self.order_id[: ID_MAX - 1] + suffix  # IDs are at most 64 characters (§4.2)
        return order_id if order_id != self.order_id else self.order_id[: ID_MAX - 1] + suffix.lower()

    def refresh_fields(self, instance_id: str, expire_time: str, scene: str = "RENEWAL") -> dict[str, str]:
        """refreshInstance per §4.2: the scene's own order, the instance named by instanceId."""
        order_id = self.follow_up_order_id(scene)
        fields = {
            "activity": "refreshInstance",
            "scene": scene,
            "orderId": order_id,
            "orderLineId": line_of(order_id),
            "instanceId": instance_id,
            "expireTime": expire_time,
        }
        if scene == "TRIAL_TO_FORMAL":
            fields["productId"] = self.product_id
        return fields

    def upgrade_fields(self, instance_id: str) -> dict[str, str]:
        """upgradeInstance per §4.3: the upgrade order; the new product is learnt from §8.1."""
        order_id = self.follow_up_order_id("UPGRADE")
        return {
            "activity": "upgradeInstance",
            "instanceId": instance_id,
            "orderId": order_id,
            "orderLineId": line_of(order_id),
        }


def status_fields(instance_id: str, status: str) -> dict[str, str]:
    """V2 updateInstanceStatus (§4.4): ``FREEZE`` or ``UNFREEZE``. No V1 activity (§5.1, U21)."""
    return {"activity": "updateInstanceStatus", "instanceId": instance_id, "status": status}


def expire_fields(instance_id: str, subscription_order: str) -> dict[str, str]:
    """V1 expireInstance (docs/protocol.md §5.4): the instance and the **subscription** order.

    A V1 activity only; the V2 expiry is updateInstanceStatus FREEZE (§4.4)."""
    return {"activity": "expireInstance", "instanceId": instance_id, "orderId": subscription_order}


V1_STATUSES = ("FREEZE", "NORMAL")
"""V1 instanceStatus values (docs/protocol.md §5.6): frozen, unfrozen."""


def instance_status_fields(instance_id: str, status: str) -> dict[str, str]:
    """V1 instanceStatus (docs/protocol.md §5.6), pay-per-use: ``FREEZE`` or ``NORMAL``."""
    return {"activity": "instanceStatus", "instanceId": instance_id, "instanceStatus": status}


def release_fields(instance_id: str, order_id: str | None = None) -> dict[str, str]:
    """releaseInstance per §4.6: ``orderId`` only on release by unsubscription (the cancelled order, A11)."""
    fields = {"activity": "releaseInstance", "instanceId": instance_id}
    if order_id is not None:
        fields["orderId"] = order_id
        fields["orderLineId"] = line_of(order_id)
    return fields


def release_call(protocol: str, instance_id: str, subscription_order: str) -> dict[str, str]:
    """The release the marketplace sends after expiry, per generation: V1 names the
    **subscription** order, mandatory (§5.5, A34); V2 names no order outside unsubscription
    (§4.6, A11)."""
    if protocol == "v1":
        return {"activity": "releaseInstance", "instanceId": instance_id, "orderId": subscription_order}
    return release_fields(instance_id)


QUERY_INSTANCE_MAX = 100
"""queryInstance's instanceId: at most 100 characters, IDs separated by ',' (docs/protocol.md §4.5, A9)."""


def within_query_limit(instance_ids: list[str]) -> list[str]:
    """The first of ``instance_ids`` that fit one queryInstance's 100 characters (§4.5, A9)."""
    kept: list[str] = []
    for instance_id in instance_ids:
        if len(",".join([*kept, instance_id])) > QUERY_INSTANCE_MAX:
            break
        kept.append(instance_id)
    return kept


def query_fields(*instance_ids: str) -> dict[str, str]:
    return {"activity": "queryInstance", "instanceId": ",".join(instance_ids)}


def change_check_fields(instance_id: str, product_id: str, sku_code: str) -> dict[str, object]:
    return {
        "activity": "changeInstanceCheck",
        "instanceId": instance_id,
        "productInfo": {"productId": product_id, "skuCode": sku_code},
    }


UPGRADED_SKU = "sku-pro-0002"
"""The specification koosim's upgrade orders buy (what Querying an Order says of an upgrade order)."""

V1_ACTIVITY = {"upgradeInstance": "upgrade"}
"""Where the V1 activity name differs from V2's (docs/protocol.md §5.1)."""
_NOT_ON_V1 = frozenset({"orderLineId", "scene"})
"""Members no V1 table read has: orderLineId (§5.1, U22) and the refresh ``scene`` (§5.3)."""


def v1_fields(fields: Mapping[str, Any], product_id: str = Order.product_id) -> dict[str, Any]:
    """A call as V1 carries it (docs/protocol.md §5): V1's activity name, without the members
    V1's tables do not have; V1's ``upgrade`` carries the new productId and skuCode (§5.7, M).

    V1's own activities (expireInstance §5.4, instanceStatus §5.6) are built by
    :func:`expire_fields` and :func:`instance_status_fields`; a profile never sends V2's
    updateInstanceStatus on V1 (§5.1, U21).
    """
    activity = str(fields.get("activity", ""))
    call = {name: value for name, value in fields.items() if name not in _NOT_ON_V1}
    if activity in V1_ACTIVITY:
        call["activity"] = V1_ACTIVITY[activity]
    if activity == "upgradeInstance":
        call = {"productId": product_id, "skuCode": UPGRADED_SKU} | call
    return call


KIT_ZONE = timezone(timedelta(hours=8))
"""Kit times are UTC+8 by default (docs/protocol.md §7.1, A32)."""


def kit_time(moment: datetime) -> str:
    """A Kit ``timeStamp`` / ``currentSyncTime``: 17 digits, yyyyMMddHHmmssSSS, UTC+8 (§7.1)."""
    return moment.astimezone(KIT_ZONE).strftime("%Y%m%d%H%M%S%f")[:-3]


def kit_envelope(call: str, body: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    """The members every Kit call carries (docs/protocol.md §7.1): the mandatory ``testFlag``
    (Integer, 0 = production data) and ``timeStamp``; authSync also ``currentSyncTime`` (§7.4).
    What the caller set wins."""
    envelope: dict[str, Any] = {"testFlag": 0, "timeStamp": kit_time(moment)}
    if call == "authSync":
        envelope["currentSyncTime"] = kit_time(moment)
    return envelope | dict(body)


def kit_user(
    user_name: str, name: str | None = None, role: str = "user", enable: str = "true"
) -> dict[str, str]:
    """An authSync user entry with the page's mandatory members (docs/protocol.md §7.4)."""
    return {
        "userName": user_name,
        "name": name or user_name,
        "orgCode": KIT_ORGS[0]["orgCode"],
        "role": role,
        "enable": enable,
    }


KIT_ORGS = (
    {"orgCode": "org-001", "name": "研发部", "parentCode": ""},
    {"orgCode": "org-002", "name": "测试组", "parentCode": "org-001"},
)
"""koosim's departments: a top-level one (empty parentCode, §7.5) and one below it."""


def org_info(orgs: Iterable[Mapping[str, str]] = KIT_ORGS) -> str:
    """allOrgSync's ``orgInfo``: a JSON *string* holding a flat array (docs/protocol.md §7.6)."""
    return json.dumps(list(orgs), ensure_ascii=False, separators=(",", ":"))


def single_org_fields(
    scope: Mapping[str, str], flag: int, org: Mapping[str, str] = KIT_ORGS[0]
) -> dict[str, Any]:
    """singleOrgSync per docs/protocol.md §7.5: ``orgName`` (not ``name``), ``parentCode``."""
    return {
        **scope,
        "orgCode": org["orgCode"],
        "orgName": org["name"],
        "parentCode": org["parentCode"],
        "flag": flag,
    }


TENANT_DOMAIN = "https://acme.tenantaccount.example"
"""tenantSync's domainName: a full URL, as the page's example (docs/protocol.md §7.2)."""


def fresh_seed() -> int:
    """A new seed per run: a merchant keeps its orders, so a rerun must not reuse order ids."""
    return secrets.randbelow(10**9)


_ORDER_WATCHERS: list[Callable[[Order], None]] = []
_WATCHERS_LOCK = threading.Lock()


@contextmanager
def watching_orders(watcher: Callable[[Order], None]) -> Iterator[None]:
    """Inside the block, ``watcher`` sees every order the marketplace sells (every
    :meth:`OrderFactory.order`, every :func:`announce`): the open API's order book
    (``openapi.OrderBook``) answers Querying an Order for them."""
    with _WATCHERS_LOCK:
        _ORDER_WATCHERS.append(watcher)
    try:
        yield
    finally:
        with _WATCHERS_LOCK:
            _ORDER_WATCHERS.remove(watcher)


def announce(order: Order) -> None:
    """Tell the watchers koosim is about to sell ``order`` (one made other than by the factory)."""
    with _WATCHERS_LOCK:
        watchers = list(_ORDER_WATCHERS)
    for watcher in watchers:
        watcher(order)


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
        order = Order(**(defaults | overrides))  # type: ignore[arg-type]
        announce(order)
        return order

    def business_id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def expire_time(self, days: int) -> str:
        return (self._now + timedelta(days=days)).strftime(EXPIRE_TIME_FORMAT)

    def event_id(self) -> str:
        """A getLicenseAsync ``eventId`` (§6.2: the marketplace's serial number, at most 64)."""
        return f"EV{self._random.getrandbits(96):024x}"

    def device_fingerprint(self) -> str:
        """A getLicenseAsync ``deviceFingerprint`` (§6.2: optional, at most 1024)."""
        return f"FP-{self._random.getrandbits(128):032x}"

    def license_effective_time(self) -> str:
        """getLicenseAsync's ``effectiveTime``: now, in the page's style (§6.2, A33)."""
        return license_async_time(self._now)

    def unknown_instance_id(self) -> str:
        return f"koosim-unknown-{self._random.getrandbits(64):016x}"


# activity -> (states in which the merchant must succeed, resulting state)
_TRANSITIONS: dict[str, tuple[frozenset[InstanceState], InstanceState | None]] = {
    "refreshInstance": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "upgradeInstance": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "changeInstanceCheck": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), None),
    "FREEZE": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.FROZEN),
    "UNFREEZE": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.ACTIVE),
    "releaseInstance": (frozenset(InstanceState), InstanceState.RELEASED),
    # V1 (§5.4, §5.6): expireInstance freezes; instanceStatus FREEZE / NORMAL freezes / unfreezes.
    "expireInstance": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.FROZEN),
    "NORMAL": (frozenset({InstanceState.ACTIVE, InstanceState.FROZEN}), InstanceState.ACTIVE),
}


def transition_key(fields: dict[str, str]) -> str:
    """The lifecycle event a call is: the status for updateInstanceStatus (V2) and instanceStatus
    (V1), else the activity."""
    if fields.get("activity") == "updateInstanceStatus":
        return fields.get("status", "")
    if fields.get("activity") == "instanceStatus":
        return fields.get("instanceStatus", "")
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
