"""What a check is, what it finds, and the context it runs in.

A check is a small function registered under a stable dotted id. *Active* checks drive the
merchant through the transport and compare answers with the rules; *exchange* checks look at
every exchange the run produced (schema conformance, HTTP 200, the deadline) without sending
anything themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from simulator.model import Order, OrderFactory
from simulator.protocol import ResultCode
from simulator.resend import DEFAULT_POLICY, ResendPolicy
from simulator.transport import Exchange, Tamper, Target, Transport


class Severity(StrEnum):
    ERROR = "error"
    """A rule the marketplace states (doc): breaking it fails the run."""
    WARNING = "warning"
    """Our reading of robust practice where the docs are silent: reported, never failing."""


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WARNED = "warned"
    SKIPPED = "skipped"


@dataclass
class Finding:
    message: str
    exchanges: list[Exchange] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: Severity
    rule: str
    """Where protocol.md states the rule, e.g. ``§2``."""
    doc: str
    run: Callable[..., Any]
    protocols: frozenset[str] = frozenset({"v1", "v2"})
    per_exchange: bool = False

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


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
        resend_policy: ResendPolicy = DEFAULT_POLICY,
    ) -> None:
        self.target = target
        self.resend_policy = resend_policy
        """How the marketplace resends, as the settings give it (the run passes it down)."""
        self.transport = transport
        self.orders = orders
        self.findings: list[Finding] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

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
        calls = list(calls)
        barrier = threading.Barrier(len(calls))

        def send_one(numbered: tuple[int, Mapping[str, Any]]) -> Exchange:
            index, fields = numbered
            transport = Transport(self.target)
            try:
                barrier.wait(timeout=self.target.timeout)
                return transport.send(fields, label=f"{label} (copy {index + 1})", attempt=index + 1)
            finally:
                transport.close()

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            exchanges = list(pool.map(send_one, enumerate(calls)))
        for exchange in exchanges:
            self._record(exchange)
        return exchanges

    # --- judging ---------------------------------------------------------------------------------

    def fail(self, message: str, *exchanges: Exchange) -> None:
        self.findings.append(Finding(message, list(exchanges)))

    def abort(self, message: str, *exchanges: Exchange) -> NoReturn:
        self.fail(message, *exchanges)
        raise CheckAborted(message)

    @staticmethod
    def skip(reason: str) -> NoReturn:
        raise CheckSkipped(reason)

    def expect(self, exchange: Exchange, code: ResultCode, why: str) -> bool:
        """Record a finding unless the merchant answered ``code``."""
        if exchange.result_code == code.value:
            return True
        self.fail(f"{why}: expected {code.value} ({code.meaning}), got {describe(exchange)}", exchange)
        return False

    def require(self, exchange: Exchange, code: ResultCode, why: str) -> Exchange:
        """Like :meth:`expect`, but the rest of the check cannot go on without it."""
        if not self.expect(exchange, code, why):
            raise CheckAborted(why)
        return exchange

    # --- common steps ----------------------------------------------------------------------------

    def new_instance(self, order: Order | None = None, label: str = "newInstance") -> Provisioned:
        """Order a new instance; the check stops here if the merchant does not create one."""
        order = order or self.orders.order()
        exchange = self.send(order.new_instance_fields(self.orders.business_id()), label=label)
        self.require(exchange, ResultCode.SUCCESS, "a valid newInstance must be accepted")
        instance_id = exchange.answer_field("instanceId")
        if not isinstance(instance_id, str) or not instance_id:
            self.abort("newInstance succeeded without an instanceId", exchange)
        return Provisioned(order, instance_id, exchange)


@dataclass(frozen=True)
class Provisioned:
    """An order the merchant accepted, the instanceId it gave, and the exchange that gave it."""

    order: Order
    instance_id: str
    exchange: Exchange


CheckFunction = Callable[[Context], None]
ExchangeCheckFunction = Callable[[Exchange, Target], str | None]

REGISTRY: dict[str, Check] = {}


def _register(
    check_id: str, severity: Severity, rule: str, protocols: Iterable[str], per_exchange: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if check_id in REGISTRY:
            raise ValueError(f"duplicate check id {check_id}")
        title, _, doc = (function.__doc__ or check_id).strip().partition("\n")
        REGISTRY[check_id] = Check(
            id=check_id,
            title=title.strip(),
            severity=severity,
            rule=rule,
            doc=" ".join(doc.split()),
            run=function,
            protocols=frozenset(protocols),
            per_exchange=per_exchange,
        )
        return function

    return decorate


def check(
    check_id: str, *, rule: str, severity: Severity = Severity.ERROR, protocols: Iterable[str] = ("v1", "v2")
) -> Callable[[CheckFunction], CheckFunction]:
    """Register an active check: ``function(ctx)`` drives the merchant and records findings."""
    return _register(check_id, severity, rule, protocols, per_exchange=False)


def exchange_check(
    check_id: str, *, rule: str, severity: Severity = Severity.ERROR
) -> Callable[[ExchangeCheckFunction], ExchangeCheckFunction]:
    """Register a check of every exchange: ``function(exchange, target)`` returns a problem or None."""
    return _register(check_id, severity, rule, ("v1", "v2"), per_exchange=True)
