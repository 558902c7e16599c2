"""The conversation goes both ways (docs/protocol.md §4.1, §8): what the merchant learns by calling
the marketplace back, and what the marketplace asks again after the first answer.

- ``conversation.order-details``: the V2 newInstance names the order only (five fields, §4.1,
  A6); the customer, product, SKU and period come from Querying an Order (§8.1). A merchant that
  refuses the published call but accepts one carrying those details reads them from the body.
- ``conversation.async-provisioning``: a merchant may answer at once and provision later
  (§4.1-c); the marketplace then keeps calling queryInstance until the instance information
  comes back (§10.2). Cadence and give-up point are ASSUMPTION U43: :data:`POLLING`.
- ``conversation.resource-details``: the buyer's "View Resource Details" asks the merchant again
  about an existing order (§5.1, §4.5, A23): V1 re-calls newInstance (same instance, nothing
  changed: error); V2 calls queryInstance synchronously (error), and a V2 newInstance re-call
  is ASSUMPTION U13 (warning). Asked for a live, a renewed, a frozen and an upgraded instance.
- ``conversation.query-order``: the merchant may call Querying an Order or not; every call it
  makes while koosim drives it must pass the API gateway's AK/SK check (§2.5) and carry the
  published parameters (§8.1). Seen through the open API's log (``Context.inbound``).
- ``conversation.usage-push``: pay-per-use usage records name instances the merchant created
  (§8.3); the open API judges the shape and signature, this check the reference.
- ``conversation.debug-orders`` (run only when asked, ``koosim verify --debug-orders``): the
  console's 接口调试 with the MOCK orders and testFlag=1 (§8.2, §10.4).

The polling helpers live in :mod:`simulator.checks.polling`.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from simulator.checks.base import Context, Provisioned, Severity, check, describe
from simulator.checks.polling import PENDING_CODE, pending, poll_until_listed, still_provisioning
from simulator.checks.polling import POLLING as POLLING  # re-exported: engine/explore.py reads it here
from simulator.checks.polling import listed_ids as listed_ids  # re-exported, as POLLING
from simulator.model import query_fields, status_fields
from simulator.openapi import MOCK_ORDERS, ChargingMode, InboundCall, OrderType
from simulator.protocol import ResultCode
from simulator.protocol.mkt import MktCode
from simulator.protocol.profiles import USAGE_PUSH
from simulator.transport import Exchange

# --- conversation.order-details (§4.1, A6, §8.1) ------------------------------------------------

READS_FROM_THE_BODY = (
    "reads order details from the newInstance body; the marketplace sends only five fields, "
    "call Querying an Order"
)
"""The finding's words (issue 16's done-when)."""


def _with_order_details(provisioned_fields: Mapping[str, str], details: Mapping[str, str]) -> dict[str, str]:
    return {**provisioned_fields, **details}


@check("conversation.order-details", rule="§4.1, A6, §8.1", protocols=("v2",))
def order_details(ctx: Context) -> None:
    """The published newInstance (five fields) is enough: the rest comes from Querying an Order.

    The call carries activity, orderId, orderLineId, businessId and testFlag, nothing else
    (§4.1). When the merchant refuses it, koosim sends the same order again with the customer,
    product and SKU in the body, as the signing page's example has them (A6): accepting that
    one shows the merchant reads the order from the body instead of asking the marketplace.
    When the open API's gateway refused the merchant's Querying-an-Order call meanwhile for a
    reason no page states (ASSUMPTION U40), a refused newInstance is a warning.
    """
    order = ctx.orders.order()
    mark = ctx.inbound_mark()
    published = ctx.send(order.new_instance_fields(ctx.orders.business_id()), "newInstance (five fields)")
    if published.result_code == ResultCode.SUCCESS.value:
        return
    if refused := ctx.unpublished_gateway_refusal(mark):
        ctx.warn(
            f"the published newInstance (five fields, §4.1) got {describe(published)} after the open "
            "API's gateway refused the merchant's Querying-an-Order call for a reason no page states "
            f"({'; '.join(refused.problems) or refused.code}): that refusal is ASSUMPTION U40, so "
            "this is a warning",
            published,
        )
        return
    details = {"customerId": order.customer_id, "productId": order.product_id, "skuCode": order.sku_code}
    fuller = _with_order_details(order.new_instance_fields(ctx.orders.business_id()), details)
    probe = ctx.send(fuller, "newInstance with customerId, productId, skuCode in the body (not published)")
    if probe.result_code == ResultCode.SUCCESS.value:
        ctx.fail(
            f"{READS_FROM_THE_BODY} (§4.1, §8.1): the published call got {describe(published)}; "
            "with customerId, productId and skuCode added it succeeded",
            published,
            probe,
        )
        return
    ctx.fail(
        f"the published newInstance (five fields, §4.1) must be accepted: got {describe(published)}",
        published,
    )


# --- conversation.async-provisioning (§4.1-c, §10.2, U43) ------------------------------------------


@check(
    "conversation.async-provisioning",
    rule="§4.1, §10.2, U43",
    severity=Severity.WARNING,
    needs=("newInstance", "queryInstance"),
    protocols=("v2",),
)
def async_provisioning(ctx: Context) -> None:
    """An instance provisioned asynchronously is reported by queryInstance in the end.

    A merchant may answer newInstance at once and provision afterwards (§4.1-c); the
    marketplace then calls queryInstance until the instance information comes back (§10.2).
    koosim polls on :data:`POLLING` (cadence and give-up point: ASSUMPTION U43) and judges the
    final answer: the instance listed, with the instanceId newInstance gave.
    """
    created = ctx.new_instance()
    polls = poll_until_listed(ctx, [created.instance_id], "queryInstance after newInstance")
    final = polls[-1]
    if final.result_code not in (ResultCode.SUCCESS.value, PENDING_CODE.value):
        ctx.fail(
            "queryInstance of an instance newInstance reported must succeed (or answer 000004 while "
            f"provisioning): got {describe(final)}",
            final,
        )
        return
    if pending(final, [created.instance_id]):
        ctx.fail(
            f"newInstance answered {created.instance_id!r}, and after {len(polls)} polls queryInstance "
            f"still does not report it: provisioning never completed ({POLLING.describe()})",
            created.exchange,
            *polls,
        )


# --- conversation.resource-details (§5.1, §4.5, A23, U13) -----------------------------------------


def _comparable(exchange: Exchange, instance_id: str) -> dict[str, Any] | None:
    """What queryInstance says of ``instance_id``, without the encrypted members (a merchant may
    encrypt the same secret with a fresh IV each time, §2.7)."""
    info = exchange.answer_field("info")
    for item in info if isinstance(info, list) else []:
        if isinstance(item, dict) and item.get("instanceId") == instance_id:
            app = item.get("appInfo")
            kept = (
                {k: v for k, v in app.items() if k not in ("userName", "password")}
                if isinstance(app, dict)
                else app
            )
            return {**item, "appInfo": kept}
    return None


def _states(ctx: Context, created: Provisioned) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """The instance states a buyer may open "View Resource Details" in, each with the calls that
    get the instance there from the state before; a state whose call the profile does not have
    (§1.2: V1 has no updateInstanceStatus, a one-time product no renewal) is left out."""
    order, instance_id = created.order, created.instance_id
    states: list[tuple[str, list[Mapping[str, Any]]]] = [("live", [])]
    renewal = order.refresh_fields(instance_id, ctx.orders.expire_time(days=60))
    if ctx.applies(renewal):
        states.append(("renewed", [renewal]))
    freeze = status_fields(instance_id, "FREEZE")
    frozen = ctx.applies(freeze)
    if frozen:
        states.append(("frozen", [freeze]))
    upgrade = order.upgrade_fields(instance_id)
    if ctx.applies(upgrade):
        states.append(("upgraded", [*([status_fields(instance_id, "UNFREEZE")] if frozen else []), upgrade]))
    return states


@check("conversation.resource-details", rule="§5.1, §4.5, A23")
def resource_details(ctx: Context) -> None:
    """ "View Resource Details" asks again: same instanceId, nothing changed.

    V1 re-calls newInstance for the existing order (§5.1 [S46]): for the live instance it must
    answer success with the same instanceId (error); for a renewed, frozen or upgraded one the
    re-call is ASSUMPTION U13 (warning). V2 calls queryInstance synchronously (§4.5, A23): it must list
    the instance (error); koosim also re-calls newInstance on V2 (ASSUMPTION U13, warning) and
    compares queryInstance before and after. Asked for a live, renewed, frozen and upgraded
    instance.
    """
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    v1 = ctx.target.protocol == "v1"
    can_query = ctx.applies(query_fields(instance_id))
    if can_query:
        polls = poll_until_listed(ctx, [instance_id], "queryInstance after newInstance")
        if still_provisioning(
            ctx, polls, [instance_id], "View Resource Details needs the instance provisioned"
        ):
            return
    for state, calls in _states(ctx, created):
        for call in calls:
            ctx.require(
                ctx.send(call, " ".join(str(call[k]) for k in ("activity", "status") if k in call)),
                ResultCode.SUCCESS,
                f"getting the instance {state}",
            )
        before = (
            ctx.send(query_fields(instance_id), f"queryInstance, {state} (View Resource Details)")
            if (can_query)
            else None
        )
        if before is not None and (
            before.result_code != ResultCode.SUCCESS.value or instance_id not in listed_ids(before)
        ):
            problem = f"View Resource Details on a {state} instance: queryInstance must list it (§4.5, A23)"
            if state == "frozen":  # no page says what queryInstance answers for a frozen instance
                ctx.warn(f"{problem}, got {describe(before)} (ASSUMPTION U13)", before)
            else:
                ctx.fail(f"{problem}, got {describe(before)}", before)
            continue
        recall = ctx.send(
            order.new_instance_fields(ctx.orders.business_id()), f"newInstance re-call, {state} instance"
        )
        # [S46] covers the existing order as bought (live); the re-call in the other states is U13
        report = ctx.fail if v1 and state == "live" else ctx.warn
        basis = "§5.1" if v1 and state == "live" else "ASSUMPTION U13"
        if recall.result_code != ResultCode.SUCCESS.value:
            report(
                f"View Resource Details re-calls newInstance for a {state} instance ({basis}): it must "
                f"succeed, got {describe(recall)}",
                recall,
            )
            continue
        answered = recall.answer_field("instanceId")
        if answered != instance_id:
            report(
                f"a newInstance re-call for a {state} instance changed the instanceId: {instance_id!r} "
                f"became {answered!r} ({basis}); the re-call must return the same instance",
                created.exchange,
                recall,
            )
            continue
        if before is None:
            continue
        after = ctx.send(query_fields(instance_id), f"queryInstance after the re-call, {state}")
        if _comparable(after, instance_id) != _comparable(before, instance_id):
            report(
                f"a newInstance re-call for a {state} instance changed what queryInstance reports "
                f"({basis}): the re-call must change nothing",
                before,
                after,
            )


# --- conversation.debug-orders (§8.2, §10.4) ------------------------------------------------------

DEBUG_BILLING = {
    "period": frozenset({ChargingMode.PERIOD}),
    "one-time": frozenset({ChargingMode.ONE_TIME}),
    "on-demand": frozenset({ChargingMode.ON_DEMAND, ChargingMode.ON_DEMAND_PKG}),
}
"""The MOCK purchase orders of each billing profile (§8.2): the ones the product is debugged with."""

FOLLOW_UP_MOCKS = {
    OrderType.RENEW: "MOCKMONTYRENEW",
    OrderType.TRIAL_TO_FORMAL: "MOCKMONTYTRIALTOFORMAL",
    OrderType.CHANGE: "MOCKMONTYCHANGE",
    OrderType.UNSUBSCRIBE: "MOCKMONTYUNSUBSCRIBE",
}


def _debug(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**fields, "testFlag": "1"}


def _mock_call(order_id: str, activity: str, **fields: str) -> dict[str, Any]:
    return _debug({"activity": activity, "orderId": order_id, "orderLineId": f"{order_id}-000001", **fields})


@check("conversation.debug-orders", rule="§8.2, §10.4", by_request=True)
def debug_orders(ctx: Context) -> None:
    """The seller console's 接口调试 with the MOCK orders: every debug case succeeds.

    Replays the console's debugging (§10.4) as ``koosim verify --debug-orders``: newInstance
    with each MOCK purchase order (§8.2) and testFlag=1, queryInstance of what it created, then
    on the product's own instance the renewal (MOCKMONTYRENEW), trial → commercial
    (MOCKMONTYTRIALTOFORMAL), freeze and unfreeze, upgrade (MOCKMONTYCHANGE) and release by
    unsubscription (MOCKMONTYUNSUBSCRIBE), each only where the profile has the interface (§1.2).
    The console fails a case whose answer is not 000000 or lacks instanceId (§10.4 D3, D4). The
    MOCK orders of the product's billing mode must succeed, and so must queryInstance of what
    they created; how the console treats another mode's order is not published, nor what the
    follow-up MOCK orders carry (U31): refusing one of those is a warning.
    """
    own_modes = DEBUG_BILLING[ctx.target.profile.billing]
    created: dict[str, str] = {}
    for order_id, mock in MOCK_ORDERS.items():
        if mock.order_type is not OrderType.NEW:
            continue
        fields = _mock_call(order_id, "newInstance", businessId=ctx.orders.business_id())
        exchange = ctx.send(fields, f"newInstance {order_id} (debug case)")
        instance_id = exchange.answer_field("instanceId")
        if exchange.result_code == ResultCode.SUCCESS.value and isinstance(instance_id, str) and instance_id:
            created[order_id] = instance_id
            continue
        problem = (
            f"the debug case newInstance with {order_id} ({mock.meaning}) must answer 000000 with an "
            f"instanceId (§10.4 D3, D4): got {describe(exchange)}"
        )
        if mock.charging_mode in own_modes:
            ctx.fail(problem, exchange)
        else:
            ctx.warn(f"{problem}; not this product's billing mode (ASSUMPTION U31)", exchange)
    for order_id, instance_id in created.items():
        if ctx.applies(query_fields(instance_id)):
            polls = poll_until_listed(
                ctx, [instance_id], f"queryInstance of {order_id}'s instance (debug case)"
            )
            if still_provisioning(
                ctx, polls, [instance_id], f"the debug case queryInstance of {order_id}'s instance"
            ):
                continue
            final = polls[-1]
            if final.result_code != ResultCode.SUCCESS.value:
                ctx.fail(
                    f"the debug case queryInstance must list {order_id}'s instance: got {describe(final)}",
                    final,
                )
    own = [
        created[order_id]
        for order_id, mock in MOCK_ORDERS.items()
        if order_id in created and mock.charging_mode in own_modes
    ]
    if not own:
        return
    instance_id = own[0]
    trial = created.get("MOCKPERIODDAYTRIAL")
    expire = ctx.orders.expire_time(days=365)
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "refreshInstance RENEWAL",
            _mock_call(
                FOLLOW_UP_MOCKS[OrderType.RENEW],
                "refreshInstance",
                scene="RENEWAL",
                instanceId=instance_id,
                expireTime=expire,
            ),
        ),
    ]
    if trial is not None and ctx.target.profile.billing == "period":
        steps.append(
            (
                "refreshInstance TRIAL_TO_FORMAL",
                _mock_call(
                    FOLLOW_UP_MOCKS[OrderType.TRIAL_TO_FORMAL],
                    "refreshInstance",
                    scene="TRIAL_TO_FORMAL",
                    instanceId=trial,
                    expireTime=expire,
                ),
            )
        )
    steps += [
        ("updateInstanceStatus FREEZE", _debug(status_fields(instance_id, "FREEZE"))),
        ("updateInstanceStatus UNFREEZE", _debug(status_fields(instance_id, "UNFREEZE"))),
        (
            "upgradeInstance",
            _mock_call(FOLLOW_UP_MOCKS[OrderType.CHANGE], "upgradeInstance", instanceId=instance_id),
        ),
        (
            "releaseInstance (unsubscription)",
            _mock_call(FOLLOW_UP_MOCKS[OrderType.UNSUBSCRIBE], "releaseInstance", instanceId=instance_id),
        ),
    ]
    steps += [
        (
            f"releaseInstance of {order_id}'s instance",
            _debug({"activity": "releaseInstance", "instanceId": other}),
        )
        for order_id, other in created.items()
        if other != instance_id
    ]
    for label, fields in steps:
        if not ctx.applies(fields):
            continue
        exchange = ctx.send(fields, f"{label} (debug case)")
        if exchange.result_code != ResultCode.SUCCESS.value:
            # the follow-up MOCK orders' contents, and pairing them with another order's instance,
            # are koosim's (ASSUMPTION U31): a warning, not an error
            ctx.warn(
                f"the debug case {label}: expected {ResultCode.SUCCESS.value} "
                f"({ResultCode.SUCCESS.meaning}), got {describe(exchange)} (the follow-up MOCK order "
                "contents are ASSUMPTION U31)",
                exchange,
            )


# --- the merchant's calls to the open APIs (§8.1, §8.3, §2.5, §2.6) ----------------------------------

QUERY_ORDER_API, USAGE_PUSH_API = "queryOrder", "usagePush"
MALFORMED = frozenset({MktCode.UNDEFINED_PARAMETER.value, MktCode.OTHER_PARAMETER_ERROR.value})
"""The codes that say the request itself was malformed (§8.4: an undefined, extra or missing
parameter, another parameter error)."""


@contextmanager
def merchant_calls(ctx: Context) -> Iterator[list[InboundCall]]:
    """The calls the merchant makes to koosim's open API inside the block, as they arrive."""
    if ctx.inbound is None:
        ctx.skip("koosim's open API is not running in this run: no call of the merchant can be seen")
    calls: list[InboundCall] = []
    with ctx.inbound.listen(calls.append):
        yield calls


