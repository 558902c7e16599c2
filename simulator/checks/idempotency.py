"""The marketplace resends: every activity must be safe to receive twice (docs/protocol.md §4.1-a,
§10.1). A finding is recorded before any follow-up call, so a failing follow-up never hides it."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any

from simulator.checks.base import Context, Provisioned, Severity, check, describe
from simulator.checks.polling import PENDING_CODE, listed_ids, poll_until_listed
from simulator.delivery import Delivery, Failure, FailureKind, delivery_failure
from simulator.model import Order, announce, query_fields, release_call, status_fields
from simulator.protocol import ResultCode
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
    own) when the query fails; None without a query when the product has no queryInstance (V1
    has none, docs/protocol.md §5.1, U21)."""
    query = query_fields(*sorted(instance_ids))
    if not ctx.applies(query):
        return None
    polls = poll_until_listed(ctx, sorted(instance_ids))  # async provisioning: §10.2
    exchange = polls[-1]
    if exchange.result_code == PENDING_CODE.value:  # the give-up point is koosim's (U43)
        ctx.warn(
            f"queryInstance of the instances just created: still provisioning after koosim's assumed "
            f"polling (U43): {len(polls)} polls, the last answered {PENDING_CODE.value}",
            exchange,
        )
        return None
    if not ctx.expect(
        exchange, ResultCode.SUCCESS, "queryInstance of the instances just created must succeed"
    ):
        return None
    return instance_ids & set(listed_ids(exchange))


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


SECOND_PRODUCT = "OFFI000000000002"
"""The productId of a pay-per-use order's second billing item in ``per-product-instances``."""


@check(
    "idempotency.per-product-instances",
    rule="§5.1, A21",
    severity=Severity.WARNING,
    protocols=("v1",),
    needs=("newInstance", "instanceStatus"),
)
def per_product_instances(ctx: Context) -> None:
    """A pay-per-use order gets one instance per billing item (productId), each resend-safe.

    One specification with several billing items opens one instance per item: the calls share
    the ``orderId`` and differ in ``productId``, so the idempotency key is orderId + productId
    (§5.1, [S38] 2024-08-20; §4.1-d [S2][S3]). koosim sends the first item's subscription and a
    resend (new businessId), then the second item's and a resend. The two items must get two
    instanceIds, and each resend the instanceId of its own item. The rule is in the newer
    editions only (A21): a warning. V1 only: the V2 newInstance carries no productId (A21).
    """
    order = ctx.orders.order()
    items = {
        order.product_id: replace(order, extra={**order.extra, "productId": order.product_id}),
        SECOND_PRODUCT: replace(
            order, product_id=SECOND_PRODUCT, extra={**order.extra, "productId": SECOND_PRODUCT}
        ),
    }
    instances: dict[str, list[str]] = {}
    sent: list[Exchange] = []
    for product_id, item in items.items():
        copies = [
            ctx.send(
                item.new_instance_fields(ctx.orders.business_id()),
                f"newInstance productId {product_id} ({kind})",
            )
            for kind in ("first", "resend")
        ]
        if not all(
            ctx.expect(e, ResultCode.SUCCESS, f"newInstance for billing item {product_id}") for e in copies
        ):
            return
        for index in succeeded_without(copies):
            ctx.fail(f"newInstance for productId {product_id} succeeded without an instanceId", copies[index])
        ids = answered_ids(copies)
        if len(ids) > 1:
            ctx.fail(
                f"a resend for the same orderId + productId {product_id} got a different instance", *copies
            )
        instances[product_id] = ids
        sent.extend(copies)
    first, second = (instances[p] for p in items)
    if shared := sorted(set(first) & set(second)):
        ctx.fail(
            f"two productIds of one pay-per-use order got the same instance {shared[0]}:"
            " the key is orderId + productId",
            *sent,
        )


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
    release = release_call(ctx.target.protocol, created.instance_id, created.order.order_id)
    _resent(ctx, release, "releaseInstance")


@check(
    "idempotency.license-resend",
    rule="§6.1, U24",
    severity=Severity.WARNING,
    needs=("license", "getLicense"),
)
def license_resend(ctx: Context) -> None:
    """A resent getLicense for the same order returns the License created before.

    The rule is the License page's: "for the same order number" the merchant answers success
    with the License it created and creates no new one (§6.1, [S75]); each copy carries a new
    ``businessId``, as the page says every request does. The answer table was not read: the
    member koosim compares, ``license``, is U24, so the check reports a warning.
    """
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


def license_async_request(ctx: Context, order: Order, event_id: str, fingerprint: str) -> dict[str, str]:
    """One getLicenseAsync body for ``order`` as §6.2's table lists it, in the target's profile:
    ``expireTime`` only for yearly/monthly (where the table makes it mandatory)."""
    return order.license_async_fields(
        event_id,
        ctx.orders.license_effective_time(),
        period=ctx.target.profile.billing == "period",
        device_fingerprint=fingerprint,
    )


