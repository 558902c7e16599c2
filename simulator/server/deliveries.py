"""Durable deliveries in ``koosim serve``: the calls it sends on a schedule live in the history
file (:mod:`simulator.store.deliveries`), and a background :class:`Scheduler` sends each attempt
when it falls due on the marketplace clock (docs/protocol.md §10.1, §10.5; issue 15 item 3).

A console or API call, and an order notification, is a :class:`~simulator.delivery.Delivery`
with the published policy of its kind (:func:`~simulator.delivery.policy_for`): the first
attempt is sent at once, in the request that asked for it; when it fails and the policy resends,
the row stays *pending* with its next attempt's marketplace instant, and whichever ``serve``
process finds it due first claims it atomically and sends it. After the last attempt the delivery
is *parked* (a production-interface message, 生产接口消息, waiting for 重新启动) or, for a V1
newInstance, *cancelled* automatically. :func:`restart` is the manual 重新启动.

What a crash does (see :mod:`simulator.store.deliveries`): killed between two attempts, nothing is
lost — the next attempt goes out at its marketplace instant after the restart (or at once, late,
if the server was down past it). Killed between sending an attempt and recording its answer, that
attempt is recorded as failed with no answer once its claim's lease runs out, and the schedule
continues with the next one: no attempt is ever sent twice, and a merchant may receive the next
attempt of a call it had accepted (at-least-once, as the marketplace resends).

The marketplace clock must outlive the process too: :func:`durable_clock` continues a scaled
clock's timeline from the anchor kept in the history file, so a restarted server (or a second one
on the same file) agrees on marketplace time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from simulator.clock import Clock, FrozenClock, RealClock, ScaledClock, Stamp, isoformat
from simulator.delivery import (
    Attempt,
    Delivery,
    DeliveryError,
    DeliveryPolicy,
    DeliveryState,
    Failure,
    FailureKind,
    NothingToRestart,
    delivery_failure,
    policy_for,
)
from simulator.store.deliveries import CLAIM_LEASE_S
from simulator.transport import Exchange

if TYPE_CHECKING:
    from simulator.server.state import MarketState
    from simulator.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often (wall seconds) the scheduler looks for due attempts: a scaled clock's attempt goes
out at most this much wall time late."""
HOLD_S = 30.0
"""How long (wall seconds) the scheduler leaves a delivery alone after it could not be sent at all
(the target's protocol changed, a key was removed): one warning, not one every pass."""
BATCH = 20
"""The most attempts one scheduler pass sends (one after the other, in its one thread)."""

Sender = Callable[["MarketState", Mapping[str, Any], int], Exchange]
"""Sends attempt ``number`` of a stored delivery and returns its exchange."""
SENDERS: dict[str, Sender] = {}

LOST = Failure(
    FailureKind.NO_ANSWER,
    "Call interface failed: no answer recorded — koosim stopped while this attempt was in flight; "
    "the merchant may have received it",
    "§3.4",
    transient=True,
)
"""What an attempt whose sender died before recording its outcome counts as."""


def register(kind: str, sender: Sender) -> None:
    """How deliveries of ``kind`` are sent (``call``: :mod:`calls`, ``notification``: :mod:`notify`)."""
    SENDERS[kind] = sender


# --- the clock ---------------------------------------------------------------------------------


def durable_clock(store: Store, scale: float | str | None) -> Clock:
    """The marketplace clock of a ``serve`` process (``scale`` as the ``time_scale`` setting):
    real time without one (or at 1); ``frozen`` a clock that moves only when advanced (it starts
    at the wall's now: a frozen timeline is not kept across restarts); any other scale a scaled
    clock continuing the timeline the history file records, so that marketplace time never jumps
    back or forth across restarts and every server on one file shares it."""
    if scale is None or scale == 1:
        return RealClock()
    if isinstance(scale, str):  # "frozen", the one word parse_time_scale leaves a string
        return FrozenClock(datetime.now(UTC), waits="block")
    wall = datetime.now(UTC).timestamp()
    anchor = store.deliveries.clock_anchor()
    if anchor is None:
        market = wall
    else:
        old_scale, old_market, old_wall = anchor
        market = old_market + (wall - old_wall) * old_scale
    if anchor is None or anchor[0] != scale:
        store.deliveries.set_clock_anchor(scale, market, wall)
    return ScaledClock(scale, start=datetime.fromtimestamp(market, UTC))


# --- rows <-> the state machine -----------------------------------------------------------------


def _ts(instant: datetime | None) -> float | None:
    return None if instant is None else instant.timestamp()


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _failure_json(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "kind": failure.kind.value,
        "message": failure.message,
        "rule": failure.rule,
        "transient": failure.transient,
    }


def _attempt_json(attempt: Attempt, exchange_id: str | None) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "due": attempt.due.timestamp(),
        "sent_market": attempt.sent.market.timestamp(),
        "sent_wall": attempt.sent.wall.timestamp(),
        "answered": attempt.answered.timestamp(),
        "failure": _failure_json(attempt.failure),
        "manual": attempt.manual,
        "exchange_id": exchange_id,
    }


