"""A new order delivered as the marketplace delivers it: sent, resent on failure per the delivery
policy of the generation (docs/protocol.md §10.1), on the marketplace clock (§10)."""

from __future__ import annotations

from simulator.checks.base import Context, check
from simulator.checks.polling import listed_ids, poll_until_listed, still_provisioning
from simulator.clock import format_duration
from simulator.delivery import AFTER_LAST, DeliveryState
from simulator.model import query_fields
from simulator.protocol import ResultCode


@check("lifecycle.delivered-on-schedule", rule="§3.4, §10.1")
def delivered_on_schedule(ctx: Context) -> None:
    """A new order is accepted within the marketplace's delivery schedule, once.

    newInstance goes out and, while the merchant fails it (§3.4: any resultCode but 000000, no
    answer in time, a body that is not JSON, a status other than 200), is resent as the
    generation's policy says, on the marketplace clock (``--time-scale``): V1 every 3 minutes,
    60 times, then the order is cancelled automatically [S38]; V2 after 1 s, 2 s, 4 s on a
    timeout, HTTP 5xx, 000004 or 000005 (ASSUMPTION U11), then it is parked. The order must end
    delivered, and queryInstance must list its one instance. A delivery that needed resends is a
    warning with its timeline: the order went through, but every failed attempt was a failed call.
    """
    order = ctx.orders.order()
    delivery, exchanges = ctx.deliver(order.new_instance_fields(ctx.orders.business_id()), "newInstance")
    policy = delivery.policy
    timeline = "; ".join(delivery.timeline())
    state = delivery.state
    if state is not DeliveryState.DELIVERED:
        last = delivery.attempts[-1]
        span = format_duration(last.sent.market - delivery.attempts[0].sent.market)
        after = AFTER_LAST[state]
        if state is DeliveryState.CANCELLED:
            after += " (what the merchant receives then is on no page, U42: koosim sends nothing more)"
        ctx.abort(
            f"newInstance was never accepted: {len(exchanges)} deliveries over {span} of marketplace "
            f"time ({policy.describe()}); {after}. Timeline: {timeline}",
            *exchanges[-2:],
        )
    accepted = exchanges[-1]
    failed = len(exchanges) - 1
    if failed:
        ctx.warn(
            f"newInstance was accepted on delivery {len(exchanges)} after {failed} failed call(s) "
            f"({policy.name}: {policy.cadence.describe()}); each was a failed call (§3.4), and "
            f"frequent interface failures can get a product removed (§10.3, A42). Timeline: {timeline}",
            *exchanges,
        )
    instance_id = accepted.answer_field("instanceId")
    if not isinstance(instance_id, str) or not instance_id:
        ctx.abort("the accepted newInstance answer carries no instanceId (§4.1)", accepted)
    fields = query_fields(instance_id)
    if not ctx.applies(fields):
        return
    polls = poll_until_listed(ctx, [instance_id])  # while provisioning runs (§4.1-c, §10.2)
    if still_provisioning(ctx, polls, [instance_id], "queryInstance of the delivered order"):
        return
    query = polls[-1]
    if not ctx.expect(query, ResultCode.SUCCESS, "queryInstance of the delivered order must succeed"):
        return
    listed = listed_ids(query)
    if listed.count(instance_id) != 1:
        ctx.fail(
            f"queryInstance lists the delivered instance {listed.count(instance_id)} time(s), not once",
            accepted,
            query,
        )