def call_text(call: InboundCall) -> str:
    """One inbound call in a few words: method, path, the answer's code and why."""
    why = "; ".join(call.problems)
    answered = call.code or f"HTTP {call.status}"
    return f"{call.method} {urlsplit(call.url).path} answered {answered}" + (f" ({why})" if why else "")


def _judge_query_order(ctx: Context, call: InboundCall, evidence: Sequence[Exchange]) -> None:
    if call.accepted:
        return
    if not call.authenticated:
        message = (
            "a Querying-an-Order request of the merchant is not authenticated as the API gateway asks "
            f"(AK/SK, SDK-HMAC-SHA256, §2.5): {call_text(call)}"
        )
        if call.published_refusal:
            ctx.fail(message, *evidence)
        else:  # refused for a reason no page names (a replay, an unsigned host…)
            ctx.warn(f"{message}; that the gateway refuses this is ASSUMPTION U40", *evidence)
    elif call.code in MALFORMED:
        message = f"a Querying-an-Order request of the merchant is malformed (§8.1): {call_text(call)}"
        if call.published_refusal:
            ctx.fail(message, *evidence)
        else:  # a refusal no page states (a repeated parameter)
            ctx.warn(f"{message}; no page states this refusal", *evidence)
    else:  # an order or line koosim never sold: MKT.0100 by ASSUMPTION U32
        ctx.warn(
            f"a Querying-an-Order request of the merchant was refused (ASSUMPTION U32): {call_text(call)}",
            *evidence,
        )