def _attempt(record: Mapping[str, Any]) -> Attempt:
    failure = record.get("failure")
    return Attempt(
        number=int(record["number"]),
        due=datetime.fromtimestamp(record["due"], UTC),
        sent=Stamp(
            wall=datetime.fromtimestamp(record["sent_wall"], UTC),
            market=datetime.fromtimestamp(record["sent_market"], UTC),
        ),
        answered=datetime.fromtimestamp(record["answered"], UTC),
        failure=None
        if failure is None
        else Failure(FailureKind(failure["kind"]), failure["message"], failure["rule"], failure["transient"]),
        manual=bool(record.get("manual")),
    )


def policy_of(market: MarketState, row: Mapping[str, Any]) -> DeliveryPolicy:
    """The policy of a stored delivery, with the user's override (``delivery_resends`` …) applied."""
    return policy_for(row["interface"], row["protocol"], row["activity"], market.settings.delivery)


def delivery_of(market: MarketState, row: Mapping[str, Any]) -> Delivery:
    """The state machine of a stored delivery, on this server's clock."""
    first_due = _dt(row["first_due"])
    assert first_due is not None
    return Delivery(
        policy_of(market, row),
        market.clock,
        first_due=first_due,
        attempts=[_attempt(record) for record in row["attempts"]],
        manual_due=_dt(row["manual_due"]),
    )


class Started:
    """A delivery whose attempt this process has claimed and is sending."""

    def __init__(self, delivery_id: int, delivery: Delivery, number: int) -> None:
        self.id = delivery_id
        self.delivery = delivery
        self.number = number


def lease(market: MarketState) -> float:
    """How long a claim holds: the store's lease, or longer when the deadline is (up to 300 s)."""
    return max(CLAIM_LEASE_S, float(market.settings.timeout) + 30.0)


def begin_new(
    market: MarketState,
    *,
    kind: str,
    interface: str,
    protocol: str,
    activity: str,
    label: str,
    target_url: str,
    body: Mapping[str, Any],
) -> Started:
    """Record a new delivery, its first attempt claimed by this process and due now."""
    policy = policy_for(interface, protocol, activity, market.settings.delivery)
    delivery = Delivery(policy, market.clock)
    delivery_id = market.store.deliveries.add_claimed(
        owner=market.owner,
        kind=kind,
        interface=interface,
        protocol=protocol,
        activity=activity,
        label=label,
        target_url=target_url,
        body=body,
        policy=policy.name,
        first_due=delivery.first_due.timestamp(),
        secrets=market.secrets,
        lease=lease(market),
    )
    return Started(delivery_id, delivery, delivery.begin())


def finish(market: MarketState, started: Started, exchange: Exchange | None, failure: Failure | None) -> bool:
    """Record the outcome of the claimed attempt; False when the claim was lost meanwhile."""
    delivery = started.delivery
    delivery.finish(failure)
    return market.store.deliveries.record(
        started.id,
        market.owner,
        attempt=_attempt_json(delivery.attempts[-1], exchange.id if exchange is not None else None),
        state=delivery.state.value,
        next_due=_ts(delivery.next_due),
        manual_due=_ts(delivery.manual_due),
        summary=delivery.summary(),
        secrets=market.secrets,
    )


def judge(exchange: Exchange) -> Failure | None:
    return delivery_failure(exchange)


# --- sending what is due --------------------------------------------------------------------------


def send_due(market: MarketState, delivery_id: int) -> bool:
    """Claim and send the due attempt of one delivery; False when it is not due or another
    process (or thread) has it."""
    store = market.store.deliveries
    row = store.claim(
        delivery_id,
        market.owner,
        market_now=market.clock.now().timestamp(),
        urls=market.delivery_urls(),
        lease=lease(market),
    )
    if row is None:
        return False
    sender = SENDERS.get(row["kind"])
    delivery = delivery_of(market, row)
    try:
        number = delivery.begin()
    except DeliveryError as exc:  # the row says due, the state machine does not: leave it be
        log.warning("delivery #%s: %s", delivery_id, exc)
        store.release(delivery_id, market.owner)
        return False
    if sender is None or number != row["in_flight"]:
        store.release(delivery_id, market.owner)
        return False
    started = Started(delivery_id, delivery, number)
    try:
        exchange = sender(market, row, number)
    except Exception as exc:  # not configured any more, or a bug: nothing was sent
        log.warning("delivery #%s attempt %s not sent (again in %g s): %s", delivery_id, number, HOLD_S, exc)
        store.release(delivery_id, market.owner)
        market.held_deliveries[delivery_id] = time.monotonic() + HOLD_S
        return False
    finish(market, started, exchange, judge(exchange))
    return True


def recover_lost(market: MarketState) -> int:
    """Record every attempt whose sender stopped before recording it as failed with no answer
    (see the module docstring); returns how many."""
    recovered = 0
    for row in market.store.deliveries.claim_lost(market.owner):
        delivery = delivery_of(market, row)
        try:
            number = delivery.begin()
        except DeliveryError:
            market.store.deliveries.release(row["id"], market.owner)
            continue
        if number != row["in_flight"]:
            market.store.deliveries.release(row["id"], market.owner)
            continue
        finish(market, Started(row["id"], delivery, number), None, LOST)
        recovered += 1
    return recovered


