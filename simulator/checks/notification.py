"""Order notification (订单通知, docs/protocol.md §9): the marketplace pushes an order's number to
the merchant's notification address, signed with the interface security token, retried for 3 hours
when it fails. The page publishes the order number and the 3 hours; the body's JSON name, the
signature scheme (koosim: like a Kit sync call, §2.4) and the expected answer are ASSUMPTION U41,
so both rules are warnings. ``verify`` does not run them (they are about the notices ``koosim
serve`` sends, not the merchant's produce or sync interfaces): :mod:`simulator.server.notify`
applies them to every attempt.
"""

from __future__ import annotations

from simulator.checks.answers import judge_exchange
from simulator.checks.base import Severity, describe, exchange_check
from simulator.protocol import ResultCode
from simulator.transport import Exchange, Target

NOTIFICATION = "notification"
"""The interface (and :class:`~simulator.transport.Target` protocol) of order notices."""


@exchange_check(
    "notification.accepted", rule="§9, U41", severity=Severity.WARNING, interfaces=(NOTIFICATION,)
)
def accepted(exchange: Exchange, target: Target) -> str | None:
    """An order notification signed with the security token is accepted.

    The answer passes the per-exchange checks (contract.*, timing.*) and says resultCode 000000
    (signature scheme: ASSUMPTION).
    """
    problems = [f"{breach.check_id}: {breach.message}" for breach in judge_exchange(exchange, target)]
    if exchange.result_code not in (None, ResultCode.SUCCESS.value):  # a missing one is reported above
        problems.append(f"the notice was not accepted: {describe(exchange)}")
    return "; ".join(problems) or None


@exchange_check("notification.token", rule="§9, U41", severity=Severity.WARNING, interfaces=(NOTIFICATION,))
def token(exchange: Exchange, target: Target) -> str | None:
    """An order notification with a wrong x-sign is refused with 000001.

    Applied to the copy of a notice sent with a wrong x-sign: a merchant that accepts unsigned
    notices can be fed fake orders (ASSUMPTION: refused like §4).
    """
    if exchange.result_code == ResultCode.AUTH_FAILED.value:
        return None
    return f"a notice with a wrong x-sign must be refused with 000001, got {describe(exchange)}"


@exchange_check("notification.repeat", rule="§9, U41", severity=Severity.WARNING, interfaces=(NOTIFICATION,))
def repeat(exchange: Exchange, target: Target) -> str | None:
    """A repeated order notification is accepted again.

    Applied to a second copy of an accepted notice (same order number, fresh signature): the
    marketplace keeps calling for 3 hours when it sees no success [S59], so a merchant that
    refuses a notice it already knows gets it again and again, and the order is reported under
    生产接口消息 (what a success looks like: ASSUMPTION U41, resultCode 000000).
    """
    if exchange.result_code == ResultCode.SUCCESS.value and not judge_exchange(exchange, target):
        return None
    return f"a repeated notice must be accepted like the first, got {describe(exchange)}"
