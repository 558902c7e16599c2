"""What a check is, what it finds, and the context it runs in.

A check is a small function registered under a stable dotted id, of one of two typed kinds.
*Active* checks (:class:`ActiveRule`, ``function(ctx)``) drive the merchant through the
transport and compare answers with the rules; *exchange* checks (:class:`AnswerRule`,
``function(exchange, target) -> problem | None``) look at every exchange the run produced
(schema conformance, HTTP 200, the deadline) without sending anything themselves. What one
answer breaks is a :class:`Breach` (which check, what is wrong, on which exchange); what an
active check records is a :class:`Finding`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, Protocol

from simulator.clock import Clock
from simulator.delivery import (
    Delivery,
    DeliveryOverride,
    DeliveryPolicy,
    deliver,
    delivery_failure,
    policy_for,
)
from simulator.model import Order, OrderFactory
from simulator.openapi import InboundCall, InboundLog
from simulator.protocol import ResultCode
from simulator.protocol.apig import GatewayRefusal
from simulator.protocol.profiles import KIT
from simulator.transport import PRODUCE, Exchange, Tamper, Target, Transport, send_at_once


class Severity(StrEnum):
    ERROR = "error"
    """A rule a page states (docs/protocol.md cites it), or the stricter side of an ambiguity
    (A-numbers, §11): breaking it fails the run."""
    WARNING = "warning"
    """A rule resting on an ASSUMPTION (U-numbers, §12), the weaker side of an ambiguity or
    secondary evidence only: reported, never failing (§0)."""


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WARNED = "warned"
    SKIPPED = "skipped"


@dataclass
class Finding:
    message: str
    exchanges: list[Exchange] = field(default_factory=list)
    severity: Severity | None = None
    """None: the check's own severity. :attr:`Severity.WARNING` for the part of an error check
    that rests on an ASSUMPTION (e.g. which refusal code, U2): it never fails the run."""

    def fails(self, check: Check) -> bool:
        """Whether this finding fails ``check`` (rather than only warning)."""
        return check.severity is Severity.ERROR and self.severity is not Severity.WARNING


MERCHANT_INTERFACES = frozenset({"produce", "sync"})


class ActiveRule(Protocol):
    """An active check: drives the merchant through ``ctx`` and records findings on it."""

    def __call__(self, ctx: Context, /) -> None: ...


class AnswerRule(Protocol):
    """A rule about one answer: what is wrong with ``exchange`` (None: nothing)."""

    def __call__(self, exchange: Exchange, target: Target, /) -> str | None: ...


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: Severity
    rule: str
    """Where protocol.md states the rule, e.g. ``§2``."""
    doc: str
    drive: ActiveRule | None = None
    """What an active check does (exactly one of ``drive`` and ``answer_rule`` is set)."""
    answer_rule: AnswerRule | None = None
    """What a per-exchange check finds wrong with one answer."""
    protocols: frozenset[str] = frozenset({"v1", "v2"})
    interfaces: frozenset[str] = MERCHANT_INTERFACES
    """The marketplace interfaces whose calls the check is about: the merchant's produce and sync
    interfaces (what ``verify`` runs), or the order notification the console sends."""
    needs: frozenset[str] = frozenset()
    """The interfaces (activities, ``kit``, ``license``) the product must have for the check to
    apply (docs/protocol.md §1.2): outside the target's profile it is skipped, never failed
    (:func:`applicability`). Steps about other, optional interfaces are left out in the check."""
    by_request: bool = False
    """Run only when asked for by its id (``--checks <id>``, ``verify --debug-orders``), never as
    part of the whole catalog: e.g. the debug-order replay sends the fixed MOCK order IDs, which
    a merchant that keeps its data has seen before."""

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def per_exchange(self) -> bool:
        """Whether the check judges every exchange (``answer_rule``) rather than sending calls."""
        return self.answer_rule is not None

    def judge(self, exchange: Exchange, target: Target) -> str | None:
        """A per-exchange check's verdict on one answer: the problem, or None."""
        if self.answer_rule is None:
            raise TypeError(f"{self.id} is an active check: it judges no single answer")
        return self.answer_rule(exchange, target)

    def play(self, ctx: Context) -> None:
        """Run an active check in ``ctx``."""
        if self.drive is None:
            raise TypeError(f"{self.id} judges single answers: it drives no calls")
        self.drive(ctx)


