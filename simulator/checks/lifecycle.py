"""Each activity does what docs/protocol.md §4 says, in the order the marketplace sends them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from simulator.checks.base import Context, Severity, check, describe
from simulator.checks.polling import listed_ids, pending, poll_until_listed, still_provisioning
from simulator.model import (
    QUERY_INSTANCE_MAX,
    Lifecycle,
    change_check_fields,
    expire_fields,
    instance_status_fields,
    query_fields,
    release_call,
    status_fields,
    within_query_limit,
)
from simulator.protocol import ResultCode
from simulator.protocol.limits import QUERY_INSTANCE_LIMIT

TIED_TO_NOT_FOUND = frozenset({"refreshInstance", "expireInstance", "releaseInstance"})
"""The activities the result-code list ties 000003 to (renewal, expiry, release; docs/protocol.md
§3.2): V1's expireInstance is the expiry the list's wording names (A50); V2's expiry is a status
update, whose code stays ASSUMPTION U15."""


@check("lifecycle.full", rule="§4, §5")
def full(ctx: Context) -> None:
    """new → query → renewal → freeze → unfreeze → change check → upgrade → expiry → release all succeed.

    queryInstance lists the instance it just created. Each generation gets its own activities,
    as far as the product profile has them (§1.2): V2 freezes and unfreezes with
    updateInstanceStatus (§4.4); V1 freezes a yearly/monthly instance with expireInstance (§5.4)
    and a pay-per-use one with instanceStatus FREEZE / NORMAL (§5.6), and its release names the
    subscription order (§5.5).
    """
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    query_call = query_fields(instance_id)
    if ctx.applies(query_call):  # polled while provisioning runs (§4.1-c, §10.2)
        polls = poll_until_listed(ctx, [instance_id])
        if not still_provisioning(ctx, polls, [instance_id], "queryInstance of the instance just created"):
            ctx.expect(polls[-1], ResultCode.SUCCESS, "queryInstance of a live instance")
    steps: list[tuple[str, Mapping[str, Any]]] = [
        ("refreshInstance RENEWAL", order.refresh_fields(instance_id, ctx.orders.expire_time(days=60))),
        ("updateInstanceStatus FREEZE", status_fields(instance_id, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(instance_id, "UNFREEZE")),
        ("instanceStatus FREEZE", instance_status_fields(instance_id, "FREEZE")),
        ("instanceStatus NORMAL", instance_status_fields(instance_id, "NORMAL")),
        ("changeInstanceCheck", change_check_fields(instance_id, order.product_id, "sku-pro-0002")),
        ("upgradeInstance", order.upgrade_fields(instance_id)),
        ("expireInstance", expire_fields(instance_id, order.order_id)),
        ("releaseInstance", release_call(ctx.target.protocol, instance_id, order.order_id)),
    ]
    for label, fields in steps:
        if ctx.applies(fields):
            ctx.expect(ctx.send(fields, label), ResultCode.SUCCESS, f"{label} of a live instance")


@check("lifecycle.trial-to-formal", rule="§4.2", needs=("newInstance", "refreshInstance"))
def trial_to_formal(ctx: Context) -> None:
    """A trial order (trialFlag=1) is accepted, then converted with refreshInstance TRIAL_TO_FORMAL."""
    created = ctx.new_instance(ctx.orders.order(trial=True), "newInstance (trial)")
    fields = created.order.refresh_fields(
        created.instance_id, ctx.orders.expire_time(days=365), "TRIAL_TO_FORMAL"
    )
    ctx.expect(ctx.send(fields, "refreshInstance TRIAL_TO_FORMAL"), ResultCode.SUCCESS, "trial to formal")


@check("lifecycle.unsubscribe-renewal", rule="§4.2", needs=("newInstance", "refreshInstance"))
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


@check("lifecycle.test-order", rule="§4.1")
def test_order(ctx: Context) -> None:
    """A debugging call (testFlag=1) answers success with an instanceId."""
    ctx.new_instance(ctx.orders.order(test=True), "newInstance (testFlag=1)", prerequisite=False)


@check("lifecycle.unknown-instance", rule="§3.2", needs=("releaseInstance",))
def unknown_instance(ctx: Context) -> None:
    """refresh, freeze, unfreeze, expiry, upgrade and release of an unknown instanceId are refused.

    The code list ties 000003 to renewal, expiry and release [S34]: there it is required. For
    freeze, unfreeze (V2 updateInstanceStatus, V1 instanceStatus) and upgrade the refusal is
    required and 000003 only expected (ASSUMPTION U15).
    """
    order = ctx.orders.order()
    unknown = ctx.orders.unknown_instance_id()
    calls = [
        ("refreshInstance", order.refresh_fields(unknown, ctx.orders.expire_time(days=60))),
        ("updateInstanceStatus FREEZE", status_fields(unknown, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(unknown, "UNFREEZE")),
        ("instanceStatus FREEZE", instance_status_fields(unknown, "FREEZE")),
        ("instanceStatus NORMAL", instance_status_fields(unknown, "NORMAL")),
        ("upgradeInstance", order.upgrade_fields(unknown)),
        ("expireInstance", expire_fields(unknown, order.order_id)),
        ("releaseInstance", release_call(ctx.target.protocol, unknown, order.order_id)),
    ]
    for label, fields in calls:
        if not ctx.applies(fields):
            continue
        exchange = ctx.send(fields, f"{label}, unknown instance")
        if fields.get("activity") in TIED_TO_NOT_FOUND:
            ctx.expect(exchange, ResultCode.INSTANCE_NOT_FOUND, f"{label} of an unknown instanceId")
        else:
            ctx.refused(exchange, ResultCode.INSTANCE_NOT_FOUND, f"{label} of an unknown instanceId", "U15")


@check("lifecycle.invalid-parameters", rule="§4, §3.2")
def invalid_parameters(ctx: Context) -> None:
    """A call without a mandatory field, or with an unknown activity, is refused.

    000002 is expected for both (ASSUMPTION U2: a warning when refused otherwise). A malformed
    expireTime should be refused too, but no page says the merchant must validate the format:
    accepting one is a warning.
    """
    order = ctx.orders.order()
    fields = order.new_instance_fields(ctx.orders.business_id())
    del fields["orderId"]
    exchange = ctx.send(fields, "newInstance without orderId")
    ctx.refused(exchange, ResultCode.INVALID_PARAMETER, "a newInstance without its mandatory orderId")
    created = ctx.new_instance()
    malformed = created.order.refresh_fields(created.instance_id, "2099-01-01")
    if ctx.applies(malformed):
        exchange = ctx.send(malformed, "refreshInstance, expireTime not yyyyMMddHHmmss")
        if exchange.result_code != ResultCode.INVALID_PARAMETER.value:
            where = "§5.3, U23" if ctx.target.protocol == "v1" else "§4.2"  # V1's format text is cut off
            ctx.warn(
                f"a malformed expireTime ({where}: yyyyMMddHHmmss) should be refused with 000002, got "
                f"{describe(exchange)} (ASSUMPTION U2)",
                exchange,
            )
    exchange = ctx.send({"activity": "noSuchActivity", "instanceId": created.instance_id}, "unknown activity")
    ctx.refused(exchange, ResultCode.INVALID_PARAMETER, "an unknown activity")


@check("lifecycle.query-several", rule="§4.5, A9", needs=("newInstance", "queryInstance"))
def query_several(ctx: Context) -> None:
    """queryInstance with several comma-separated ids lists each instance just created.

    The field holds at most 100 characters (A9): koosim sends as many of the new ids as fit.
    Leaving out an unknown id, and refusing more than 100 ids with 000002, are ASSUMPTION U5
    (warnings).
    """
    created = [ctx.new_instance().instance_id for _ in range(3)]
    fitting = within_query_limit(created)
    if len(fitting) < 2:
        ctx.skip(f"two of the merchant's instanceIds do not fit the {QUERY_INSTANCE_MAX} characters of §4.5")
    polls = poll_until_listed(ctx, fitting, f"queryInstance of {len(fitting)} instances")
    final = polls[-1]
    singles = (
        [ctx.send(query_fields(iid), "queryInstance of one of them alone") for iid in fitting]
        if final.result_code == ResultCode.SUCCESS.value and pending(final, fitting)
        else []
    )
    if singles and all(
        single.result_code == ResultCode.SUCCESS.value and iid in listed_ids(single)
        for single, iid in zip(singles, fitting, strict=True)
    ):  # each is provisioned: leaving one out of the several-id answer breaks §4.5 (A9), not U43
        missing = [iid for iid in fitting if iid not in listed_ids(final)]
        ctx.fail(
            f"queryInstance left out {len(missing)} of the {len(fitting)} instances just created, though "
            "queryInstance of each alone lists it (§4.5, A9: comma-separated ids)",
            final,
            *singles,
        )
    elif not still_provisioning(
        ctx, polls, fitting, f"queryInstance of {len(fitting)} instances just created"
    ):
        ctx.expect(final, ResultCode.SUCCESS, "queryInstance of several ids")
    unknown = ctx.orders.unknown_instance_id()
    exchange = ctx.send(query_fields(fitting[0], unknown), "queryInstance of an instance and an unknown id")
    if exchange.result_code == ResultCode.SUCCESS.value and unknown in listed_ids(exchange):
        ctx.warn("queryInstance listed an instanceId that was never created (ASSUMPTION U5)", exchange)
    too_many = [f"{unknown}-{n}" for n in range(QUERY_INSTANCE_LIMIT + 1)]
    exchange = ctx.send(query_fields(*too_many), f"queryInstance of {len(too_many)} ids")
    if exchange.result_code != ResultCode.INVALID_PARAMETER.value:
        ctx.warn(
            f"more than {QUERY_INSTANCE_LIMIT} ids should be refused with 000002, got {describe(exchange)} "
            "(ASSUMPTION U5)",
            exchange,
        )


@check(
    "lifecycle.after-release",
    rule="§4, U7",
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
    release = release_call(ctx.target.protocol, instance_id, order.order_id)
    ctx.require(ctx.send(release, "releaseInstance"), ResultCode.SUCCESS, "release")
    lifecycle.apply(release)
    for label, fields in (
        ("refreshInstance RENEWAL", order.refresh_fields(instance_id, ctx.orders.expire_time(days=90))),
        ("updateInstanceStatus FREEZE", status_fields(instance_id, "FREEZE")),
        ("updateInstanceStatus UNFREEZE", status_fields(instance_id, "UNFREEZE")),
        ("instanceStatus FREEZE", instance_status_fields(instance_id, "FREEZE")),
        ("instanceStatus NORMAL", instance_status_fields(instance_id, "NORMAL")),
        ("upgradeInstance", order.upgrade_fields(instance_id)),
        ("expireInstance", expire_fields(instance_id, order.order_id)),
    ):
        if not ctx.applies(fields):
            continue
        exchange = ctx.send(fields, f"{label} after release")
        ctx.expect(exchange, lifecycle.expected_code(fields), f"{label} of a released instance")
    if not ctx.applies(query_fields(instance_id)):
        return
    query = ctx.send(query_fields(instance_id), "queryInstance after release")
    if ctx.expect(query, ResultCode.SUCCESS, "queryInstance after release") and instance_id in listed_ids(
        query
    ):
        ctx.fail("queryInstance still lists a released instance", query)


CUSTOMER_ID_MAX = 100
"""getLicense's ``customerId``: M, String, at most 100 characters (docs/protocol.md §6.1, [S75])."""


