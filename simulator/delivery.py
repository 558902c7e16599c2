"""How the marketplace delivers a call: which answers fail it, when it sends it again, and what
happens after the last attempt (docs/protocol.md §3.4, §9, §10.1, §10.5).

Three pieces, all pure (time comes from a :class:`~simulator.clock.Clock`, answers from the
caller; nothing here sends HTTP or reads the environment):

- :func:`delivery_failure` — whether one :class:`~simulator.transport.Exchange` is a failed
  call (§3.4: late or no answer, a ``resultCode`` other than ``000000``, a body that does not
  parse; a non-200 status is ASSUMPTION U3), and its 异常信息 in the debugging FAQ's words;
- :class:`DeliveryPolicy` — per interface, generation and activity, the published resend
  schedule (or the ASSUMPTION koosim plays where no page has one) and what happens after the
  last attempt: V1 newInstance orders are **cancelled automatically** [S38]; every other
  delivery is **parked** as a production-interface message (生产接口消息) until the seller
  presses 重新启动 (§10.5). :func:`policy_for` looks one up; :class:`DeliveryOverride` is the
  user's change to it (``KOOSIM_DELIVERY_RESENDS``/``KOOSIM_DELIVERY_INTERVAL``, which replaced
  ``KOOSIM_RESENDS``/``KOOSIM_BACKOFF``);
- :class:`Delivery` — one call's delivery as a state machine, pending → delivered | parked |
  cancelled, driven by the clock and by the outcome of each attempt; :meth:`Delivery.restart`
  is the manual 重新启动. :func:`deliver` plays one to its end.

Where this spec and issue 15 differ, the spec wins: the issue's "V2 newInstance hourly for 3 h,
then automatic unsubscription" and "renewal/expiry 1 h" are on no stored page for V2 (§10.1,
U12); only V1, the License opening call (getLicense: hourly for 3 h [S75], §6.1) and the order
notification have published schedules. The rest of V2 keeps koosim's ASSUMPTION U11 (3 resends
after 1 s, 2 s, 4 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from simulator.clock import Clock, Stamp, format_duration, isoformat
from simulator.errors import UsageError
from simulator.protocol import ResultCode
from simulator.protocol.codes import RETRYABLE_CODES
from simulator.transport import PRODUCE, SYNC, Exchange

NOTIFICATION = "notification"
"""The order-notification interface (simulator/checks/notification.py sends it)."""

DEADLINE_SECONDS = 5.0
"""How long the marketplace waits for an answer: §3.3 [S24] (A1: an unfound FAQ says 20 s).
A wall-clock deadline: it is the HTTP call's, and is never scaled with marketplace time."""

SUCCESS = ResultCode.SUCCESS.value

MAX_POLICY_RESENDS = 60
"""The most resends a policy (or a user's override) may have: the most any page publishes (§10.1)."""
MAX_SCHEDULE_SPAN = timedelta(days=7)
"""The longest a schedule may run from first attempt to last: the longest published is 3 hours."""

_LICENSE_ACTIVITIES = frozenset(
    {"getLicense", "getLicenseAsync", "refreshLicense", "expireLicense", "releaseLicense"}
)
"""License activities (§6). protocol/vocabulary.py (in progress on another branch) will own this."""


class DeliveryError(RuntimeError):
    """A delivery was driven out of order (an attempt begun before it is due, or while another
    is in flight; an outcome with no attempt): a bug in the caller, never the merchant's doing."""


class NothingToRestart(UsageError):
    """A manual 重新启动 of a delivery that cannot be restarted (delivered, cancelled
    automatically, or waiting for an answer); the message says which."""


# --- what counts as a failed delivery --------------------------------------------------------


class FailureKind(StrEnum):
    NO_ANSWER = "no answer"
    LATE = "late"
    HTTP_STATUS = "HTTP status"
    NOT_JSON = "unparsable body"
    NO_RESULT_CODE = "no resultCode"
    RESULT_CODE = "error resultCode"


@dataclass(frozen=True)
class Failure:
    """Why the marketplace counts one attempt as a failed call.

    ``message`` is the 异常信息 the 生产接口消息 page shows, in the words of the debugging
    FAQ [S32] where it has words for it. ``transient`` marks the failures ASSUMPTION U11 resends
    after (a timeout or no answer, HTTP 5xx, ``000004``, ``000005``); published schedules resend
    after every failure. ``rule`` cites the section (and assumption) the failure rests on.
    """

    kind: FailureKind
    message: str
    rule: str
    transient: bool


