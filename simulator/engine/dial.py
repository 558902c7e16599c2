"""The marketplace's dial test (拨测): one probe of every registered interface, judged as the
marketplace judges a call (docs/protocol.md §10.3, U14).

The page [S25] says the registered interface address is probed every morning and every afternoon
"to check that orders can be placed", and that an interface failing the probe five days in a row
gets the product frozen and hidden. It does not say what a probe sends. koosim's reading
(ASSUMPTION U14, so a dial test is never the reason for an ``error`` verdict of a check):

- **one probe per registered order interface**, the one through which an order is placed: the
  produce interface of a SaaS product (joint-operation SaaS included) and the License interface
  of a License product. The Kit sync address places no order and is not probed;
- **the probe is a test order**: ``newInstance`` (``getLicense`` for a License product) with
  ``testFlag=1``, the flag the pages define for debugging calls (§4, U10), built from the
  product's own order fields, correctly signed;
- **a probe fails** exactly as any call fails (§3.4): no answer within the 5 s deadline, an
  HTTP status other than 200, a body that does not parse, no ``resultCode`` or one other than
  ``000000`` (:func:`~simulator.delivery.delivery_failure`, whose 异常信息 are the
  debugging FAQ's words), and — for ``newInstance`` — a success without an ``instanceId``
  (§10.4 D4).

:func:`dial_test` runs one against a :class:`~simulator.transport.Target`, stamped with the
:class:`~simulator.clock.Clock`'s marketplace time; the days and the countdown are
:mod:`simulator.engine.delisting`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from simulator.clock import Clock, Stamp, isoformat
from simulator.delivery import delivery_failure
from simulator.engine.delisting import MARKETPLACE_TZ
from simulator.engine.record import exchange_record
from simulator.model import OrderFactory
from simulator.redaction import printable, redact
from simulator.transport import Exchange, Target, Transport

DIAL_RULE = "§10.3, U14"
NO_INSTANCE_ID = "Debugging failed. The interface response does not contain instanceId."


@dataclass(frozen=True)
class DialOutcome:
    """One probe of one registered interface: passed, or the failure in the FAQ's words."""

    interface: str
    activity: str
    failure: str | None
    rule: str
    exchange: Exchange

    @property
    def passed(self) -> bool:
        return self.failure is None

    def as_dict(self, secrets: Iterable[str]) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "activity": self.activity,
            "passed": self.passed,
            "failure": None if self.failure is None else printable(redact(self.failure, secrets)),
            "rule": self.rule,
            "exchange": exchange_record(self.exchange, secrets),
        }


@dataclass(frozen=True)
class DialTest:
    """One dial test of a target: when (both clocks) and one outcome per probed interface."""

    url: str
    at: Stamp
    outcomes: tuple[DialOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    @property
    def market_at(self) -> datetime:
        return self.at.market

    def summary(self) -> str:
        """One line: passed, or which interface failed and why."""
        when = self.at.market.astimezone(MARKETPLACE_TZ).isoformat(timespec="minutes")
        if self.passed:
            probed = ", ".join(f"{o.interface} ({o.activity})" for o in self.outcomes)
            return f"dial test at {when} (marketplace time): passed — {probed}"
        failed = "; ".join(
            f"{o.interface} ({o.activity}): {o.failure}" for o in self.outcomes if not o.passed
        )
        return f"dial test at {when} (marketplace time): FAILED — {failed}"

    def as_dict(self, secrets: Iterable[str]) -> dict[str, Any]:
        secrets = tuple(secrets)
        return {
            "url": redact(self.url, secrets),
            "at": self.at.as_dict(),
            "passed": self.passed,
            "outcomes": [outcome.as_dict(secrets) for outcome in self.outcomes],
        }


def dial_probes(target: Target, orders: OrderFactory) -> list[tuple[str, dict[str, str]]]:
    """The probes of one dial test: (the interface, the call's fields), U14 (module docstring)."""
    order = orders.order(test=True)
    if target.profile.product == "license" and target.profile.license_call == "getLicenseAsync":
        fields = order.license_async_fields(orders.event_id(), orders.license_effective_time())
        return [("License interface", fields | {"testFlag": "1"})]
    if target.profile.product == "license":
        return [("License interface", order.license_fields(orders.business_id()) | {"testFlag": "1"})]
    return [("produce interface", order.new_instance_fields(orders.business_id()))]


def judge_probe(activity: str, exchange: Exchange) -> tuple[str | None, str]:
    """A probe's failure (None: passed) and the rule it rests on."""
    failure = delivery_failure(exchange)
    if failure is not None:
        return failure.message, f"{failure.rule}, {DIAL_RULE}"
    if activity == "newInstance":
        instance_id = exchange.answer_field("instanceId")
        if not isinstance(instance_id, str) or not instance_id:
            return NO_INSTANCE_ID, f"§10.4 D4, {DIAL_RULE}"
    return None, DIAL_RULE


def dial_test(target: Target, clock: Clock, *, seed: int | str | None = None) -> DialTest:
    """Run one dial test against ``target`` now (marketplace time from ``clock``).

    Never raises for anything the merchant does: an unreachable merchant is a failed probe.
    ``seed`` makes the test order's ids reproducible (default: the marketplace instant, so two
    dial tests never place the same order).
    """
    at = clock.stamp()
    orders = OrderFactory(isoformat(at.market) if seed is None else seed, now=at.market)
    transport = Transport(replace(target, clock=clock))  # its exchanges stamped on the same clock
    outcomes = []
    try:
        for interface, fields in dial_probes(target, orders):
            exchange = transport.send(fields, label=f"dial test: {fields['activity']} (testFlag=1)")
            failure, rule = judge_probe(fields["activity"], exchange)
            outcomes.append(DialOutcome(interface, fields["activity"], failure, rule, exchange))
    finally:
        transport.close()
    return DialTest(target.url, at, tuple(outcomes))