@check("conversation.query-order", rule="§8.1, §2.5")
def query_order(ctx: Context) -> None:
    """Querying an Order, when the merchant calls it, is authenticated and well-formed.

    The merchant may or may not call the marketplace back (a V2 newInstance names the order
    only, §4.1, so most do). Every call it makes while koosim sends a newInstance, and an
    upgradeInstance (a new order, §4.3), must pass the API gateway's AK/SK check (§2.5: a wrong
    key, signature or date is refused with APIGW.0303) and carry the published parameters
    (§8.1: orderId, optional orderLineId). A refusal no page states is a warning. Skipped when
    koosim's open API does not run, or when the merchant made no such call during the check.
    """
    with merchant_calls(ctx) as calls:
        order = ctx.orders.order()
        created = ctx.send(order.new_instance_fields(ctx.orders.business_id()), "newInstance")
        instance_id = created.answer_field("instanceId")
        upgrade = order.upgrade_fields(instance_id) if isinstance(instance_id, str) and instance_id else None
        if upgrade is not None and ctx.applies(upgrade):
            ctx.send(upgrade, "upgradeInstance")
    asked = [call for call in calls if call.api == QUERY_ORDER_API]
    if not asked:
        ctx.skip("the merchant made no Querying-an-Order call during this check: nothing to judge")
    for call in asked:
        _judge_query_order(ctx, call, ctx.exchanges[:1])