@check(
    "idempotency.license-async-resend",
    rule="§6.2",
    needs=("getLicenseAsync",),
)
def license_async_resend(ctx: Context) -> None:
    """A resent getLicenseAsync (the same ``eventId`` + ``deviceFingerprint``) gets the same
    License and creates none; another ``eventId`` is a new request.

    The rule is the getLicenseAsync page's (§6.2, [S52]): the marketplace may resend, and "for
    the same request" the merchant returns the same License and creates no new one; the eventId
    with the device fingerprint tells a repeat from a new request. Two different licences for
    one request break it (an error). The answer table is not read (U47): a copy answering other
    than 000000, a success naming no ``license``, and a new request answered with the licence of
    the first are warnings.
    """
    order = ctx.orders.order()
    fingerprint = ctx.orders.device_fingerprint()
    request = license_async_request(ctx, order, ctx.orders.event_id(), fingerprint)
    copies = [ctx.send(request, f"getLicenseAsync (copy {n + 1})") for n in range(1 + RESENDS)]
    for index, exchange in enumerate(copies):
        if exchange.result_code != ResultCode.SUCCESS:
            ctx.warn(
                f"getLicenseAsync copy {index + 1} of one request answered {describe(exchange)}; "
                "koosim expects 000000 (the answer table is not read, ASSUMPTION U47)",
                exchange,
            )
    for index in succeeded_without(copies, "license"):
        ctx.warn(
            f"getLicenseAsync copy {index + 1} succeeded without a license member (the answer "
            "table is not read, ASSUMPTION U47: koosim cannot compare the licences)",
            copies[index],
        )
    codes = answered_ids(copies, "license")
    if len(codes) > 1:
        ctx.fail(
            f"one getLicenseAsync request (the same eventId and deviceFingerprint), resent, got "
            f"{len(codes)} different licences: the same request must get the same License and "
            "create none (§6.2)",
            *copies,
        )
    fresh = license_async_request(ctx, order, ctx.orders.event_id(), fingerprint)
    new = ctx.send(fresh, "getLicenseAsync (another eventId: a new request)")
    if new.result_code != ResultCode.SUCCESS:
        ctx.warn(
            f"getLicenseAsync with another eventId (a new request, §6.2) answered {describe(new)}; "
            "koosim expects 000000 (ASSUMPTION U47)",
            new,
        )
    elif codes and new.answer_field("license") in codes:
        ctx.warn(
            "getLicenseAsync with another eventId, a new request (§6.2), got the licence of the "
            "earlier request (the answer table is not read, ASSUMPTION U47)",
            new,
            copies[0],
        )


ABANDON_AFTER = 0.001
"""How long the marketplace waits for the first deliveries in ``converges-after-failures``: far
below any merchant's processing time, so those deliveries count as failed while the merchant
still processes them."""


ABANDONED = Failure(
    FailureKind.LATE,
    f"Call interface failed: the marketplace stopped waiting after {ABANDON_AFTER * 1000:g} ms",
    "§3.3",
    transient=True,
)
"""A delivery the marketplace gave up on while the merchant still processed it."""


@check("idempotency.converges-after-failures", rule="§4.1")
def converges_after_failures(ctx: Context) -> None:
    """Resends after deliveries the marketplace gave up on converge on one instanceId.

    The marketplace sends newInstance and stops waiting after 1 ms, while the merchant is still
    processing it: the first delivery's connection is closed unread; for the second the
    simulator keeps listening (the marketplace does not) to learn what it created. It resends
    per newInstance's delivery policy (docs/protocol.md §10.1: V1 every 3 minutes, V2 after 1 s,
    2 s, 4 s, U11), on the marketplace clock (``--time-scale``, ×3600 by default: 3 minutes
    pass in 50 ms), until an answer arrives, then one late copy comes. Every answer and queryInstance must
    show a single instance for the order. The first delivery's exchange appears only as
    evidence of a failure: it has no answer by design.
    """
    policy = ctx.policy("newInstance")
    if not policy.cadence.resends:
        ctx.skip(f"the delivery policy allows no resend ({policy.describe()})")
    # Every delivery here counts as failed (abandoned, or not yet answered) until one is
    # accepted, so the schedule goes on whatever the failure: the policy's cadence, not its
    # trigger (U11 resends only after a timeout or no answer, which an abandoned call is).
    delivery = Delivery(policy, ctx.clock)
    order = ctx.orders.order()
    abandoned = min(2, policy.cadence.resends)  # at least one delivery left for an answer
    given_up: list[Exchange] = []
    listening: list[Future[Exchange]] = []
    answered: list[Exchange] = []
    outcome: Exchange | None = None
    with ThreadPoolExecutor(max_workers=abandoned) as pool:
        while (due := delivery.next_due) is not None:
            ctx.clock.sleep_until(due)
            attempt = delivery.begin()
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
            failure = delivery_failure(seen, deadline=ctx.target.timeout) if seen is not None else ABANDONED
            delivery.finish(failure)
            if failure is None:
                outcome = seen
                break
        overheard = [future.result() for future in listening]  # each bounded by the call's deadline
    ctx.exchanges[:0] = overheard
    deliveries = [*given_up, *overheard, *answered]
    if outcome is None:
        ctx.abort(
            f"newInstance was not accepted after {len(deliveries)} deliveries "
            f"({policy.describe()}): last {describe(deliveries[-1])}; {delivery.summary()}",
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