def delivery_failure(exchange: Exchange, *, deadline: float = DEADLINE_SECONDS) -> Failure | None:
    """The failure this exchange is to the marketplace, or None when the call succeeded (§3.4).

    Only the envelope is judged here: a missing or malformed ``Body-Sign``, a missing mandatory
    answer member other than ``resultCode`` or an over-long field also fail a call (§3.4), but
    deciding those needs the key and the contracts, which the checks hold.
    """
    if exchange.timed_out:
        return Failure(
            FailureKind.LATE,
            f"Call interface failed: no answer within the deadline ({deadline:g} s)",
            "§3.3",
            transient=True,
        )
    if exchange.error is not None or exchange.status is None:
        return Failure(
            FailureKind.NO_ANSWER,
            f"Call interface failed: {exchange.error or 'no answer'}",
            "§3.4",
            transient=True,
        )
    if exchange.elapsed > deadline:
        return Failure(
            FailureKind.LATE,
            f"Call interface failed: the answer took {exchange.elapsed:.1f} s, "
            f"the marketplace waits {deadline:g} s",
            "§3.3",
            transient=True,
        )
    if exchange.status != 200:
        return Failure(
            FailureKind.HTTP_STATUS,
            f"Call interface failed: HTTP {exchange.status}",
            "§3.1, U3",
            transient=exchange.status >= 500,
        )
    problem = exchange.json_problem
    if problem is not None:
        return Failure(
            FailureKind.NOT_JSON, f"Debugging failed. Parse response body failed: {problem}", "§3.4", False
        )
    code = exchange.result_code
    if code is None:
        return Failure(
            FailureKind.NO_RESULT_CODE,
            "Debugging failed. The interface response does not contain resultCode.",
            "§3.4",
            transient=False,
        )
    if code != SUCCESS:
        return Failure(
            FailureKind.RESULT_CODE,
            "Call interface failed. The production interface returns an error result code: "
            + ResultCode.describe(code),
            "§3.4",
            transient=code in RETRYABLE_CODES,
        )
    return None


# --- policies --------------------------------------------------------------------------------


class Anchor(StrEnum):
    """What a resend's gap is measured from."""

    FIRST_ATTEMPT = "first attempt"
    """A timetable ("every 3 minutes"): resend n goes out at the first attempt + the sum of the
    first n gaps, however long each answer took — so a scaled clock plays the published instants."""
    PREVIOUS_ANSWER = "previous answer"
    """A backoff ("after 1 s, 2 s, 4 s"): each gap starts when the previous attempt's outcome is
    known, as koosim has always played U11."""


@dataclass(frozen=True)
class Cadence:
    """When the resends go out: ``resends`` of them, the first ``first_gap`` after the first
    attempt, each gap ``growth`` times the one before (1: a fixed interval)."""

    resends: int
    first_gap: timedelta = timedelta(0)
    growth: float = 1.0
    anchor: Anchor = Anchor.FIRST_ATTEMPT

    def __post_init__(self) -> None:
        if isinstance(self.resends, bool) or not 0 <= self.resends <= MAX_POLICY_RESENDS:
            raise ValueError(
                f"resends must be a whole number from 0 to {MAX_POLICY_RESENDS}, not {self.resends}"
            )
        if self.first_gap < timedelta(0):
            raise ValueError(f"the first gap must not be negative, not {format_duration(self.first_gap)}")
        if not (math.isfinite(self.growth) and self.growth >= 1):
            raise ValueError(f"growth must be a number >= 1, not {self.growth}")
        if self._span_seconds() > MAX_SCHEDULE_SPAN.total_seconds():
            raise ValueError(
                f"{self.resends} resends from {format_duration(self.first_gap)} growing ×{self.growth:g} "
                f"take longer than {format_duration(MAX_SCHEDULE_SPAN)}"
            )

    def _span_seconds(self) -> float:
        """From the first attempt to the last, in seconds (computed in floats: it may be huge)."""
        gap = self.first_gap.total_seconds()
        if not gap:
            return 0.0
        try:
            return sum(gap * self.growth**n for n in range(self.resends))
        except OverflowError:
            return math.inf

    @property
    def attempts(self) -> int:
        """The most deliveries of one call: the first and every resend."""
        return 1 + self.resends

    @property
    def gaps(self) -> tuple[timedelta, ...]:
        """The gap before each resend."""
        return tuple(self.first_gap * self.growth**n for n in range(self.resends))

    @property
    def offsets(self) -> tuple[timedelta, ...]:
        """Each attempt's distance from the first (0 first), when every answer is instantaneous."""
        offsets = [timedelta(0)]
        for gap in self.gaps:
            offsets.append(offsets[-1] + gap)
        return tuple(offsets)

    def describe(self) -> str:
        if not self.resends:
            return "no resends"
        if self.growth == 1:
            return f"{self.resends} resend(s), every {format_duration(self.first_gap)}"
        return f"{self.resends} resend(s) after " + ", ".join(format_duration(gap) for gap in self.gaps)


