"""Each activity does what protocol.md §7 says, in the order the marketplace sends them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.checks.base import Context, Severity, check
from simulator.model import (
    Lifecycle,
    change_check_fields,
    query_fields,
    release_fields,
    status_fields,
    within_query_limit,
)
from simulator.protocol import ResultCode
from simulator.protocol.limits import QUERY_INSTANCE_LIMIT
from simulator.transport import Exchange


def _listed(exchange: Exchange) -> list[Any]:
    info = exchange.answer_field("info")
    if not isinstance(info, list):
        return []
    return [item.get("instanceId") for item in info if isinstance(item, dict)]


@check("lifecycle.full", rule="§7")
def full(ctx: Context) -> None:
    """new → query → renewal → freeze → unfreeze → change check → upgrade → release all succeed.

    queryInstance lists the instance it just created.
    """
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    query_call = query_fields(instance_id)
    if ctx.applies(query_call):
        query = ctx.send(query_call, "queryInstance")
        if ctx.expect(
            query, ResultCode.SUCCESS, "queryInstance of a live instance"
        ) and instance_id not in _listed(query):
            ctx.fail("queryInstance does not list the instance newInstance just created", query)
    steps: list[tuple[str, Mapping[str, Any]]] = [
        ("refreshInstance RENEWAL", order.refresh_fields(instance_id, ctx.orders.expire_time(days=60))),
        ("updateInstanceStatus FREEZE", status_fields(instance_id, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(instance_id, "UNFREEZE")),
        ("changeInstanceCheck", change_check_fields(instance_id, order.product_id, "sku-pro-0002")),
        ("upgradeInstance", order.upgrade_fields(instance_id)),
        ("releaseInstance", release_fields(instance_id)),
    ]
    for label, fields in steps:
        if ctx.applies(fields):
            ctx.expect(ctx.send(fields, label), ResultCode.SUCCESS, f"{label} of a live instance")


@check("lifecycle.trial-to-formal", rule="§7", needs=("newInstance", "refreshInstance"))
def trial_to_formal(ctx: Context) -> None:
    """A trial order (trialFlag=1) is accepted, then converted with refreshInstance TRIAL_TO_FORMAL."""
    created = ctx.new_instance(ctx.orders.order(trial=True), "newInstance (trial)")
    fields = created.order.refresh_fields(
        created.instance_id, ctx.orders.expire_time(days=365), "TRIAL_TO_FORMAL"
    )
    ctx.expect(ctx.send(fields, "refreshInstance TRIAL_TO_FORMAL"), ResultCode.SUCCESS, "trial to formal")


@check("lifecycle.unsubscribe-renewal", rule="§7", needs=("newInstance", "refreshInstance"))
def unsubscribe_renewal(ctx: Context) -> None:
    """A renewal, then its unsubscription (UNSUBSCRIBE_RENEWAL_PERIOD) restoring the old expireTime."""
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    renewal = order.refresh_fields(instance_id, ctx.orders.expire_time(days=60))
    ctx.require(ctx.send(renewal, "refreshInstance RENEWAL"), ResultCode.SUCCESS, "a renewal must succeed")
    undo = order.refresh_fields(instance_id, order.expire_time, "UNSUBSCRIBE_RENEWAL_PERIOD")
    ctx.expect(
        ctx.send(undo, "refreshInstance UNSUBSCRIBE_RENEWAL_PERIOD"), ResultCode.SUCCESS, "unsubscribe"
    )


@check("lifecycle.test-order", rule="§7")
def test_order(ctx: Context) -> None:
    """A debugging call (testFlag=1) answers success with an instanceId."""
    ctx.new_instance(ctx.orders.order(test=True), "newInstance (testFlag=1)")


@check("lifecycle.unknown-instance", rule="§7", needs=("releaseInstance",))
def unknown_instance(ctx: Context) -> None:
    """refresh, freeze, unfreeze, upgrade and release of an unknown instanceId get 000003."""
    order = ctx.orders.order()
    unknown = ctx.orders.unknown_instance_id()
    calls = [
        ("refreshInstance", order.refresh_fields(unknown, ctx.orders.expire_time(days=60))),
        ("updateInstanceStatus FREEZE", status_fields(unknown, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(unknown, "UNFREEZE")),
        ("upgradeInstance", order.upgrade_fields(unknown)),
        ("releaseInstance", release_fields(unknown)),
    ]
    for label, fields in calls:
        if not ctx.applies(fields):
            continue
        exchange = ctx.send(fields, f"{label}, unknown instance")
        ctx.expect(exchange, ResultCode.INSTANCE_NOT_FOUND, f"{label} of an unknown instanceId")


@check("lifecycle.invalid-parameters", rule="§6")
def invalid_parameters(ctx: Context) -> None:
    """A missing required field, a malformed expireTime or an unknown activity gets 000002."""
    order = ctx.orders.order()
    fields = order.new_instance_fields(ctx.orders.business_id())
    del fields["orderId"]
    ctx.expect(
        ctx.send(fields, "newInstance without orderId"), ResultCode.INVALID_PARAMETER, "missing orderId"
    )
    created = ctx.new_instance()
    malformed = created.order.refresh_fields(created.instance_id, "2099-01-01")
    if ctx.applies(malformed):
        exchange = ctx.send(malformed, "refreshInstance, expireTime not yyyyMMddHHmmss")
        ctx.expect(exchange, ResultCode.INVALID_PARAMETER, "a malformed expireTime")
    exchange = ctx.send({"activity": "noSuchActivity", "instanceId": created.instance_id}, "unknown activity")
    ctx.expect(exchange, ResultCode.INVALID_PARAMETER, "an unknown activity")


@check("lifecycle.query-several", rule="§7", needs=("newInstance", "queryInstance"))
def query_several(ctx: Context) -> None:
    """queryInstance with several ids lists each known one; over 100 ids gets 000002."""
    unknown = ctx.orders.unknown_instance_id()
    # instanceId holds at most 100 characters (docs/protocol.md §4.5, A9): as many of the three
    # new instances as fit beside the unknown id.
    created = within_query_limit([unknown, *(ctx.new_instance().instance_id for _ in range(3))])[1:]
    exchange = ctx.send(
        query_fields(*created, unknown), f"queryInstance of {len(created)} instance(s) and an unknown id"
    )
    if ctx.expect(exchange, ResultCode.SUCCESS, "queryInstance of several ids"):
        listed = _listed(exchange)
        missing = [iid for iid in created if iid not in listed]
        if missing:
            ctx.fail(f"queryInstance left out {len(missing)} of the instances just created", exchange)
        if unknown in listed:
            ctx.fail("queryInstance listed an instanceId that was never created", exchange)
    too_many = [f"{unknown}-{n}" for n in range(QUERY_INSTANCE_LIMIT + 1)]
    exchange = ctx.send(query_fields(*too_many), f"queryInstance of {len(too_many)} ids")
    ctx.expect(exchange, ResultCode.INVALID_PARAMETER, f"more than {QUERY_INSTANCE_LIMIT} ids")


@check(
    "lifecycle.after-release",
    rule="§7",
    severity=Severity.WARNING,
    needs=("newInstance", "releaseInstance"),
)
def after_release(ctx: Context) -> None:
    """After a release, queryInstance leaves the instance out and other operations get 000003.

    Renewal, freeze, unfreeze and upgrade of a released instance must not succeed.
    """
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    lifecycle = Lifecycle()
    lifecycle.created(instance_id)
    release = release_fields(instance_id)
    ctx.require(ctx.send(release, "releaseInstance"), ResultCode.SUCCESS, "release")
    lifecycle.apply(release)
    for label, fields in (
        ("refreshInstance RENEWAL", order.refresh_fields(instance_id, ctx.orders.expire_time(days=90))),
        ("updateInstanceStatus FREEZE", status_fields(instance_id, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(instance_id, "UNFREEZE")),
        ("upgradeInstance", order.upgrade_fields(instance_id)),
    ):
        if not ctx.applies(fields):
            continue
        exchange = ctx.send(fields, f"{label} after release")
        ctx.expect(exchange, lifecycle.expected_code(fields), f"{label} of a released instance")
    if not ctx.applies(query_fields(instance_id)):
        return
    query = ctx.send(query_fields(instance_id), "queryInstance after release")
    if ctx.expect(query, ResultCode.SUCCESS, "queryInstance after release") and instance_id in _listed(query):
        ctx.fail("queryInstance still lists a released instance", query)


@check("lifecycle.license", rule="§1", protocols=("v2",), needs=("license",))
def license_lifecycle(ctx: Context) -> None:
    """getLicense → refreshLicense (validity update) → expireLicense → releaseLicense; unknown → 000003."""
    order = ctx.orders.order()
    issued = ctx.send(order.license_fields(ctx.orders.business_id()), "getLicense")
    ctx.require(issued, ResultCode.SUCCESS, "getLicense must succeed")
    code = issued.answer_field("license")
    if not isinstance(code, str) or not code:
        ctx.abort("getLicense succeeded without a license code", issued)
    line = {"orderId": order.order_id, "orderLineId": order.order_line_id, "license": code}
    steps = [
        (
            "refreshLicense",
            {"activity": "refreshLicense", **line, "expireTime": ctx.orders.expire_time(days=365)},
        ),
        ("expireLicense", {"activity": "expireLicense", **line}),
        ("releaseLicense", {"activity": "releaseLicense", **line}),
    ]
    for label, fields in steps:
        ctx.expect(ctx.send(fields, label), ResultCode.SUCCESS, f"{label} of a license just issued")
    unknown = {**line, "license": "LIC-KOOSIM-UNKNOWN", "expireTime": ctx.orders.expire_time(days=30)}
    exchange = ctx.send({"activity": "refreshLicense", **unknown}, "refreshLicense of an unknown license")
    ctx.expect(exchange, ResultCode.INSTANCE_NOT_FOUND, "refreshLicense of an unknown license")
