"""The marketplace resends: every activity must be safe to receive twice (protocol.md §7-§9)."""

from __future__ import annotations

from simulator.checks.base import Context, Provisioned, Severity, check
from simulator.model import query_fields, release_fields, status_fields
from simulator.protocol import ResultCode
from simulator.transport import Exchange

RESENDS = 3
"""How many identical copies a resend check sends after the first."""


def _instance_ids(exchanges: list[Exchange]) -> set[str]:
    return {e.answer_field("instanceId") for e in exchanges if e.result_code == ResultCode.SUCCESS}


def _listed_instances(ctx: Context, instance_ids: set[str]) -> set[str]:
    """The ids among ``instance_ids`` that queryInstance says exist."""
    exchange = ctx.send(query_fields(*sorted(instance_ids)), "queryInstance")
    ctx.require(exchange, ResultCode.SUCCESS, "queryInstance of the instances just created must succeed")
    info = exchange.answer_field("info")
    listed = (
        {item.get("instanceId") for item in info if isinstance(item, dict)}
        if isinstance(info, list)
        else set()
    )
    return listed & instance_ids


def _same_instance(ctx: Context, copies: list[Exchange], how: str) -> None:
    refused = [e for e in copies if e.result_code != ResultCode.SUCCESS]
    for exchange in refused:
        ctx.expect(exchange, ResultCode.SUCCESS, f"{how} of a newInstance must succeed")
    ids = _instance_ids(copies)
    if len(ids) > 1:
        extra = _listed_instances(ctx, {i for i in ids if isinstance(i, str)})
        created = f"; queryInstance lists {len(extra)} of them" if extra else ""
        ctx.fail(
            f"{how}: the same orderId + orderLineId got {len(ids)} different instanceIds{created}",
            *copies,
        )


@check("idempotency.new-instance-resend", rule="§7 seed rule")
def new_instance_resend(ctx: Context) -> None:
    """A resent newInstance (new businessId, timestamp and nonce) returns the same instanceId.

    The marketplace resends an order it did not get an answer for; the merchant must answer
    with the instance it already created and create nothing new.
    """
    order = ctx.orders.order()
    copies = [
        ctx.send(order.new_instance_fields(ctx.orders.business_id()), f"newInstance (copy {n + 1})")
        for n in range(1 + RESENDS)
    ]
    _same_instance(ctx, copies, "a resend")


@check("idempotency.new-instance-concurrent", rule="§7 seed rule")
def new_instance_concurrent(ctx: Context) -> None:
    """Copies of one newInstance arriving at the same moment yield one instanceId.

    Five copies are sent simultaneously on separate connections: a merchant that checks
    "exists?" and then inserts, without a unique constraint, creates several instances.
    """
    order = ctx.orders.order()
    calls = [order.new_instance_fields(ctx.orders.business_id()) for _ in range(ctx.CONCURRENT_COPIES)]
    _same_instance(ctx, ctx.concurrently(calls, "newInstance"), "concurrent copies")


def _resent(ctx: Context, fields: dict[str, str], label: str) -> None:
    for n in range(1 + RESENDS):
        exchange = ctx.send(fields, f"{label} (copy {n + 1})")
        ctx.expect(exchange, ResultCode.SUCCESS, f"{label} sent again with identical content must succeed")


@check("idempotency.refresh-resend", rule="§7", severity=Severity.WARNING)
def refresh_resend(ctx: Context) -> None:
    """A renewal (refreshInstance, RENEWAL) resent with identical content succeeds each time."""
    created = ctx.new_instance()
    fields = created.order.refresh_fields(created.instance_id, ctx.orders.expire_time(days=60))
    _resent(ctx, fields, "refreshInstance")


@check("idempotency.status-resend", rule="§7", severity=Severity.WARNING)
def status_resend(ctx: Context) -> None:
    """FREEZE resent succeeds each time, and so does UNFREEZE."""
    created = ctx.new_instance()
    _resent(ctx, status_fields(created.instance_id, "FREEZE"), "updateInstanceStatus FREEZE")
    _resent(ctx, status_fields(created.instance_id, "UNFREEZE"), "updateInstanceStatus UNFREEZE")


@check("idempotency.upgrade-resend", rule="§7", severity=Severity.WARNING)
def upgrade_resend(ctx: Context) -> None:
    """An upgrade resent with identical content succeeds each time."""
    created: Provisioned = ctx.new_instance()
    _resent(ctx, created.order.upgrade_fields(created.instance_id), "upgrade")


@check("idempotency.release-resend", rule="§7", severity=Severity.WARNING)
def release_resend(ctx: Context) -> None:
    """A resent releaseInstance of an already released instance answers 000000."""
    created = ctx.new_instance()
    _resent(ctx, release_fields(created.instance_id), "releaseInstance")


@check("idempotency.license-resend", rule="§7 seed rule", protocols=("v2",))
def license_resend(ctx: Context) -> None:
    """A resent getLicense for the same order line returns the same license code."""
    order = ctx.orders.order()
    copies = [
        ctx.send(order.license_fields(ctx.orders.business_id()), f"getLicense (copy {n + 1})")
        for n in range(1 + RESENDS)
    ]
    for exchange in copies:
        ctx.expect(exchange, ResultCode.SUCCESS, "getLicense and its resends must succeed")
    codes = {e.answer_field("license") for e in copies if e.result_code == ResultCode.SUCCESS}
    if len(codes) > 1:
        ctx.fail(f"a resent getLicense got {len(codes)} different license codes", *copies)