def run_due(market: MarketState, *, limit: int = BATCH) -> int:
    """One scheduler pass: recover lost attempts, send what is due; returns the attempts sent."""
    recover_lost(market)
    now = market.clock.now().timestamp()
    wall = time.monotonic()
    held = market.held_deliveries
    for delivery_id in [key for key, until in held.items() if until <= wall]:
        held.pop(delivery_id, None)
    sent = 0
    for delivery_id in market.store.deliveries.due(now, urls=market.delivery_urls(), limit=limit + len(held)):
        if delivery_id not in held:
            sent += send_due(market, delivery_id)
    return sent


class Scheduler:
    """The background thread of ``serve`` that sends due attempts: one thread, at most
    :data:`BATCH` attempts a pass, a pass every :data:`POLL_S` wall seconds; :meth:`stop` ends
    it between two attempts (an attempt in flight finishes first, bounded by the deadline)."""

    def __init__(self, market: MarketState, *, poll: float = POLL_S) -> None:
        self.market = market
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="koosim-deliveries", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_due(self.market)
            except Exception:  # a damaged history, a bug: say so, keep serving
                log.exception("the delivery scheduler failed a pass")
            self._stop.wait(self.poll)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the thread; True when it ended within ``timeout``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()


# --- 生产接口消息 and 重新启动 ------------------------------------------------------------------


class NoSuchDelivery(LookupError):
    """No delivery has that id."""


def message(market: MarketState, row: Mapping[str, Any]) -> dict[str, Any]:
    """One delivery as the 生产接口消息 page and the API show it."""
    delivery = delivery_of(market, row)
    attempts = row["attempts"]
    failures = [a for a in attempts if a.get("failure")]
    last_failure = failures[-1]["failure"]["message"] if failures else None
    in_flight = row["in_flight"] is not None
    due = _dt(row["next_due"]) if row["next_due"] is not None else None
    waiting = None
    if row["state"] == DeliveryState.PENDING.value and row["target_url"] not in market.delivery_urls():
        waiting = "the configured target is another URL now: this server does not send it"
    return {
        "id": row["id"],
        "kind": row["kind"],
        "activity": row["activity"],
        "label": row["label"],
        "interface": row["interface"],
        "protocol": row["protocol"],
        "target_url": row["target_url"],
        "state": row["state"],
        "policy": delivery.policy.describe(),
        "assumed_policy": delivery.policy.assumed,
        "error": last_failure,
        "attempts_made": len(attempts),
        "attempts_failed": len(failures),
        "in_flight": row["in_flight"],
        "next_attempt": isoformat(due) if due is not None and not in_flight else None,
        "restartable": not in_flight
        and row["state"] in (DeliveryState.PENDING.value, DeliveryState.PARKED.value),
        "automatic_cancellation": row["state"] == DeliveryState.CANCELLED.value,
        "summary": row["summary"],
        "waiting": waiting,
        "created_at": row["created_at"],
        "body": row["body"],
        "attempts": [
            {
                "number": a["number"],
                "manual": a.get("manual", False),
                "due": isoformat(datetime.fromtimestamp(a["due"], UTC)),
                "sent": {
                    "market": isoformat(datetime.fromtimestamp(a["sent_market"], UTC)),
                    "wall": isoformat(datetime.fromtimestamp(a["sent_wall"], UTC)),
                },
                "error": a["failure"]["message"] if a.get("failure") else None,
                "exchange_id": a.get("exchange_id"),
            }
            for a in attempts
        ],
    }


def messages(market: MarketState, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The 生产接口消息: every delivery with a failed attempt (or parked, or cancelled)."""
    rows = market.store.deliveries.listing(failed_only=True, state=state, limit=limit)
    return [message(market, row) for row in rows]


def get_message(market: MarketState, delivery_id: int) -> dict[str, Any]:
    row = market.store.deliveries.get(delivery_id)
    if row is None:
        raise NoSuchDelivery(f"no production-interface message {delivery_id}")
    return message(market, row)


def restart(market: MarketState, delivery_id: int) -> dict[str, Any]:
    """The manual 重新启动 (§10.5): one more attempt, due now, sent at once when this server may
    send it. Raises :class:`~simulator.delivery.NothingToRestart` when it is delivered,
    cancelled automatically, or an attempt is in flight."""
    row = market.store.deliveries.get(delivery_id)
    if row is None:
        raise NoSuchDelivery(f"no production-interface message {delivery_id}")
    if row["in_flight"] is not None:
        raise NothingToRestart(f"nothing to restart: attempt {row['in_flight']} is in flight")
    delivery = delivery_of(market, row)
    due = delivery.restart()  # raises NothingToRestart when delivered or cancelled
    if not market.store.deliveries.restart(
        delivery_id, due.timestamp(), delivery.state.value, delivery.summary()
    ):
        raise NothingToRestart("nothing to restart: an attempt went out meanwhile")
    send_due(market, delivery_id)
    return get_message(market, delivery_id)