def _created_instances(ctx: Context) -> set[str]:
    """Every instanceId the merchant answered in the run so far (this check's calls included)."""
    ids = (e.answer_field("instanceId") for e in (*ctx.seen, *ctx.exchanges) if e.activity == "newInstance")
    return {i for i in ids if isinstance(i, str) and i}


@check("conversation.usage-push", rule="§8.3, §4.1", needs=("newInstance", USAGE_PUSH))
def usage_push(ctx: Context) -> None:
    """Usage pushed by a pay-per-use merchant names the instances it created.

    Each record's ``instance_id`` is "the instanceId the merchant returned for the pay-per-use
    purchase" (§8.3). koosim sells pay-per-use orders (Querying an Order says ON_DEMAND) and
    looks at every usage push the merchant makes meanwhile: refused pushes (signature §2.6,
    fields §8.3) fail when a page states the refusal and warn when it rests on an ASSUMPTION. A
    record naming an instance the merchant did not answer in this run is a warning: a real
    merchant pushes for instances of earlier runs too, and koosim cannot tell those from a
    made-up id. When the merchant pushes is its own business (hourly, §8.3): no push during the
    check is a skip, never a fault.
    """
    with merchant_calls(ctx) as calls:
        for _ in range(2):
            ctx.new_instance(prerequisite=True)
    pushes = [call for call in calls if call.api == USAGE_PUSH_API]
    if not pushes:
        ctx.skip("the merchant made no usage-push call during this check: nothing to judge")
    known = _created_instances(ctx)
    for call in pushes:
        for problem in usage_problems(call, known):
            (ctx.warn if problem.assumed else ctx.fail)(problem.message, *ctx.exchanges)