@check("lifecycle.license-customer-id", rule="§6.1", needs=("license", "getLicense"))
def license_customer_id(ctx: Context) -> None:
    """getLicense with a ``customerId`` of 100 characters, the most the License page allows, succeeds.

    A page fact (§6.1, [S75]: customerId M, String, 100), so an error: a merchant that stores it
    in a 64-character column refuses a real customer. The rest of the License conversation, whose
    answer member is ASSUMPTION U24, is ``lifecycle.license`` (warning).
    """
    order = ctx.orders.order()
    order = replace(order, customer_id=(order.customer_id * 4)[:CUSTOMER_ID_MAX])
    ctx.expect(
        ctx.send(
            order.license_fields(ctx.orders.business_id()),
            f"getLicense, {CUSTOMER_ID_MAX}-character customerId",
        ),
        ResultCode.SUCCESS,
        f"getLicense with a {CUSTOMER_ID_MAX}-character customerId (§6.1 [S75]) must succeed",
    )


@check("lifecycle.license", rule="§6.1, U24", severity=Severity.WARNING, needs=("license", "getLicense"))
def license_lifecycle(ctx: Context) -> None:
    """getLicense → refreshLicense (validity update) → expireLicense → releaseLicense; unknown → 000003.

    The customerId's length is judged by ``lifecycle.license-customer-id`` (an error, §6.1 [S75]).
    """
    order = ctx.orders.order()
    issued = ctx.send(order.license_fields(ctx.orders.business_id()), "getLicense")
    ctx.require(issued, ResultCode.SUCCESS, "getLicense must succeed")
    code = issued.answer_field("license")
    if not isinstance(code, str) or not code:
        ctx.abort("getLicense succeeded without a license code", issued)
    renewal = ctx.orders.expire_time(days=365)
    steps = [
        ("refreshLicense", order.license_change_fields("refreshLicense", code) | {"expireTime": renewal}),
        ("expireLicense", order.license_change_fields("expireLicense", code)),
        ("releaseLicense", order.license_change_fields("releaseLicense", code)),
    ]
    for label, fields in steps:
        ctx.expect(ctx.send(fields, label), ResultCode.SUCCESS, f"{label} of a license just issued")
    unknown = order.license_change_fields("refreshLicense", "LIC-KOOSIM-UNKNOWN")
    unknown["expireTime"] = ctx.orders.expire_time(days=30)
    exchange = ctx.send(unknown, "refreshLicense of an unknown license")
    ctx.expect(exchange, ResultCode.INSTANCE_NOT_FOUND, "refreshLicense of an unknown license")
