"""Order notification (订单通知, docs/protocol.md §9): the marketplace pushes an order's number to
the merchant's notification address, and the merchant then calls Querying an Order (§8.1) to
learn what was bought.

What the page publishes [S59], and koosim plays:

- the marketplace pushes the **order number**: the notice koosim sends carries ``orderId``;
- a failed notification is retried for **3 hours**, then stops: each notice is a delivery with
  :data:`~simulator.delivery.ORDER_NOTIFICATION`'s policy, durable in ``koosim serve``
  (:mod:`~simulator.server.deliveries`);
- the failure and its 异常信息 appear under 生产接口消息, where 重新启动 sends it again by hand
  (the console's 生产接口消息 page, ``/api/messages``).

What no page publishes, and koosim assumes (**ASSUMPTION U41**, so every check on it is a
warning): the method and body (a POST of the JSON ``{"orderId": …}`` and nothing else); how the
接口安全令牌 (interface security token) authenticates the call (koosim signs it as a Kit sync call
is signed, §2.4/U25, with the token as the key: ``x-timestamp``, ``x-nonce``, ``x-sign``); the
answer the marketplace expects (HTTP 200 JSON with ``resultCode`` ``000000``, like every other
interface, §3.4); the cadence inside the 3 hours (every 3 minutes); the timeout (§3.3's).

Each attempt is recorded as a run of kind ``notification`` judged by ``notification.accepted``;
with the first go, when asked, a copy with a wrong ``x-sign`` (``notification.token``: refused)
and the same notice again (``notification.repeat``: accepted again, as the marketplace's 3 hours
of retries demand). Neither copy is an attempt of the delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.checks import REGISTRY, Verdict
from simulator.checks.notification import NOTIFICATION
from simulator.checks.security import WRONG_SIGNATURE
from simulator.engine.run import CheckResult
from simulator.server import deliveries
from simulator.server.state import MarketState, NotConfigured
from simulator.store import RunRecorder
from simulator.transport import Exchange, Tamper, Target

ACTIVITY = "orderNotification"
MEMBERS = ("orderId",)
"""What a notice carries: the order number, the one member the page names [S59] (its JSON name
is U41's)."""
MAX_ORDER_ID = 64
"""The longest orderId the console accepts (an order number; queryOrder's is 64, U30)."""


class NotificationError(ValueError):
    """The notice cannot be sent as asked; the message names the problem."""


def template(market: MarketState) -> dict[str, str]:
    """A notice about the last order the marketplace sent, or about a debug order (§8.2)."""
    latest = market.store.marketplace.latest_order()
    return {"orderId": latest["order_id"] if latest is not None else "MOCKPERIODYEARNEW"}


ACCEPTED = REGISTRY["notification.accepted"]
TOKEN = REGISTRY["notification.token"]
REPEAT = REGISTRY["notification.repeat"]


def _target(market: MarketState) -> Target:
    settings = market.settings
    if not settings.notification_url:
        raise NotConfigured("no notification URL configured: set it on the target page first")
    if not settings.notification_token:
        raise NotConfigured("no interface security token configured: set it on the target page first")
    return Target(
        url=settings.notification_url,
        access_key=settings.notification_token,
        protocol=NOTIFICATION,
        timeout=settings.timeout,
    )


def _checked(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or not all(isinstance(value, str) for value in body.values()):
        raise NotificationError("the notice must be a JSON object of strings")
    order_id = body.get("orderId")
    if not order_id:
        raise NotificationError("orderId is required")
    if len(order_id) > MAX_ORDER_ID:
        raise NotificationError(f"orderId is at most {MAX_ORDER_ID} characters")
    unknown = sorted(set(body) - set(MEMBERS))
    if unknown:
        raise NotificationError(
            f"a notice carries the order number only (orderId, docs/protocol.md §9); not {', '.join(unknown)}"
        )
    return {"orderId": order_id}


def send_notification(
    market: MarketState, body: Any, *, check_token: bool = True, check_repeat: bool = True
) -> str:
    """Send one order notice as the first attempt of its delivery (then, when asked, a wrongly
    signed copy and a repeat of it, which are checks, not attempts); return the recorded run's id."""
    notice = _checked(body)
    target = _target(market)
    started = deliveries.begin_new(
        market,
        kind=NOTIFICATION,
        interface=NOTIFICATION,
        protocol=NOTIFICATION,
        activity=ACTIVITY,
        label=f"order notification {notice['orderId']}",
        target_url=target.url,
        body=notice,
    )
    try:
        run_id, exchange = _send(
            market, target, notice, number=1, check_token=check_token, check_repeat=check_repeat
        )
    except BaseException:
        market.store.deliveries.release(started.id, market.owner)
        raise
    deliveries.finish(market, started, exchange, deliveries.judge(exchange))
    return run_id


def _send(
    market: MarketState,
    target: Target,
    notice: Mapping[str, str],
    *,
    number: int,
    check_token: bool = False,
    check_repeat: bool = False,
) -> tuple[str, Exchange]:
    """One attempt (plus, when asked, the wrongly signed copy and the repeat); returns the run id
    and the attempt's exchange."""
    label = f"order notification {notice['orderId']}" + (f", attempt {number}" if number > 1 else "")
    plan = [(ACCEPTED, Tamper(), label)]
    if check_token:
        plan.append((TOKEN, Tamper(signature=WRONG_SIGNATURE), "order notification, wrong x-sign"))
    if check_repeat:
        plan.append((REPEAT, Tamper(), "order notification, sent again"))
    recording = RunRecorder.start(market.store, target, kind=NOTIFICATION, planned=len(plan))
    exchanges: list[Exchange] = []
    try:
        for check, tamper, text in plan:
            if check is REPEAT and deliveries.judge(exchanges[0]) is not None:
                reason = "the notice was not accepted the first time: nothing to repeat"
                recording.add(CheckResult(check, Verdict.SKIPPED, skip_reason=reason))
                continue
            exchange = recording.transport.post_signed(
                target.url,
                dict(notice),
                target.access_key,
                interface=NOTIFICATION,
                activity=ACTIVITY,
                tamper=tamper,
                label=text,
                attempt=number,
            )
            exchanges.append(exchange)
            problem = check.judge(exchange, target)
            recording.judge(check, exchange, [] if problem is None else [problem])
    finally:
        recording.finish()
    return recording.id, exchanges[0]


def _resend(market: MarketState, row: Mapping[str, Any], number: int) -> Exchange:
    """Attempt ``number`` of a stored notice (the scheduler's, or a 重新启动)."""
    target = _target(market)
    if target.url != row["target_url"]:
        raise NotConfigured(f"the notification URL is {target.url} now, not {row['target_url']}")
    return _send(market, target, _checked(row["body"]), number=number)[1]


deliveries.register(NOTIFICATION, _resend)