@dataclass(frozen=True)
class Breach:
    """A rule of the catalog that one answer breaks: which check, and what is wrong."""

    check: Check
    message: str
    exchange: Exchange

    @property
    def check_id(self) -> str:
        return self.check.id

    @property
    def severity(self) -> Severity:
        return self.check.severity


def applicability(check: Check, target: Target) -> str | None:
    """Why ``check`` does not apply to ``target`` (its protocol, its product profile, a missing
    sync key), or None when it does: the one decision verify, the console and the plugin share,
    taken before anything is sent (docs/protocol.md §1.2)."""
    if target.protocol not in check.protocols:
        return f"applies to {'/'.join(sorted(check.protocols))} only"
    reason = target.profile.skip_reason(check.needs, target.protocol)
    if reason is not None:
        return reason
    if KIT in check.needs and not target.sync_key:
        return "no sync key configured (KOOSIM_SYNC_KEY): no Kit sync call is sent without it"
    return None


class CheckSkipped(Exception):
    """The check does not apply to this target (wrong protocol, no sync key, …)."""


class CheckAborted(Exception):
    """A step the rest of the check depends on failed; the finding is already recorded."""


def describe(exchange: Exchange) -> str:
    """What came back, in a few words: the resultCode, or the transport's or HTTP's problem."""
    if exchange.error is not None:
        return exchange.error
    code = exchange.result_code
    if code is not None:
        return ResultCode.describe(code)
    if exchange.response_json is None:
        return f"HTTP {exchange.status} with a body that is not JSON"
    return f"HTTP {exchange.status}, JSON without a string resultCode"


