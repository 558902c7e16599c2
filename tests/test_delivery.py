"""Delivery policies and the Delivery state machine (simulator/delivery.py).

Every test runs on a frozen clock (or a scaled clock over a fake wall): the marketplace's
three-hour schedules play in milliseconds and never sleep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from walls import FakeWall

from simulator.clock import FrozenClock, ScaledClock
from simulator.delivery import (
    KIT_SYNC,
    MAX_POLICY_RESENDS,
    MAX_SCHEDULE_SPAN,
    ORDER_NOTIFICATION,
    V1_NEW_INSTANCE,
    V2_PRODUCE,
    Anchor,
    Cadence,
    Delivery,
    DeliveryError,
    DeliveryOverride,
    DeliveryPolicy,
    DeliveryState,
    Failure,
    FailureKind,
    NothingToRestart,
    ResendOn,
    deliver,
    delivery_failure,
    policy_for,
    policy_for_exchange,
)
from simulator.transport import Exchange

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
SPEC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
MINUTE = timedelta(minutes=1)


def exchange(
    code: str | None = "000000",
    *,
    status: int | None = 200,
    body: bytes | None = None,
    error: str | None = None,
    timed_out: bool = False,
    elapsed: float = 0.05,
    interface: str = "produce",
    protocol: str = "v1",
    activity: str = "newInstance",
) -> Exchange:
    """An exchange as the transport returns it, answered with ``code`` (or ``body``)."""
    sent = Exchange(
        interface=interface,
        protocol=protocol,
        activity=activity,
        method="GET" if protocol == "v1" else "POST",
        url="http://127.0.0.1:9/produceAPI",
        fields={"activity": activity},
        request_headers={},
        request_body=b"",
        started_at=0.0,
    )
    sent.error, sent.timed_out, sent.elapsed = error, timed_out, elapsed
    if error is None:
        sent.status = status
        sent.response_body = body if body is not None else json.dumps({"resultCode": code}).encode()
    return sent


def merchant(codes: list[str], clock: FrozenClock) -> tuple[Callable[[int], Exchange], list[datetime]]:
    """A merchant answering ``codes`` in turn (then success); records the marketplace instant of
    every call it receives."""
    answers: Iterator[str] = iter(codes)
    received: list[datetime] = []

    def send(number: int) -> Exchange:
        received.append(clock.now())
        return exchange(next(answers, "000000"))

    return send, received


# --- what counts as a failed delivery (§3.4) -------------------------------------------------


def test_success_is_000000_in_a_200_json_answer_in_time() -> None:
    assert delivery_failure(exchange("000000")) is None


@pytest.mark.parametrize(
    ("sent", "kind", "rule", "transient"),
    [
        (exchange("000005"), FailureKind.RESULT_CODE, "§3.4", True),
        (exchange("000004"), FailureKind.RESULT_CODE, "§3.4", True),
        (exchange("000001"), FailureKind.RESULT_CODE, "§3.4", False),
        (exchange("000100"), FailureKind.RESULT_CODE, "§3.4", False),
        (exchange("123"), FailureKind.RESULT_CODE, "§3.4", False),
        (exchange(body=b'{"resultMsg":"ok"}'), FailureKind.NO_RESULT_CODE, "§3.4", False),
        (exchange(body=b'["000000"]'), FailureKind.NO_RESULT_CODE, "§3.4", False),
        (exchange(body=b'{"resultCode":0}'), FailureKind.NO_RESULT_CODE, "§3.4", False),
        (exchange(body=b"<html>ok</html>"), FailureKind.NOT_JSON, "§3.4", False),
        (exchange("000000", status=503), FailureKind.HTTP_STATUS, "§3.1, U3", True),
        (exchange("000000", status=404), FailureKind.HTTP_STATUS, "§3.1, U3", False),
        (exchange("000000", status=302), FailureKind.HTTP_STATUS, "§3.1, U3", False),
        (exchange(error="connection refused"), FailureKind.NO_ANSWER, "§3.4", True),
        (exchange(error="read timed out", timed_out=True), FailureKind.LATE, "§3.3", True),
        (exchange("000000", elapsed=5.2), FailureKind.LATE, "§3.3", True),
    ],
)
def test_what_fails_a_delivery(sent: Exchange, kind: FailureKind, rule: str, transient: bool) -> None:
    failure = delivery_failure(sent)
    assert failure is not None
    assert (failure.kind, failure.rule, failure.transient) == (kind, rule, transient)
    assert "\n" not in failure.message


def test_the_failure_message_uses_the_debugging_faqs_words() -> None:
    code = delivery_failure(exchange("000005"))
    assert code is not None
    assert code.message == (
        "Call interface failed. The production interface returns an error result code: "
        "resultCode 000005 (other internal error)"
    )
    garbage = delivery_failure(exchange(body=b"oops"))
    assert garbage is not None
    assert garbage.message.startswith("Debugging failed. Parse response body failed: the body is not JSON")
    late = delivery_failure(exchange(elapsed=7.25))
    assert late is not None
    assert late.message == "Call interface failed: the answer took 7.2 s, the marketplace waits 5 s"


def test_the_deadline_is_a_parameter() -> None:
    assert delivery_failure(exchange(elapsed=7.0), deadline=10.0) is None


# --- the policies, and their citations -------------------------------------------------------


def test_v1_new_instance_is_resent_60_times_every_3_minutes_then_cancelled() -> None:
    policy = policy_for("produce", "v1", "newInstance")
    assert policy is V1_NEW_INSTANCE
    assert (policy.cadence.resends, policy.cadence.first_gap, policy.cadence.growth) == (60, 3 * MINUTE, 1.0)
    assert policy.resend_on is ResendOn.ANY_FAILURE
    assert policy.after_last is DeliveryState.CANCELLED
    assert (policy.rule, policy.assumed) == ("§10.1", False)
    schedule = policy.schedule(T0)
    assert len(schedule) == 61
    assert schedule == tuple(T0 + n * 3 * MINUTE for n in range(61))
    assert schedule[-1] == T0 + timedelta(hours=3)


@pytest.mark.parametrize(("activity", "ambiguity"), [("expireInstance", "A24"), ("releaseInstance", "A25")])
def test_v1_expiry_and_release_are_resent_60_times_a_minute_apart(activity: str, ambiguity: str) -> None:
    policy = policy_for("produce", "v1", activity)
    assert policy.rule == f"§10.1, {ambiguity}"
    assert policy.after_last is DeliveryState.PARKED
    assert policy.schedule(T0)[-1] == T0 + timedelta(hours=1)
    assert len(policy.schedule(T0)) == 61


def test_v1_renewal_spans_the_published_hour_at_a_cadence_marked_as_assumed() -> None:
    policy = policy_for("produce", "v1", "refreshInstance")
    assert policy.assumed
    assert policy.schedule(T0)[-1] == T0 + timedelta(hours=1)


@pytest.mark.parametrize("activity", ["newInstance", "refreshInstance", "releaseInstance", "queryInstance"])
def test_v2_keeps_the_assumed_three_resends_after_1_2_4_seconds(activity: str) -> None:
    policy = policy_for("produce", "v2", activity)
    assert policy.name == f"v2 {activity}"
    assert policy.rule == "§10.1, U11"
    assert policy.assumed
    assert policy.resend_on is ResendOn.TRANSIENT
    assert policy.after_last is DeliveryState.PARKED  # not unsubscribed: that is U12, not played
    assert policy.cadence.anchor is Anchor.PREVIOUS_ANSWER
    assert policy.schedule(T0) == tuple(T0 + timedelta(seconds=s) for s in (0, 1, 3, 7))


def test_the_other_kinds_of_call() -> None:
    assert policy_for("produce", "v2", "refreshLicense").rule == "§10.1, U11, U24"
    opening = policy_for("produce", "v2", "getLicense")  # hourly for 3 h, then 重新启动 [S75]
    assert (opening.rule, opening.assumed, opening.after_last) == ("§6.1, §10.1", False, DeliveryState.PARKED)
    assert opening.schedule(T0) == tuple(T0 + timedelta(hours=h) for h in (0, 1, 2, 3))
    # getLicenseAsync: "may resend", no schedule on its page [S52]: U11, an ASSUMPTION; not
    # getLicense's 3 h hourly schedule, which is the access guide's [S75]
    asynchronous = policy_for("produce", "v2", "getLicenseAsync")
    assert (asynchronous.name, asynchronous.rule, asynchronous.assumed) == (
        "v2 getLicenseAsync",
        "§6.2, §10.1, U11",
        True,
    )
    assert asynchronous.schedule(T0) == tuple(T0 + timedelta(seconds=s) for s in (0, 1, 3, 7))
    assert policy_for("produce", "v1", "instanceStatus").rule == "§10.1, U11"
    assert policy_for("produce", "v1", "upgrade").assumed
    sync = policy_for("sync", "sync", "authSync")
    assert (sync.name, sync.cadence.attempts, sync.rule) == ("sync authSync", 1, KIT_SYNC.rule)
    notice = policy_for("notification", "notification", "orderNotification")
    assert notice is ORDER_NOTIFICATION
    assert notice.schedule(T0)[-1] == T0 + timedelta(hours=3)  # "keeps calling for 3 hours" [S59]
    assert notice.after_last is DeliveryState.PARKED
    assert policy_for_exchange(exchange(interface="sync", protocol="sync", activity="tenantSync")).name == (
        "sync tenantSync"
    )
    with pytest.raises(ValueError, match="no delivery policy"):
        policy_for("openapi", "v2", "queryOrder")


def _policies() -> list[DeliveryPolicy]:
    calls = [("produce", "v1", a) for a in ("newInstance", "refreshInstance", "expireInstance")]
    calls += [("produce", "v1", a) for a in ("releaseInstance", "instanceStatus", "upgrade")]
    calls += [("produce", "v2", "newInstance"), ("produce", "v2", "getLicense")]
    calls += [("produce", "v2", "getLicenseAsync")]
    calls += [("sync", "sync", "authSync"), ("notification", "notification", "orderNotification")]
    return [policy_for(*call) for call in calls]


def test_every_policy_cites_sections_and_entries_that_exist_in_the_spec() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", spec, flags=re.MULTILINE))
    entries = set(re.findall(r"^\| ([AU]\d+) \|", spec, flags=re.MULTILINE))
    for policy in _policies():
        for ref in policy.rule.split(", "):
            if ref.startswith("§"):
                assert ref[1:] in sections, f"{policy.name}: {ref} is not a section of docs/protocol.md"
            else:
                assert ref in entries, f"{policy.name}: {ref} is not in docs/protocol.md §11/§12"
        if re.search(r"\bU\d+", policy.rule):
            assert policy.assumed, f"{policy.name} rests on an ASSUMPTION but does not say so"
        assert policy.basis


def test_a_policy_describes_itself() -> None:
    assert V1_NEW_INSTANCE.describe() == (
        "v1 newInstance: 60 resend(s), every 3m, on any failed call; "
        "then the order is judged failed and cancelled automatically (§10.1)"
    )
    assert KIT_SYNC.describe().startswith(
        "sync (Kit): no resends; then parked as a production-interface message"
    )


# --- the user's override (formerly KOOSIM_RESENDS / KOOSIM_BACKOFF) --------------------------


def test_an_override_changes_the_cadence_and_says_so() -> None:
    override = DeliveryOverride(resends=1, first_gap=timedelta(seconds=30))
    policy = policy_for("produce", "v2", "newInstance", override)
    assert policy.override is override
    assert policy.schedule(T0) == (T0, T0 + timedelta(seconds=30))
    assert policy.describe().endswith("[overridden: resends 1, first gap 30s]")
    assert policy.rule == V2_PRODUCE.rule  # what it rests on is unchanged; the override is shown beside


def test_no_resends_ends_a_v1_subscription_after_one_attempt() -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy_for("produce", "v1", "newInstance", DeliveryOverride(resends=0)), clock)
    send, received = merchant(["000005"], clock)
    deliver(delivery, send)
    assert received == [T0]
    assert delivery.state is DeliveryState.CANCELLED


@pytest.mark.parametrize(
    "override",
    [
        {"resends": -1},
        {"resends": MAX_POLICY_RESENDS + 1},
        {"first_gap": timedelta(seconds=-1)},
        {"growth": 0.5},
        {"growth": float("nan")},
        {"resends": 60, "first_gap": timedelta(hours=1), "growth": 2.0},
        {"resends": 60},  # the 1 s, 2 s, 4 s … backoff of U11, doubled 59 times
    ],
)
def test_a_bad_override_is_refused_before_any_policy_uses_it(override: dict[str, object]) -> None:
    with pytest.raises(ValueError) as raised:
        DeliveryOverride(**override)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)


# --- one delivery, start to end --------------------------------------------------------------


def test_a_subscription_failing_twice_gets_exactly_the_scheduled_attempts() -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    send, received = merchant(["000005", "000005"], clock)
    exchanges = deliver(delivery, send)
    assert len(exchanges) == 3
    assert received == [T0, T0 + 3 * MINUTE, T0 + 6 * MINUTE]
    assert [attempt.due for attempt in delivery.attempts] == received
    assert delivery.state is DeliveryState.DELIVERED
    assert delivery.next_due is None
    assert delivery.summary() == "delivered on attempt 3 of 3, +6m"
    timeline = delivery.timeline()
    assert len(timeline) == 3
    assert timeline[1].startswith("attempt 2: market 2026-11-29T08:03:00.000Z (+3m), wall ")
    assert timeline[2].endswith(": succeeded")


def test_a_v2_subscription_failing_twice_follows_the_assumed_backoff() -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy_for("produce", "v2", "newInstance"), clock)
    send, received = merchant(["000005", "000005"], clock)
    deliver(delivery, send)
    assert received == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)]
    assert delivery.state is DeliveryState.DELIVERED


def test_a_subscription_that_never_succeeds_is_cancelled_automatically_after_3_hours() -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    send, received = merchant(["000001"] * 100, clock)  # even a refusal is resent on V1
    deliver(delivery, send)
    assert received == list(V1_NEW_INSTANCE.schedule(T0))
    assert delivery.state is DeliveryState.CANCELLED
    assert delivery.next_due is None
    assert clock.now() == T0 + timedelta(hours=3)
    assert delivery.summary().startswith(
        "61 failed attempt(s) over 3h: the order is judged failed and cancelled automatically (§10.1); last: "
    )
    with pytest.raises(NothingToRestart, match="cancelled"):
        delivery.restart()


def test_v2_parks_after_the_last_resend_and_a_refusal_is_not_resent() -> None:
    clock = FrozenClock(T0, waits="jump")
    flaky = Delivery(policy_for("produce", "v2", "refreshInstance"), clock)
    deliver(flaky, merchant(["000005"] * 10, clock)[0])
    assert (len(flaky.attempts), flaky.state) == (4, DeliveryState.PARKED)
    refusing = Delivery(policy_for("produce", "v2", "refreshInstance"), clock)
    deliver(refusing, merchant(["000002"], clock)[0])
    assert (len(refusing.attempts), refusing.state) == (1, DeliveryState.PARKED)
    assert "生产接口消息" in refusing.summary()


def test_a_manual_restart_of_a_parked_delivery_sends_it_once_more() -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy_for("produce", "v1", "expireInstance"), clock)
    deliver(delivery, merchant(["000005"] * 61, clock)[0])
    states = [delivery.state]
    clock.advance(timedelta(days=1))  # the seller fixes the interface the next day
    assert delivery.restart() == T0 + timedelta(days=1, hours=1)
    states.append(delivery.state)
    assert states == [DeliveryState.PARKED, DeliveryState.PENDING]
    assert delivery.is_due()
    send, received = merchant(["000005"], clock)
    deliver(delivery, send)  # still failing: parked again
    assert (received, delivery.state) == ([clock.now()], DeliveryState.PARKED)
    delivery.restart()
    deliver(delivery, merchant([], clock)[0])
    assert delivery.state is DeliveryState.DELIVERED
    assert [attempt.manual for attempt in delivery.attempts[-3:]] == [False, True, True]
    assert "(manual 重新启动)" in delivery.timeline()[-1]
    with pytest.raises(NothingToRestart, match="delivered"):
        delivery.restart()


def test_a_restart_during_the_schedule_adds_one_attempt_and_keeps_the_timetable() -> None:
    clock = FrozenClock(T0)
    delivery = Delivery(policy_for("notification", "notification", "orderNotification"), clock)
    delivery.begin()
    delivery.finish(delivery_failure(exchange("000005")))
    clock.advance(MINUTE)
    assert delivery.restart() == T0 + MINUTE
    assert delivery.restart() == T0 + MINUTE  # pressing twice changes nothing
    assert delivery.begin() == 2
    assert delivery.finish(delivery_failure(exchange("000005"))) is DeliveryState.PENDING
    assert delivery.next_due == T0 + 3 * MINUTE  # the timetable's second attempt, unchanged
    assert len(delivery.automatic) == 1


# --- driving it by hand: due instants, slow answers, restoring -------------------------------


def test_attempts_go_out_only_when_due_and_one_at_a_time() -> None:
    clock = FrozenClock(T0)
    delivery = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    assert delivery.is_due()
    with pytest.raises(DeliveryError, match="no attempt in flight"):
        delivery.finish(None)
    assert delivery.begin() == 1
    assert delivery.next_due is None
    assert delivery.in_flight == 1
    with pytest.raises(DeliveryError, match="waiting for the answer to attempt 1"):
        delivery.begin()
    with pytest.raises(NothingToRestart, match="waiting for the answer"):
        delivery.restart()
    delivery.finish(delivery_failure(exchange("000005")))
    assert not delivery.is_due()
    with pytest.raises(DeliveryError, match=re.escape("not due before 2026-11-29T08:03:00.000Z")):
        delivery.begin()
    assert delivery.summary() == "pending after 1 attempt(s): next attempt due 2026-11-29T08:03:00.000Z"


def test_a_timetable_does_not_drift_with_slow_answers_but_a_backoff_waits_after_the_answer() -> None:
    clock = FrozenClock(T0)
    timetable = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    backoff = Delivery(policy_for("produce", "v2", "newInstance"), clock)
    for delivery in (timetable, backoff):
        delivery.begin()
    clock.advance(timedelta(seconds=2))  # both answers take 2 s of marketplace time
    for delivery in (timetable, backoff):
        delivery.finish(delivery_failure(exchange(error="connection reset")))
    assert timetable.next_due == T0 + 3 * MINUTE
    assert backoff.next_due == T0 + timedelta(seconds=3)


def test_a_late_attempt_says_how_late() -> None:
    clock = FrozenClock(T0)
    delivery = Delivery(policy_for("produce", "v1", "newInstance"), clock, first_due=T0)
    clock.advance(timedelta(seconds=42))  # a busy scheduler
    delivery.begin()
    delivery.finish(None)
    assert delivery.attempts[0].late_by == timedelta(seconds=42)


def test_a_delivery_rebuilt_from_its_attempts_resumes_where_it_was() -> None:
    clock = FrozenClock(T0, waits="jump")
    original = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    send, _ = merchant(["000005"] * 5, clock)
    for _ in range(2):
        clock.sleep_until(original.next_due or T0)
        original.begin()
        original.finish(delivery_failure(send(len(original.attempts) + 1)))
    rebuilt = Delivery(original.policy, clock, first_due=original.first_due, attempts=original.attempts)
    assert rebuilt.next_due == original.next_due == T0 + 6 * MINUTE
    assert rebuilt.state is DeliveryState.PENDING
    assert repr(rebuilt) == "<Delivery v1 newInstance: pending, 2 attempt(s)>"
    with pytest.raises(ValueError, match="numbered"):
        Delivery(original.policy, clock, attempts=original.attempts[1:])


def test_a_scaled_clock_plays_the_3_hour_schedule_in_3_wall_seconds() -> None:
    wall = FakeWall()
    clock = ScaledClock(3600, start=T0, wall=wall)
    delivery = Delivery(policy_for("produce", "v1", "newInstance"), clock)
    received: list[datetime] = []

    def send(number: int) -> Exchange:
        received.append(clock.now())
        return exchange("000005")

    deliver(delivery, send)
    assert delivery.state is DeliveryState.CANCELLED
    assert sum(wall.sleeps) == pytest.approx(3.0)
    for got, scheduled in zip(received, V1_NEW_INSTANCE.schedule(T0), strict=True):
        assert timedelta(0) <= got - scheduled < timedelta(milliseconds=10)


# --- properties ------------------------------------------------------------------------------

OUTCOMES = {
    "ok": exchange("000000"),
    "000005": exchange("000005"),
    "000002": exchange("000002"),
    "503": exchange("000000", status=503),
    "timeout": exchange(error="timed out", timed_out=True),
}


@given(
    policy=st.sampled_from(_policies()),
    answers=st.lists(st.sampled_from(sorted(OUTCOMES)), max_size=70),
)
def test_any_delivery_makes_the_scheduled_attempts_and_ends_as_its_policy_says(
    policy: DeliveryPolicy, answers: list[str]
) -> None:
    clock = FrozenClock(T0, waits="jump")
    delivery = Delivery(policy, clock)
    replies = iter(answers)
    received: list[datetime] = []

    def send(number: int) -> Exchange:
        received.append(clock.now())
        return OUTCOMES[next(replies, "ok")]

    deliver(delivery, send)
    # what the policy says should happen, computed independently of the state machine
    expected = 0
    failure: Failure | None = None
    for answer in [*answers, "ok"][: policy.cadence.attempts]:
        expected += 1
        failure = delivery_failure(OUTCOMES[answer])
        if failure is None or not (policy.resend_on is ResendOn.ANY_FAILURE or failure.transient):
            break
    assert received == list(policy.schedule(T0)[:expected])
    if failure is None:
        assert delivery.state is DeliveryState.DELIVERED
    else:
        assert delivery.state is policy.after_last
    assert delivery.next_due is None


@given(resends=st.integers(0, MAX_POLICY_RESENDS), gap=st.integers(0, 3600), growth=st.floats(1, 3))
def test_a_schedule_is_increasing_and_has_one_instant_per_attempt(
    resends: int, gap: int, growth: float
) -> None:
    try:
        cadence = Cadence(resends, timedelta(seconds=gap), growth)
    except ValueError as exc:  # only a schedule longer than the cap is refused
        assert "longer than" in str(exc)
        assert gap * sum(growth**n for n in range(resends)) > MAX_SCHEDULE_SPAN.total_seconds()
        return
    assert cadence.offsets[-1] <= MAX_SCHEDULE_SPAN
    schedule = [T0 + offset for offset in cadence.offsets]
    assert len(schedule) == cadence.attempts == resends + 1
    assert schedule == sorted(schedule)
    assert schedule[0] == T0
