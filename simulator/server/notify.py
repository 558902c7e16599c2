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

import time
from datetime import UTC, datetime
from typing import Any

from simulator.checks import Check, Finding, Severity, Verdict
from simulator.checks.base import describe
from simulator.protocol import ResultCode, sign_sync
from simulator.server.state import Marketplace, NotConfigured
from simulator.store import RunRecorder
from simulator.suite import CheckResult, Run
from simulator.transport import Exchange, Target, Transport, json_bytes, new_nonce, now_ms

ORDER_TYPES = ("NEW", "TRIAL", "TRIAL_TO_FORMAL", "UNSUBSCRIBE", "RENEW", "CHANGE")
"""The events a notice announces: queryOrder's orderType values (doc enumeration)."""
WRONG_SIGNATURE = "0" * 64


class NotificationError(ValueError):
    """The notice cannot be sent as asked; the message names the problem."""


def template(market: Marketplace) -> dict[str, str]:
    """A notice about the last order the marketplace sent, or about a debug order."""
    order_id, line_id = "MOCKPERIODYEARNEW", "MOCKPERIODYEARNEW-000001"
    latest = market.store.latest_order()
    if latest is not None:
        order_id, line_id = latest["order_id"], latest["order_line_id"]
    return {
        "orderId": order_id,
        "orderLineId": line_id,
        "orderType": "NEW",
        "eventTime": datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        "testFlag": "1",
    }


def _accepted(exchange: Exchange) -> str | None:
    if not exchange.answered:
        return f"no answer: {exchange.error}"
    if exchange.status != 200:
        return f"HTTP {exchange.status}: the marketplace expects HTTP 200"
    body = exchange.response_json
    if not isinstance(body, dict):
        return "the answer is not a JSON object"
    if exchange.result_code != ResultCode.SUCCESS.value:
        return f"the notice was not accepted: {describe(exchange)}"
    if not isinstance(body.get("resultMsg"), str):
        return "the answer has no string resultMsg"
    return None


def _refused(exchange: Exchange) -> str | None:
    if exchange.result_code == ResultCode.AUTH_FAILED.value:
        return None
    return f"a notice with a wrong x-sign must be refused with 000001, got {describe(exchange)}"


ACCEPTED = Check(
    id="notification.accepted",
    title="An order notification signed with the security token is accepted",
    severity=Severity.ERROR,
    rule="§1",
    doc="HTTP 200, a JSON object, resultCode 000000 and a resultMsg (signature scheme: ASSUMPTION).",
    run=_accepted,
)
TOKEN = Check(
    id="notification.token",
    title="An order notification with a wrong x-sign is refused with 000001",
    severity=Severity.WARNING,
    rule="§1",
    doc="A merchant that accepts unsigned notices can be fed fake orders (ASSUMPTION: refused like §4).",
    run=_refused,
)


def _notice(target: Target, body: dict[str, Any], signature: str | None, label: str) -> Exchange:
    timestamp, nonce = str(now_ms()), new_nonce()
    return Exchange(
        interface="notification",
        protocol="notification",
        activity="orderNotification",
        method="POST",
        url=target.url,
        fields=body,
        request_headers={
            "Content-Type": "application/json;charset=UTF-8",
            "x-timestamp": timestamp,
            "x-nonce": nonce,
            "x-sign": signature or sign_sync(body, target.access_key, timestamp, nonce),
        },
        request_body=json_bytes(body),
        started_at=time.time(),
        label=label,
    )


def send_notification(market: Marketplace, body: Any, *, check_token: bool = True) -> str:
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
        protocol="notification",
        timeout=settings.timeout,
    )
    run = Run(target=target, seed=0)
    recorder = RunRecorder(market.store, kind="notification", planned=2 if check_token else 1)
    recorder.begin(run)
    transport = Transport(target, on_exchange=recorder.exchange)
    plan = [(ACCEPTED, None, f"order notification ({body['orderType']})")]
    if check_token:
        plan.append((TOKEN, WRONG_SIGNATURE, "order notification, wrong x-sign"))
    try:
        for check, signature, label in plan:
            # Transport signs only the produce and sync calls; a notice is built here and sent
            # over the same wire code, so it is timed, capped and recorded like every exchange.
            exchange = transport.perform(_notice(target, body, signature, label))
            run.exchanges.append(exchange)
            problem = check.run(exchange)
            verdict = Verdict.PASSED
            if problem is not None:
                verdict = Verdict.FAILED if check.severity is Severity.ERROR else Verdict.WARNED
            findings = [] if problem is None else [Finding(problem, [exchange])]
            result = CheckResult(check, verdict, findings, [exchange], exchange.elapsed)
            run.results.append(result)
            recorder.result(result)
    finally:
        transport.close()
        run.finished_at = time.time()
        recorder.finish(run)
    return run.id