class ResendOn(StrEnum):
    """Which failed attempts are followed by a resend (while resends remain)."""

    ANY_FAILURE = "any failed call"
    """The published schedules: "if the call fails, KooGallery resends …" (§10.1)."""
    TRANSIENT = "a timeout, no answer, HTTP 5xx, 000004 or 000005"
    """ASSUMPTION U11: other failures are the merchant's considered refusal and are not resent."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    PARKED = "parked"
    """Failed for good: a production-interface message (生产接口消息) awaiting 重新启动 (§10.5)."""
    CANCELLED = "cancelled"
    """V1 newInstance only: the order was judged failed and cancelled automatically [S38]."""


AFTER_LAST = {
    DeliveryState.PARKED: "parked as a production-interface message (生产接口消息) until a manual 重新启动",
    DeliveryState.CANCELLED: "the order is judged failed and cancelled automatically",
}


@dataclass(frozen=True)
class DeliveryOverride:
    """The user's change to every delivery policy (``KOOSIM_DELIVERY_RESENDS``/``_INTERVAL``).

    Each field left None keeps the policy's own value. Reading it from flags, environment or
    koosim.toml is the settings layer's job; this is the value.
    """

    resends: int | None = None
    first_gap: timedelta | None = None
    growth: float | None = None

    def __post_init__(self) -> None:
        # Refuse at once what would break a policy later: the cadence limits, for every policy.
        for policy in POLICIES:
            try:
                self.apply(policy)
            except ValueError as exc:
                raise ValueError(f"{policy.name}: {exc}") from None

    def apply(self, policy: DeliveryPolicy) -> DeliveryPolicy:
        """``policy`` with this override's values (its anchor, trigger and ending unchanged)."""
        old = policy.cadence
        cadence = replace(
            old,
            resends=old.resends if self.resends is None else self.resends,
            first_gap=old.first_gap if self.first_gap is None else self.first_gap,
            growth=old.growth if self.growth is None else self.growth,
        )
        return replace(policy, cadence=cadence, override=self)

    def changes(self) -> dict[str, int | timedelta | float | None]:
        return {"resends": self.resends, "first_gap": self.first_gap, "growth": self.growth}

    def describe(self) -> str:
        said = [
            f"{name.replace('_', ' ')} {format_duration(value) if isinstance(value, timedelta) else value}"
            for name, value in self.changes().items()
            if value is not None
        ]
        return "overridden: " + (", ".join(said) or "nothing")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the marketplace delivers one kind of call, with the section that says so.

    ``rule`` cites docs/protocol.md as a check's ``rule`` does (``"§10.1, U11"``); ``basis``
    says in a sentence what the pages state and what koosim takes where they are silent;
    ``assumed`` is True when the schedule itself is not on a page (then it may never be the
    reason for an ``error``, §0).
    """

    name: str
    cadence: Cadence
    resend_on: ResendOn
    after_last: DeliveryState
    rule: str
    basis: str
    assumed: bool
    override: DeliveryOverride | None = None

    def __post_init__(self) -> None:
        if self.after_last not in AFTER_LAST:
            raise ValueError(
                f"after its last attempt a delivery is parked or cancelled, not {self.after_last}"
            )

    def resends_after(self, failure: Failure) -> bool:
        """Whether this failure is followed by a resend (when one is left)."""
        return self.resend_on is ResendOn.ANY_FAILURE or failure.transient

    def schedule(self, first: datetime) -> tuple[datetime, ...]:
        """The instant of every attempt when the first goes out at ``first`` and none succeeds.

        Exact for a timetable; for a backoff it assumes every answer is instantaneous (as on a
        frozen clock), the real instants being later by the answers' durations.
        """
        return tuple(first + offset for offset in self.cadence.offsets)

    def describe(self) -> str:
        """``v1 newInstance: 60 resend(s), every 3m, on any failed call; then the order is … (§10.1)``."""
        text = f"{self.name}: {self.cadence.describe()}"
        if self.cadence.resends:
            text += f", on {self.resend_on}"
        text += f"; then {AFTER_LAST[self.after_last]} ({self.rule})"
        if self.override is not None:
            text += f" [{self.override.describe()}]"
        return text


_MINUTE = timedelta(minutes=1)
_U11 = Cadence(resends=3, first_gap=timedelta(seconds=1), growth=2.0, anchor=Anchor.PREVIOUS_ANSWER)

V1_NEW_INSTANCE = DeliveryPolicy(
    name="v1 newInstance",
    cadence=Cadence(resends=60, first_gap=3 * _MINUTE),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.CANCELLED,
    rule="§10.1",
    basis="[S38], both editions: a failed subscription call is resent 60 times, every 3 minutes "
    "(about 3 hours); the order is then judged failed and cancelled automatically. No page says "
    "what the merchant receives after that (U42 asks the same for V2): koosim sends nothing more.",
    assumed=False,
)
V1_REFRESH_INSTANCE = DeliveryPolicy(
    name="v1 refreshInstance",
    cadence=Cadence(resends=60, first_gap=_MINUTE),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.PARKED,
    rule="§10.1, A24",
    basis="[S39]: resent for one hour, then the seller fixes the interface and asks KooGallery to "
    "call again. The cadence inside the hour is not on the page: koosim applies A24's reading of "
    "the sibling expiration page (60 resends, a minute apart).",
    assumed=True,
)
V1_EXPIRE_INSTANCE = DeliveryPolicy(
    name="v1 expireInstance",
    cadence=Cadence(resends=60, first_gap=_MINUTE),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.PARKED,
    rule="§10.1, A24",
    basis="[S41]: 60 times, once a minute; [S40]: for one hour (A24). 60 resends a minute apart "
    "(the same span, the stricter idempotency test); then calls stop and the seller restarts.",
    assumed=False,
)
V1_RELEASE_INSTANCE = replace(
    V1_EXPIRE_INSTANCE,
    name="v1 releaseInstance",
    rule="§10.1, A25",
    basis="[S43]: 60 times, once a minute; [S42]: for one hour (A25). 60 resends a minute apart; "
    "then calls stop and the seller restarts.",
)
V1_UNPUBLISHED = DeliveryPolicy(
    name="v1 activities without a published schedule",
    cadence=_U11,
    resend_on=ResendOn.TRANSIENT,
    after_last=DeliveryState.PARKED,
    rule="§10.1, U11",
    basis="No page states a schedule for this V1 activity (instanceStatus [S44]; upgrade [S45]; "
    "others are on no V1 page, U21): koosim plays its V2 assumption, 3 resends after 1 s, 2 s, "
    "4 s on a timeout, no answer, HTTP 5xx, 000004 or 000005.",
    assumed=True,
)
V2_PRODUCE = DeliveryPolicy(
    name="v2 produce interface",
    cadence=_U11,
    resend_on=ResendOn.TRANSIENT,
    after_last=DeliveryState.PARKED,
    rule="§10.1, U11",
    basis="No V2 page publishes a schedule; the marketplace 'may resend' [S1][S2][S3]. koosim "
    "resends up to 3 times, after 1 s, 2 s, 4 s, on a timeout, no answer, HTTP 5xx, 000004 or "
    "000005 (U11). The 'hourly for 3 h, then automatic unsubscription' of issue 15 / fidelity.md "
    "P16 is on no stored page (U12) and is not played.",
    assumed=True,
)
V2_LICENSE = replace(
    V2_PRODUCE,
    name="v2 license",
    rule="§10.1, U11, U24",
    basis="refreshLicense, expireLicense, releaseLicense: no page read states their schedule "
    "(U24): koosim plays U11, 3 resends after 1 s, 2 s, 4 s.",
)
V2_GET_LICENSE = DeliveryPolicy(
    name="v2 getLicense",
    cadence=Cadence(resends=3, first_gap=60 * _MINUTE),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.PARKED,
    rule="§6.1, §10.1",
    basis="[S75]: a failed License opening call is called again for 3 hours, once an hour, then "
    "calls stop; the seller restarts it (重新启动) or delivers by hand.",
    assumed=False,
)
V2_GET_LICENSE_ASYNC = replace(
    V2_PRODUCE,
    name="v2 getLicenseAsync",
    rule="§6.2, §10.1, U11",
    basis="[S52]: the marketplace may resend, and the same request (eventId + deviceFingerprint) "
    "must get the same License; no schedule is stated, and getLicense's 3 h hourly schedule [S75] "
    "is the access guide's, not this page's. ASSUMPTION U11: 3 resends after 1 s, 2 s, 4 s on a "
    "timeout, no answer, HTTP 5xx, 000004 or 000005, each copy the same eventId + fingerprint.",
    assumed=True,
)
KIT_SYNC = DeliveryPolicy(
    name="sync (Kit)",
    cadence=Cadence(resends=0),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.PARKED,
    rule="§10.1, U28",
    basis="[S54][S55]: no automatic schedule, the enterprise administrator decides. koosim sends a "
    "Kit call once (U28) and parks it when it fails.",
    assumed=True,
)
ORDER_NOTIFICATION = DeliveryPolicy(
    name="order notification",
    cadence=Cadence(resends=60, first_gap=3 * _MINUTE),
    resend_on=ResendOn.ANY_FAILURE,
    after_last=DeliveryState.PARKED,
    rule="§9, §10.1, U41",
    basis="[S59]: the marketplace keeps calling for 3 hours, then stops; 重新启动 sends it again. "
    "The cadence inside the 3 hours and what a failed answer is are not published (U41): koosim "
    "resends every 3 minutes (the only published 3-hour cadence, V1 subscription [S38]) and "
    "judges the answer by §3.4.",
    assumed=True,
)

POLICIES = (
    V1_NEW_INSTANCE,
    V1_REFRESH_INSTANCE,
    V1_EXPIRE_INSTANCE,
    V1_RELEASE_INSTANCE,
    V1_UNPUBLISHED,
    V2_PRODUCE,
    V2_LICENSE,
    V2_GET_LICENSE,
    V2_GET_LICENSE_ASYNC,
    KIT_SYNC,
    ORDER_NOTIFICATION,
)
"""Every policy :func:`policy_for` hands out (renamed per activity)."""

_V1 = {
    "newInstance": V1_NEW_INSTANCE,
    "refreshInstance": V1_REFRESH_INSTANCE,
    "expireInstance": V1_EXPIRE_INSTANCE,
    "releaseInstance": V1_RELEASE_INSTANCE,
}


def policy_for(
    interface: str, protocol: str, activity: str, override: DeliveryOverride | None = None
) -> DeliveryPolicy:
    """The policy for one kind of call: ``interface`` ``produce``/``sync``/``notification``,
    ``protocol`` ``v1``/``v2`` (produce only), ``activity`` as sent; ``override`` applied."""
    if interface == PRODUCE and activity == "getLicense":  # both forms (A56): the page's schedule
        policy = V2_GET_LICENSE if protocol == "v2" else replace(V2_GET_LICENSE, name="v1 getLicense")
    elif interface == PRODUCE and activity == "getLicenseAsync":  # V2 transport only (§6.2)
        policy = V2_GET_LICENSE_ASYNC
    elif interface == PRODUCE and protocol == "v1":
        policy = _V1.get(activity, replace(V1_UNPUBLISHED, name=f"v1 {activity}"))
    elif interface == PRODUCE and protocol == "v2":
        base = V2_LICENSE if activity in _LICENSE_ACTIVITIES else V2_PRODUCE
        policy = replace(base, name=f"v2 {activity}")
    elif interface == SYNC:
        policy = replace(KIT_SYNC, name=f"sync {activity}")
    elif interface == NOTIFICATION:
        policy = ORDER_NOTIFICATION
    else:
        raise ValueError(f"no delivery policy for interface {interface!r}, protocol {protocol!r}")
    return override.apply(policy) if override is not None else policy


def policy_for_exchange(exchange: Exchange, override: DeliveryOverride | None = None) -> DeliveryPolicy:
    """:func:`policy_for` the kind of call ``exchange`` is."""
    return policy_for(exchange.interface, exchange.protocol, exchange.activity, override)


# --- one delivery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: when it was due and sent (on both clocks), when its outcome was
    known (marketplace time), and its failure (None: the call succeeded)."""

    number: int
    due: datetime
    sent: Stamp
    answered: datetime
    failure: Failure | None
    manual: bool = False

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def late_by(self) -> timedelta:
        """How long after its due instant the attempt went out (a busy or scaled clock)."""
        return max(self.sent.market - self.due, timedelta(0))


