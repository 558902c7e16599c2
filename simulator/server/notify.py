"""Order notification (订单通知): the marketplace tells the merchant's notification URL that an
order event happened, signed with the interface security token, and checks the answer.

The seller docs say the notification is a POST of JSON to the URL the seller registers, with an
interface security token; they do not spell out the signature. ASSUMPTION: it is signed like
the user-authorization sync (protocol.md §4) with the token as the key: headers ``x-timestamp``
(ms), ``x-nonce`` and ``x-sign = hex(HMAC-SHA256(token, token + nonce + timestamp + canonical
body))``, and the merchant answers HTTP 200 JSON ``{"resultCode": "000000", "resultMsg": …}``
like every other interface. The body's members are an ASSUMPTION too (the order id, its line,
the event as queryOrder's ``orderType``, when it happened); the merchant is expected to call
queryOrder for the details.

Each notification is recorded as a run of kind ``notification`` with two checks: the notice is
accepted, and (when asked) a copy with a wrong ``x-sign`` is refused with 000001.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simulator.checks import REGISTRY
from simulator.checks.notification import NOTIFICATION
from simulator.checks.security import WRONG_SIGNATURE
from simulator.protocol.limits import COMPACT_TIME_FORMAT
from simulator.server.state import MarketState, NotConfigured
from simulator.store import RunRecorder
from simulator.transport import Tamper, Target

ORDER_TYPES = ("NEW", "TRIAL", "TRIAL_TO_FORMAL", "UNSUBSCRIBE", "RENEW", "CHANGE")
"""The events a notice announces: queryOrder's orderType values (doc enumeration)."""


class NotificationError(ValueError):
    """The notice cannot be sent as asked; the message names the problem."""


def template(market: MarketState) -> dict[str, str]:
    """A notice about the last order the marketplace sent, or about a debug order."""
    order_id, line_id = "MOCKPERIODYEARNEW", "MOCKPERIODYEARNEW-000001"
    latest = market.store.marketplace.latest_order()
    if latest is not None:
        order_id, line_id = latest["order_id"], latest["order_line_id"]
    return {
        "orderId": order_id,
        "orderLineId": line_id,
        "orderType": "NEW",
        "eventTime": datetime.now(UTC).strftime(COMPACT_TIME_FORMAT),
        "testFlag": "1",
    }


ACCEPTED = REGISTRY["notification.accepted"]
TOKEN = REGISTRY["notification.token"]


def send_notification(market: MarketState, body: Any, *, check_token: bool = True) -> str:
    """Send one order notice (and a wrongly signed copy); return the id of the recorded run."""
    if not isinstance(body, dict) or not all(isinstance(value, str) for value in body.values()):
        raise NotificationError("the notice must be a JSON object of strings")
    if body.get("orderType") not in ORDER_TYPES:
        raise NotificationError(f"orderType must be one of {', '.join(ORDER_TYPES)}")
    if not body.get("orderId"):
        raise NotificationError("orderId is required")
    settings = market.settings
    if not settings.notification_url:
        raise NotConfigured("no notification URL configured: set it on the target page first")
    if not settings.notification_token:
        raise NotConfigured("no interface security token configured: set it on the target page first")
    target = Target(
        url=settings.notification_url,
        access_key=settings.notification_token,
        protocol=NOTIFICATION,
        timeout=settings.timeout,
    )
    plan = [(ACCEPTED, Tamper(), f"order notification ({body['orderType']})")]
    if check_token:
        plan.append((TOKEN, Tamper(signature=WRONG_SIGNATURE), "order notification, wrong x-sign"))
    recording = RunRecorder.start(market.store, target, kind=NOTIFICATION, planned=len(plan))
    try:
        for check, tamper, label in plan:
            exchange = recording.transport.post_signed(
                target.url,
                body,
                target.access_key,
                interface=NOTIFICATION,
                activity="orderNotification",
                tamper=tamper,
                label=label,
            )
            problem = check.judge(exchange, target)
            recording.judge(check, exchange, [] if problem is None else [problem])
    finally:
        recording.finish()
    return recording.id
