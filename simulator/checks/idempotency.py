"""The marketplace resends: every activity must be safe to receive twice (docs/protocol.md §4.1-a,
§10.1). A finding is recorded before any follow-up call, so a failing follow-up never hides it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any

from simulator.checks.base import Context, Provisioned, Severity, check, describe
from simulator.checks.conversation import poll_until_listed
from simulator.model import announce, release_fields, status_fields
from simulator.protocol import ResultCode
from simulator.resend import RESENDS_VARIABLE, resend_reason
from simulator.transport import Exchange, Target, Transport

RESENDS = 3
"""How many identical copies a resend check sends after the first."""


def answered_ids(exchanges: list[Exchange], member: str = "instanceId") -> list[str]:
    """The distinct ids (``instanceId``, or ``license``) the successful copies answered, in order.

    A success without one names no instance: it never counts as "one instance"
    (see :func:`succeeded_without`).
    """
    ids = (e.answer_field(member) for e in exchanges if e.result_code == ResultCode.SUCCESS)
    return list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))


def succeeded_without(exchanges: list[Exchange], member: str = "instanceId") -> list[int]:
    """The indexes of the copies that answered success without a (non-empty string) ``member``."""
    return [
        index
        for index, e in enumerate(exchanges)
        if e.result_code == ResultCode.SUCCESS
        and not (isinstance(value := e.answer_field(member), str) and value)
    ]


def _instance_ids(exchanges: list[Exchange]) -> set[str]:
    return set(answered_ids(exchanges))


def _listed_instances(ctx: Context, instance_ids: set[str]) -> set[str] | None:
    """The ids among ``instance_ids`` that queryInstance says exist; None (and a finding of its
    own) when the query fails."""
    exchange = poll_until_listed(ctx, sorted(instance_ids))[-1]  # async provisioning: §10.2
    if not ctx.expect(
        exchange, ResultCode.SUCCESS, "queryInstance of the instances just created must succeed"
    ):
        return None
    info = exchange.answer_field("info")
    listed: set[Any] = (
        {item.get("instanceId") for item in info if isinstance(item, dict)}
        if isinstance(info, list)
        else set()
    )
    return instance_ids & listed


def _same_instance(ctx: Context, copies: list[Exchange], how: str) -> None:
    refused = [e for e in copies if e.result_code != ResultCode.SUCCESS]
    for exchange in refused:
        ctx.expect(exchange, ResultCode.SUCCESS, f"{how} of a newInstance must succeed")
    for index in succeeded_without(copies):
        ctx.fail(
            f"{how}: copy {index + 1} answered {ResultCode.SUCCESS.value} without an instanceId",
            copies[index],
        )
    ids = _instance_ids(copies)
    if len(ids) > 1:  # recorded first: the follow-up query below may fail on its own
        ctx.fail(f"{how}: the same orderId + orderLineId got {len(ids)} different instanceIds", *copies)
        listed = _listed_instances(ctx, ids)
        if listed:
            ctx.fail(
                f"{how}: queryInstance lists {len(listed)} of those {len(ids)} instances", *ctx.exchanges[-1:]
            )


@check("idempotency.new-instance-resend", rule="§4.1")
def new_instance_resend(ctx: Context) -> None:
    """A resent newInstance (new businessId, timestamp and nonce) returns the same instanceId.

    The marketplace resends an order it did not get an answer for; the merchant must answer
    with the instance it already created and create nothing new. Another order line of the
    same order is another instance.
    """
    order = ctx.orders.order()
    copies = [
        ctx.send(order.new_instance_fields(ctx.orders.business_id()), f"newInstance (copy {n + 1})")
        for n in range(1 + RESENDS)
    ]
    _same_instance(ctx, copies, "a resend")
    if ctx.target.protocol == "v1":  # V1 has no orderLineId: idempotency per order (§5.1, U22)
        return
    # The key is the order *line*: a second line of the same order is a different instance.
    second_line = replace(order, order_line_id=f"{order.order_id}-000002")
    announce(second_line)  # Querying an Order knows both lines
    other = ctx.send(
        second_line.new_instance_fields(ctx.orders.business_id()), "newInstance (second order line)"
    )
    if ctx.expect(other, ResultCode.SUCCESS, "a second order line of the same order") and (
        other.answer_field("instanceId") in _instance_ids(copies)
    ):
        ctx.fail("a second orderLineId of the same orderId got the first line's instanceId", other)


@check("idempotency.new-instance-concurrent", rule="§4.1, U44", severity=Severity.WARNING)
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


@check(
    "idempotency.refresh-resend",
    rule="§4.2, U8",
    severity=Severity.WARNING,
    needs=("newInstance", "refreshInstance"),
)
def refresh_resend(ctx: Context) -> None:
    """A renewal (refreshInstance, RENEWAL) resent with identical content succeeds each time."""
    created = ctx.new_instance()
    fields = created.order.refresh_fields(created.instance_id, ctx.orders.expire_time(days=60))
    _resent(ctx, fields, "refreshInstance")


@check(
    "idempotency.status-resend",
    rule="§4.4, U8",
    severity=Severity.WARNING,
    needs=("newInstance", "updateInstanceStatus"),
)
def status_resend(ctx: Context) -> None:
    """FREEZE resent succeeds each time, and so does UNFREEZE."""
    created = ctx.new_instance()
    _resent(ctx, status_fields(created.instance_id, "FREEZE"), "updateInstanceStatus FREEZE")
    _resent(ctx, status_fields(created.instance_id, "UNFREEZE"), "updateInstanceStatus UNFREEZE")


@check(
    "idempotency.upgrade-resend",
    rule="§4.3, U8",
    severity=Severity.WARNING,
    needs=("newInstance", "upgradeInstance"),
)
def upgrade_resend(ctx: Context) -> None:
    """An upgrade resent with identical content succeeds each time."""
    created: Provisioned = ctx.new_instance()
    _resent(ctx, created.order.upgrade_fields(created.instance_id), "upgradeInstance")


@check(
    "idempotency.release-resend",
    rule="§4.6, U6",
    severity=Severity.WARNING,
    needs=("newInstance", "releaseInstance"),
)
def release_resend(ctx: Context) -> None:
    """A resent releaseInstance of an already released instance answers 000000."""
    created = ctx.new_instance()
    _resent(ctx, release_fields(created.instance_id), "releaseInstance")


@check(
    "idempotency.license-resend",
    rule="§6.1, U24",
    severity=Severity.WARNING,
    protocols=("v2",),
    needs=("license",),
)
def license_resend(ctx: Context) -> None:
    """A resent getLicense for the same order line returns the same license code."""
    order = ctx.orders.order()
    copies = [
        ctx.send(order.license_fields(ctx.orders.business_id()), f"getLicense (copy {n + 1})")
        for n in range(1 + RESENDS)
    ]
    for exchange in copies:
        ctx.expect(exchange, ResultCode.SUCCESS, "getLicense and its resends must succeed")
    for index in succeeded_without(copies, "license"):
        ctx.fail(f"getLicense copy {index + 1} succeeded without a license code", copies[index])
    codes = answered_ids(copies, "license")
    if len(codes) > 1:
        ctx.fail(f"a resent getLicense got {len(codes)} different license codes", *copies)


ABANDON_AFTER = 0.001
"""How long the marketplace waits for the first deliveries in ``converges-after-failures``: far
below any merchant's processing time, so those deliveries count as failed while the merchant
still processes them."""
CHECK_BACKOFF = 0.05
"""The first resend delay inside ``converges-after-failures``: the configured resend schedule
scaled to start at 50 ms (50, 100, 200 ms by default) so that the check stays fast."""


@check("idempotency.converges-after-failures", rule="§4.1")
def converges_after_failures(ctx: Context) -> None:
    """Resends after deliveries the marketplace gave up on converge on one instanceId.

    The marketplace sends newInstance and stops waiting after 1 ms, while the merchant is still
    processing it: the first delivery's connection is closed unread; for the second the
    simulator keeps listening (the marketplace does not) to learn what it created. It resends
    per the resend policy (KOOSIM_RESENDS, KOOSIM_BACKOFF; the backoff scaled to 50 ms steps)
    until an answer arrives, then one late copy comes. Every answer and queryInstance must
    show a single instance for the order. The first delivery's exchange appears only as
    evidence of a failure: it has no answer by design.
    """
    policy = ctx.resend_policy.scaled(CHECK_BACKOFF)
    if not policy.resends:
        ctx.skip(f"the resend policy allows no resend ({RESENDS_VARIABLE}=0)")
    order = ctx.orders.order()
    abandoned = min(2, policy.resends)  # at least one delivery left for an answer
    given_up: list[Exchange] = []
    listening: list[Future[Exchange]] = []
    answered: list[Exchange] = []
    outcome: Exchange | None = None
    with ThreadPoolExecutor(max_workers=abandoned) as pool:
        for attempt in range(1, policy.attempts + 1):
            fields = order.new_instance_fields(ctx.orders.business_id())
            label = f"newInstance (attempt {attempt})"
            seen: Exchange | None
            if attempt == 1:
                seen = _send(replace(ctx.target, timeout=ABANDON_AFTER), fields, f"{label}, unread", 1)
                given_up.append(seen)
                seen = seen if seen.answered else None
            elif attempt <= abandoned:
                future = pool.submit(
                    _send, ctx.target, fields, f"{label}, marketplace stopped waiting", attempt
                )
                listening.append(future)
                try:
                    seen = future.result(timeout=ABANDON_AFTER)
                except FutureTimeout:
                    seen = None
            else:
                seen = ctx.transport.send(fields, label=label, attempt=attempt)
                answered.append(seen)
                ctx.exchanges.append(seen)
            if seen is not None and resend_reason(seen) is None:
                outcome = seen
                break
            if attempt < policy.attempts:
                time.sleep(policy.delays[attempt - 1])
        overheard = [future.result() for future in listening]  # each bounded by the call's deadline
    ctx.exchanges[:0] = overheard
    deliveries = [*given_up, *overheard, *answered]
    if outcome is None:
        ctx.abort(
            f"newInstance was not accepted after {len(deliveries)} deliveries "
            f"({policy.describe()}): last {describe(deliveries[-1])}",
            *deliveries[-2:],
        )
    ctx.require(outcome, ResultCode.SUCCESS, "newInstance resent after failed deliveries must succeed")
    late = ctx.transport.send(
        order.new_instance_fields(ctx.orders.business_id()),
        label="newInstance (late copy)",
        attempt=len(deliveries) + 1,
    )
    ctx.exchanges.append(late)
    ctx.expect(late, ResultCode.SUCCESS, "a copy arriving after the accepted resend must succeed")
    first_with: dict[str, Exchange] = {}
    for exchange in [*deliveries, late]:
        instance_id = exchange.answer_field("instanceId")
        if exchange.result_code == ResultCode.SUCCESS and isinstance(instance_id, str) and instance_id:
            first_with.setdefault(instance_id, exchange)
    if not first_with:
        ctx.abort("no answer carried an instanceId", outcome)
    if len(first_with) > 1:  # recorded before the follow-up query, which may fail on its own
        unread = [e for e in given_up if not e.answered]
        ctx.fail(
            f"after {len(deliveries) - 1} failed delivery(ies) and the resends that followed, the same "
            f"orderId + orderLineId got {len(first_with)} different instanceIds",
            *first_with.values(),
            *unread,
        )
    listed = _listed_instances(ctx, set(first_with))
    if listed is not None and len(first_with) > 1:
        ctx.fail(
            f"queryInstance lists {len(listed)} of those {len(first_with)} instances", *ctx.exchanges[-1:]
        )
    elif listed is not None and not listed:
        ctx.fail(
            "queryInstance does not list the instance newInstance answered (§4.1-c: record it first)", outcome
        )


def _send(target: Target, fields: Mapping[str, Any], label: str, attempt: int) -> Exchange:
    """One delivery on a connection of its own, so that it can be abandoned or overheard."""
    transport = Transport(target)
    try:
        return transport.send(fields, label=label, attempt=attempt)
    finally:
        transport.close()