class Context:
    """Everything an active check needs: the target, a transport that records, order ids."""

    CONCURRENT_COPIES = 5

    def __init__(
        self,
        target: Target,
        transport: Transport,
        orders: OrderFactory,
        delivery: DeliveryOverride | None = None,
        inbound: InboundLog | None = None,
        seen: Sequence[Exchange] = (),
    ) -> None:
        self.target = target
        self.delivery = delivery
        """The user's change to the delivery policies, as the settings give it (None: the
        published ones, docs/protocol.md §10.1); the run passes it down."""
        self.inbound = inbound
        """The open API's log of the merchant's calls (None: no open API runs): a check listens
        to it while it drives the merchant (``conversation.*``)."""
        self.seen = seen
        """The exchanges of the run before this check (what the merchant answered earlier)."""
        self.transport = transport
        self.orders = orders
        self.findings: list[Finding] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    # --- the marketplace's clock and delivery policies ------------------------------------------

    @property
    def clock(self) -> Clock:
        """The marketplace's clock (the target's, built once from the settings)."""
        return self.target.clock

    def policy(self, activity: str, interface: str = PRODUCE) -> DeliveryPolicy:
        """How the marketplace delivers ``activity`` to this target (§10.1), with the override."""
        return policy_for(interface, self.target.protocol, activity, self.delivery)

    def deliver(self, fields: Mapping[str, Any], label: str = "") -> tuple[Delivery, list[Exchange]]:
        """Deliver a produce call as the marketplace does: sent, and resent on failure per its
        policy (:meth:`policy`) on the marketplace clock, until accepted, parked or cancelled.
        Every attempt is recorded; returns the delivery (its timeline) and its exchanges."""
        label = label or str(fields.get("activity", ""))
        delivery = Delivery(self.policy(str(fields.get("activity", ""))), self.clock)

        def send(number: int) -> Exchange:
            shown = label if number == 1 else f"{label} (delivery {number})"
            return self._record(self.transport.send(fields, label=shown, attempt=number))

        deadline = self.target.timeout
        return delivery, deliver(
            delivery, send, lambda exchange: delivery_failure(exchange, deadline=deadline)
        )

    # --- sending -------------------------------------------------------------------------------

    def _record(self, exchange: Exchange) -> Exchange:
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def send(self, fields: Mapping[str, Any], label: str = "", tamper: Tamper | None = None) -> Exchange:
        return self._record(
            self.transport.send(fields, tamper=tamper, label=label or fields.get("activity", ""))
        )

    def sync(
        self, call: str, body: Mapping[str, Any], label: str = "", tamper: Tamper | None = None
    ) -> Exchange:
        if not self.target.sync_key:
            raise CheckSkipped("no sync key configured (KOOSIM_SYNC_KEY)")
        return self._record(self.transport.sync(call, body, tamper=tamper, label=label or call))

    def concurrently(self, calls: Iterable[Mapping[str, Any]], label: str) -> list[Exchange]:
        """Send the calls at once, each on its own connection, as simultaneous resends arrive."""

        def copy(index: int, fields: Mapping[str, Any]) -> Callable[[Transport], Exchange]:
            return lambda transport: transport.send(
                fields, label=f"{label} (copy {index + 1})", attempt=index + 1
            )

        exchanges = send_at_once(self.target, [copy(index, fields) for index, fields in enumerate(calls)])
        for exchange in exchanges:
            self._record(exchange)
        return exchanges

    def applies(self, fields: Mapping[str, Any]) -> bool:
        """Whether the target's product profile has the activity ``fields`` call (§1.2): a
        check leaves out the steps about interfaces the product does not implement."""
        activity = fields.get("activity")
        return not isinstance(activity, str) or self.target.profile.requires(activity, self.target.protocol)

    # --- judging ---------------------------------------------------------------------------------

    def fail(self, message: str, *exchanges: Exchange) -> None:
        self.findings.append(Finding(message, list(exchanges)))

    def warn(self, message: str, *exchanges: Exchange) -> None:
        """Record a finding that rests on an ASSUMPTION: a warning even in an error check."""
        self.findings.append(Finding(message, list(exchanges), Severity.WARNING))

    def abort(self, message: str, *exchanges: Exchange) -> NoReturn:
        self.fail(message, *exchanges)
        raise CheckAborted(message)

    def inbound_mark(self) -> int | None:
        """Where the open API's log stands now (None: no open API runs); see
        :meth:`unpublished_gateway_refusal`."""
        return None if self.inbound is None else self.inbound.total

    def unpublished_gateway_refusal(self, mark: int | None) -> InboundCall | None:
        """A Querying-an-Order call of the merchant, logged since ``mark``, that the API gateway
        refused for a reason no page states (ASSUMPTION U40: ``apig.Reason.published`` is False).
        A newInstance refused after such a refusal rests on koosim's assumption: a warning."""
        if self.inbound is None or mark is None:
            return None
        for call in self.inbound.since(mark):
            gateway = call.gateway
            if (
                call.api == "queryOrder"
                and isinstance(gateway, GatewayRefusal)
                and not gateway.reason.published
            ):
                return call
        return None

    @staticmethod
    def skip(reason: str) -> NoReturn:
        raise CheckSkipped(reason)

    def expect(self, exchange: Exchange, code: ResultCode, why: str) -> bool:
        """Record a finding unless the merchant answered ``code``."""
        if exchange.result_code == code.value:
            return True
        self.fail(f"{why}: expected {code.value} ({code.meaning}), got {describe(exchange)}", exchange)
        return False

    def refused(self, exchange: Exchange, code: ResultCode, why: str, assumption: str = "U2") -> bool:
        """Record a finding unless the merchant refused the call; the code it refused with is
        judged only as a warning, since which code answers which fault is an ASSUMPTION
        (``assumption``, by default U2: docs/protocol.md §3.2). True when it was refused."""
        if exchange.result_code == code.value:
            return True
        if exchange.result_code is None or exchange.result_code == ResultCode.SUCCESS.value:
            self.fail(f"{why}: expected a refusal ({code.value}), got {describe(exchange)}", exchange)
            return False
        self.warn(
            f"{why}: refused with {describe(exchange)}; koosim expects {code.value} ({code.meaning}), "
            f"which no page states (ASSUMPTION {assumption})",
            exchange,
        )
        return True

    def require(self, exchange: Exchange, code: ResultCode, why: str) -> Exchange:
        """Like :meth:`expect`, but the rest of the check cannot go on without it."""
        if not self.expect(exchange, code, why):
            raise CheckAborted(why)
        return exchange

    # --- common steps ----------------------------------------------------------------------------

    def new_instance(
        self, order: Order | None = None, label: str = "newInstance", prerequisite: bool = True
    ) -> Provisioned:
        """Order a new instance; the check stops here if the merchant does not create one.

        As a ``prerequisite`` (the default) a failure says so ("prerequisite newInstance failed:
        …") rather than blaming the rule the check was about to test (docs/protocol.md §13 K34).
        """
        order = order or self.orders.order()
        mark = self.inbound_mark()
        exchange = self.send(order.new_instance_fields(self.orders.business_id()), label=label)
        prefix = "prerequisite newInstance failed: " if prerequisite else ""
        if exchange.result_code != ResultCode.SUCCESS.value:
            if refused := self.unpublished_gateway_refusal(mark):
                message = (
                    f"{prefix}newInstance got {describe(exchange)} after the open API's gateway refused "
                    f"the merchant's Querying-an-Order call for a reason no page states "
                    f"({'; '.join(refused.problems) or refused.code}): that refusal is ASSUMPTION U40, "
                    "so this is a warning"
                )
                self.warn(message, exchange)
                raise CheckAborted(message)
            self.abort(
                f"{prefix}a valid newInstance must be accepted: expected {ResultCode.SUCCESS.value} "
                f"({ResultCode.SUCCESS.meaning}), got {describe(exchange)}",
                exchange,
            )
        instance_id = exchange.answer_field("instanceId")
        if not isinstance(instance_id, str) or not instance_id:
            self.abort(f"{prefix}newInstance succeeded without an instanceId", exchange)
        return Provisioned(order, instance_id, exchange)


