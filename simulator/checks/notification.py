"""Order notification (订单通知): the console tells the merchant's notification URL that an order
event happened, signed with the interface security token (signature scheme: ASSUMPTION, like the
user-authorization sync, protocol.md §4). These rules judge the merchant's answers to those
notices; ``verify`` does not run them (they are about the console's notices, not the merchant's
produce or sync interfaces), :mod:`simulator.server.notify` applies them.
"""

from __future__ import annotations

from simulator.checks.answers import judge_exchange
from simulator.checks.base import Severity, describe, exchange_check
from simulator.protocol import ResultCode
from simulator.transport import Exchange, Target

NOTIFICATION = "notification"
"""The interface (and :class:`~simulator.transport.Target` protocol) of order notices."""


@exchange_check("notification.accepted", rule="§1", interfaces=(NOTIFICATION,))
def accepted(exchange: Exchange, target: Target) -> str | None:
    """An order notification signed with the security token is accepted.

    The answer passes the per-exchange checks (contract.*, timing.*) and says resultCode 000000
    (signature scheme: ASSUMPTION).
    """
    problems = [f"{breach.check_id}: {breach.message}" for breach in judge_exchange(exchange, target)]
    if exchange.result_code not in (None, ResultCode.SUCCESS.value):  # a missing one is reported above
        problems.append(f"the notice was not accepted: {describe(exchange)}")
    return "; ".join(problems) or None


@exchange_check("notification.token", rule="§1", severity=Severity.WARNING, interfaces=(NOTIFICATION,))
def token(exchange: Exchange, target: Target) -> str | None:
    """An order notification with a wrong x-sign is refused with 000001.

    Applied to the copy of a notice sent with a wrong x-sign: a merchant that accepts unsigned
    notices can be fed fake orders (ASSUMPTION: refused like §4).
    """
    if exchange.result_code == ResultCode.AUTH_FAILED.value:
        return None
    return f"a notice with a wrong x-sign must be refused with 000001, got {describe(exchange)}"
