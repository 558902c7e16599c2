"""How the marketplace resends a call it got no good answer to (protocol.md §9, §10).

The marketplace does not publish its resend schedule. The simulator takes one as an
ASSUMPTION (3 resends, after 1 s, 2 s and 4 s), lets the user change it, and reports it in
every run. :class:`ResendPolicy` is that schedule and the rule of which outcomes trigger a
resend; :meth:`ResendPolicy.deliver` plays it: send, judge, wait, send again, until an answer
the marketplace accepts or the cap.

Which outcomes are resent, and why:

* **no answer**: the deadline passed, the connection was refused, reset or closed mid-body,
  or the answer was larger than the transport reads. §9: the marketplace "treats no answer
  as a failure that it retries later" (doc).
* **resultCode 000004** (processing): §6 says the marketplace asks again later (doc).
* **resultCode 000005** (other internal error): a merchant-side fault that is usually
  transient (ASSUMPTION).
* **HTTP 5xx**: a gateway or proxy in front of the merchant failed; the merchant may never
  have seen the call (ASSUMPTION).

Not resent: success (000000); the refusals 000001, 000002, 000003, 000100, 000101, which are
the merchant's considered answer to that very content (the same call gets the same refusal);
other HTTP statuses (3xx, 4xx: a misconfigured URL does not heal); an HTTP 200 whose body is
not a protocol answer (a contract violation, which the contract checks report).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from simulator.protocol import ResultCode
from simulator.protocol.codes import RETRYABLE_CODES
from simulator.transport import Exchange

MAX_RESENDS = 10
"""The most resends a user may configure: a schedule, not a flood."""

RESENDS_VARIABLE, BACKOFF_VARIABLE = "KOOSIM_RESENDS", "KOOSIM_BACKOFF"
"""Where a user sets the schedule (also ``resends`` / ``backoff`` in koosim.toml); read once, by
:func:`simulator.settings.load_settings`, which hands the policy down with the settings."""


def resend_reason(exchange: Exchange) -> str | None:
    """Why the marketplace would send this call again, or None when it accepts the outcome."""
    if exchange.timed_out:
        return "no answer within the deadline"
    if exchange.error is not None:
        return "no usable answer"
    if exchange.status is not None and exchange.status >= 500:
        return f"HTTP {exchange.status}"
    code = exchange.result_code
    if code in RETRYABLE_CODES:
        return ResultCode.describe(code)
    return None


@dataclass(frozen=True)
class ResendPolicy:
    """How often and when the marketplace sends a call again (ASSUMPTION, protocol.md §10).

    Resend ``n`` (from 1) goes out ``backoff * factor ** (n - 1)`` seconds after the answer
    (or the lack of one) to the attempt before it: by default 1 s, 2 s, 4 s.
    """

    resends: int = 3
    backoff: float = 1.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.resends <= MAX_RESENDS:
            raise ValueError(f"resends must be between 0 and {MAX_RESENDS}, not {self.resends}")
        if not (math.isfinite(self.backoff) and self.backoff >= 0):
            raise ValueError(f"backoff must be a number of seconds >= 0, not {self.backoff}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"factor must be >= 1, not {self.factor}")

    @property
    def attempts(self) -> int:
        """The most deliveries of one call: the first and every resend."""
        return 1 + self.resends

    @property
    def delays(self) -> tuple[float, ...]:
        """The wait before each resend, in seconds."""
        return tuple(self.backoff * self.factor**n for n in range(self.resends))

    def scaled(self, first_delay: float) -> ResendPolicy:
        """The same schedule (as many resends, same growth) starting at ``first_delay``.

        The convergence check uses it to play the schedule in tens of milliseconds.
        """
        return replace(self, backoff=first_delay)

    def describe(self) -> str:
        if not self.resends:
            return "no resends"
        return f"{self.resends} resend(s) after " + ", ".join(f"{delay:g} s" for delay in self.delays)

    def deliver(
        self, send: Callable[[int], Exchange], sleep: Callable[[float], None] = time.sleep
    ) -> list[Exchange]:
        """Send a call as the marketplace does: ``send(attempt)`` until it is accepted or the cap.

        ``send`` makes one delivery (attempt 1 is the first, 2 the first resend, …) and
        returns its exchange, which should carry that attempt number. Returns every exchange
        in order; the last one is the outcome the marketplace keeps.
        """
        exchanges: list[Exchange] = []
        for attempt in range(1, self.attempts + 1):
            exchange = send(attempt)
            exchanges.append(exchange)
            if resend_reason(exchange) is None or attempt == self.attempts:
                break
            sleep(self.delays[attempt - 1])
        return exchanges


DEFAULT_POLICY = ResendPolicy()