@dataclass
class _InFlight:
    number: int
    due: datetime
    sent: Stamp
    manual: bool


class Delivery:
    """One call's delivery: pending → delivered | parked | cancelled.

    Drive it with the clock and the outcomes: when :meth:`is_due`, :meth:`begin` claims the next
    attempt's number, the caller sends it, and :meth:`finish` records the outcome. The attempts
    follow :attr:`policy`'s cadence; after the last one the delivery is parked or cancelled as
    the policy says. :meth:`restart` is the manual 重新启动: one attempt at once, allowed while
    pending and when parked ("during or after" [S59]); a manual attempt does not use up a
    scheduled one. What a restart does beyond one send is on no page.

    The state is the constructor's arguments, so the store can keep a delivery and rebuild it
    after koosim restarts (record an attempt whose outcome was lost as a failure with no answer).
    The first attempt is due at ``first_due`` (default: the clock's now).
    """

    def __init__(
        self,
        policy: DeliveryPolicy,
        clock: Clock,
        *,
        first_due: datetime | None = None,
        attempts: Sequence[Attempt] = (),
        manual_due: datetime | None = None,
    ) -> None:
        if [attempt.number for attempt in attempts] != list(range(1, len(attempts) + 1)):
            raise ValueError("attempts must be numbered 1, 2, 3, … in order")
        self.policy = policy
        self.clock = clock
        self.first_due = first_due if first_due is not None else clock.now()
        self.attempts = list(attempts)
        self.manual_due = manual_due
        self._in_flight: _InFlight | None = None

    def __repr__(self) -> str:
        return f"<Delivery {self.policy.name}: {self.state.value}, {len(self.attempts)} attempt(s)>"

    # --- where it stands

    @property
    def automatic(self) -> list[Attempt]:
        """The attempts the schedule made (not the manual restarts)."""
        return [attempt for attempt in self.attempts if not attempt.manual]

    @property
    def schedule_over(self) -> bool:
        """Whether the automatic attempts are over: the last one succeeded, no resend is left,
        or the last failure is one the policy does not resend after."""
        automatic = self.automatic
        if not automatic:
            return False
        last = automatic[-1]
        return (
            last.failure is None
            or len(automatic) >= self.policy.cadence.attempts
            or not self.policy.resends_after(last.failure)
        )

    @property
    def state(self) -> DeliveryState:
        if any(attempt.succeeded for attempt in self.attempts):
            return DeliveryState.DELIVERED
        if self._in_flight is not None or self.manual_due is not None or not self.schedule_over:
            return DeliveryState.PENDING
        return self.policy.after_last

    @property
    def in_flight(self) -> int | None:
        """The number of the attempt begun and not yet finished, if any."""
        return self._in_flight.number if self._in_flight is not None else None

    @property
    def next_due(self) -> datetime | None:
        """When the next attempt should go out; None while one is in flight or once it ended."""
        if self._in_flight is not None or self.state is not DeliveryState.PENDING:
            return None
        candidates = [self.manual_due] if self.manual_due is not None else []
        if not self.schedule_over:
            candidates.append(self._scheduled_due())
        return min(candidates)

    def _scheduled_due(self) -> datetime:
        automatic = self.automatic
        if not automatic:
            return self.first_due
        cadence = self.policy.cadence
        if cadence.anchor is Anchor.FIRST_ATTEMPT:
            return automatic[0].sent.market + cadence.offsets[len(automatic)]
        return automatic[-1].answered + cadence.gaps[len(automatic) - 1]

    def is_due(self) -> bool:
        due = self.next_due
        return due is not None and self.clock.now() >= due

    # --- driving it

    def begin(self) -> int:
        """Claim the next attempt (it is due now); returns its number, for the exchange and the
        store (two processes must never both claim one number)."""
        due = self.next_due
        if due is None:
            raise DeliveryError(f"no attempt to begin: the delivery is {self._why_not()}")
        now = self.clock.stamp()
        if now.market < due:
            raise DeliveryError(f"attempt {len(self.attempts) + 1} is not due before {isoformat(due)}")
        manual = self.manual_due is not None and self.manual_due <= now.market
        if manual:
            self.manual_due = None
        self._in_flight = _InFlight(len(self.attempts) + 1, due, now, manual)
        return self._in_flight.number

    def finish(self, failure: Failure | None) -> DeliveryState:
        """Record the outcome of the attempt in flight (None: it succeeded); returns the new state."""
        flight = self._in_flight
        if flight is None:
            raise DeliveryError("no attempt in flight to finish")
        self.attempts.append(
            Attempt(flight.number, flight.due, flight.sent, self.clock.now(), failure, flight.manual)
        )
        self._in_flight = None
        return self.state

    def restart(self) -> datetime:
        """The manual 重新启动 (§10.5): one more attempt, due now. Returns when it is due.

        Raises :class:`NothingToRestart` when the delivery is delivered, cancelled or in flight.
        """
        if self._in_flight is not None or self.state in (DeliveryState.DELIVERED, DeliveryState.CANCELLED):
            raise NothingToRestart(f"nothing to restart: the delivery is {self._why_not()}")
        if self.manual_due is None:
            self.manual_due = self.clock.now()
        return self.manual_due

    def _why_not(self) -> str:
        if self._in_flight is not None:
            return f"waiting for the answer to attempt {self._in_flight.number}"
        state = self.state
        if state is DeliveryState.CANCELLED:
            return f"cancelled: {AFTER_LAST[state]} after attempt {len(self.attempts)} ({self.policy.rule})"
        if state is DeliveryState.DELIVERED:
            return f"delivered on attempt {self.attempts[-1].number}"
        return state.value

    # --- telling it

    def summary(self) -> str:
        """One line for a report: how the delivery stands and why."""
        made = len(self.attempts)
        state = self.state
        if state is DeliveryState.DELIVERED:
            at = self.attempts[-1]
            return f"delivered on attempt {at.number} of {made}, {self._since_first(at.sent.market)}"
        if state is DeliveryState.PENDING:
            due = self.next_due
            when = f"next attempt due {isoformat(due)}" if due is not None else "an attempt is in flight"
            return f"pending after {made} attempt(s): {when}"
        last = self.attempts[-1]
        failure = last.failure
        assert failure is not None  # not delivered, so the last attempt failed
        return (
            f"{made} failed attempt(s) over "
            f"{format_duration(last.sent.market - self.attempts[0].sent.market)}: "
            f"{AFTER_LAST[state]} ({self.policy.rule}); last: {failure.message}"
        )

    def timeline(self) -> list[str]:
        """One line per attempt: number, marketplace and wall instants, the outcome."""
        lines = []
        for attempt in self.attempts:
            outcome = "succeeded" if attempt.failure is None else attempt.failure.message
            kind = " (manual 重新启动)" if attempt.manual else ""
            lines.append(
                f"attempt {attempt.number}{kind}: market {isoformat(attempt.sent.market)} "
                f"({self._since_first(attempt.sent.market)}), wall {isoformat(attempt.sent.wall)}: {outcome}"
            )
        return lines

    def _since_first(self, instant: datetime) -> str:
        first = self.attempts[0].sent.market if self.attempts else self.first_due
        return f"+{format_duration(instant - first)}"


Send = Callable[[int], Exchange]
Judge = Callable[[Exchange], Failure | None]


def deliver(delivery: Delivery, send: Send, judge: Judge = delivery_failure) -> list[Exchange]:
    """Play ``delivery`` until it is delivered, parked or cancelled; returns every exchange.

    ``send(number)`` makes attempt ``number`` and returns its exchange. Between attempts the
    delivery's clock waits: on a real or scaled clock that takes (scaled) wall time, on a frozen
    clock with ``waits="jump"`` none at all. (A frozen clock with ``waits="block"`` waits for
    someone else to advance it.) A manual restart is not played: call :meth:`Delivery.restart`,
    then this again.
    """
    exchanges: list[Exchange] = []
    while (due := delivery.next_due) is not None:
        delivery.clock.sleep_until(due)
        number = delivery.begin()
        exchange = send(number)
        exchanges.append(exchange)
        delivery.finish(judge(exchange))
    return exchanges