@dataclass(frozen=True)
class Provisioned:
    """An order the merchant accepted, the instanceId it gave, and the exchange that gave it."""

    order: Order
    instance_id: str
    exchange: Exchange


REGISTRY: dict[str, Check] = {}
FAMILY_ORDER = (
    "security",
    "lifecycle",
    "idempotency",
    "sync",
    "conversation",
    "contract",
    "timing",
    "notification",
)


def catalog(*, by_request: bool = False) -> list[Check]:
    """Every check of the merchant's interfaces (what ``verify`` runs), by family as in
    :data:`FAMILY_ORDER`; the per-exchange ones come last. The order-notification rules, which
    the console applies to the notices it sends, are in :data:`REGISTRY` too. ``by_request``:
    with the checks run only when named (:attr:`Check.by_request`)."""
    chosen = (
        check
        for check in REGISTRY.values()
        if check.interfaces & MERCHANT_INTERFACES and (by_request or not check.by_request)
    )
    return sorted(chosen, key=lambda c: (c.per_exchange, FAMILY_ORDER.index(c.family)))


def _describe(check_id: str, function: object) -> tuple[str, str]:
    if check_id in REGISTRY:
        raise ValueError(f"duplicate check id {check_id}")
    title, _, doc = (getattr(function, "__doc__", None) or check_id).strip().partition("\n")
    return title.strip(), " ".join(doc.split())


def check(
    check_id: str,
    *,
    rule: str,
    severity: Severity = Severity.ERROR,
    protocols: Iterable[str] = ("v1", "v2"),
    needs: Iterable[str] = ("newInstance",),
    by_request: bool = False,
) -> Callable[[ActiveRule], ActiveRule]:
    """Register an active check: ``function(ctx)`` drives the merchant and records findings.

    ``needs``: the interfaces the product must have for the check to apply (§1.2);
    ``by_request``: left out of the whole catalog, run only when named (:attr:`Check.by_request`)."""

    def decorate(function: ActiveRule) -> ActiveRule:
        title, doc = _describe(check_id, function)
        REGISTRY[check_id] = Check(
            check_id,
            title,
            severity,
            rule,
            doc,
            drive=function,
            protocols=frozenset(protocols),
            needs=frozenset(needs),
            by_request=by_request,
        )
        return function

    return decorate


def exchange_check(
    check_id: str,
    *,
    rule: str,
    severity: Severity = Severity.ERROR,
    interfaces: Iterable[str] = MERCHANT_INTERFACES,
) -> Callable[[AnswerRule], AnswerRule]:
    """Register a check of every exchange: ``function(exchange, target)`` returns a problem or None."""

    def decorate(function: AnswerRule) -> AnswerRule:
        title, doc = _describe(check_id, function)
        REGISTRY[check_id] = Check(
            check_id, title, severity, rule, doc, answer_rule=function, interfaces=frozenset(interfaces)
        )
        return function

    return decorate