@dataclass(frozen=True)
class UsageProblem:
    """What is wrong with a usage push, and whether the rule it breaks is an ASSUMPTION (a warning)."""

    message: str
    assumed: bool = False


def usage_problems(call: InboundCall, created: Container[str]) -> list[UsageProblem]:
    """What is wrong with one of the merchant's calls to usage push (§8.3, §2.6): refused by the
    open API (``assumed`` unless a page states the refusal: :attr:`InboundCall.published_refusal`), or a
    record naming an instance not in ``created`` (the instanceIds the merchant answered in this
    run: ``assumed``, since koosim cannot know an earlier run's instances). Empty for any other
    call. Explore judges its sequences with it too."""
    if call.api != USAGE_PUSH_API:
        return []
    if not call.accepted:
        why = "" if call.published_refusal else "; no page states this refusal (an ASSUMPTION)"
        return [
            UsageProblem(
                f"a usage push of the merchant was refused (§8.3, §2.6): {call_text(call)}{why}",
                assumed=not call.published_refusal,
            )
        ]
    records = call.fields.get("usage_records")
    named = (
        [record.get("instance_id") for record in records if isinstance(record, dict)]
        if isinstance(records, list)
        else []
    )
    return [
        UsageProblem(
            f"usage pushed for instance {instance_id!r}, not an instance created in this run: koosim "
            "cannot tell an earlier run's instance from a made-up one; instance_id must be the "
            "instanceId newInstance answered (§8.3)",
            assumed=True,
        )
        for instance_id in dict.fromkeys(named)
        if instance_id not in created
    ]
