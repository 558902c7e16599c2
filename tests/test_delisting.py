"""The delisting verdicts (simulator/engine/delisting.py): dial tests, V1 failed orders, and the
rule without a number. Days are driven by a frozen clock; nothing sleeps."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.clock import FrozenClock
from simulator.engine.delisting import (
    FREEZE_AFTER_FAILING_DAYS,
    MARKETPLACE_TZ,
    DelistingVerdict,
    DialDay,
    Rule,
    dial_days,
    dial_test_instants,
    dial_test_verdict,
    failed_orders_this_month,
    frequent_failures_verdict,
    marketplace_day,
    next_dial_test,
    v1_orders_verdict,
)

SPEC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
DAY1 = date(2026, 11, 1)
FAIL, PASS = (False, False), (True, True)


def days(*probes: tuple[bool, ...]) -> list[DialDay]:
    """Consecutive marketplace days from DAY1, one per argument."""
    return [DialDay(DAY1 + timedelta(days=n), day) for n, day in enumerate(probes)]


# --- dial tests ------------------------------------------------------------------------------


def test_one_failing_day_starts_the_countdown() -> None:
    verdict = dial_test_verdict(days(FAIL))
    assert verdict.text == "a dial test failed: 4 more failing days and the product is frozen and hidden"
    assert (verdict.rule, verdict.reached, verdict.remaining) == (Rule.DIAL_TEST, False, 4)
    assert verdict.rule_ref == "§10.3, U14"


def test_five_failing_days_freeze_and_hide_the_product_on_day_five_not_before() -> None:
    four = dial_test_verdict(days(*[FAIL] * 4))
    assert four.text == "a dial test failed: 1 more failing day and the product is frozen and hidden"
    assert (four.reached, four.remaining) == (False, 1)
    five = dial_test_verdict(days(*[FAIL] * 5))
    assert five.text == "a dial test failed 5 days in a row (to 2026-11-05): the product is frozen and hidden"
    assert (five.reached, five.remaining) == (True, 0)


def test_five_failing_days_on_the_frozen_clock() -> None:
    """Probe twice a marketplace day, as [S25] says, on a clock the test advances; the merchant
    fails every probe. The verdict reaches "frozen" at day five's first probe, never earlier."""
    clock = FrozenClock(datetime(2026, 11, 1, 0, 0, tzinfo=MARKETPLACE_TZ), waits="jump")
    probes: list[tuple[datetime, bool]] = []
    verdicts: list[tuple[date, DelistingVerdict]] = []
    for _ in range(2 * FREEZE_AFTER_FAILING_DAYS):
        clock.sleep_until(next_dial_test(clock.now()))
        probes.append((clock.now(), False))
        verdicts.append((marketplace_day(clock.now()), dial_test_verdict(dial_days(probes))))
    reached = [day for day, verdict in verdicts if verdict.reached]
    assert reached[0] == date(2026, 11, 5)
    assert [verdict.remaining for _, verdict in verdicts[:8]] == [4, 4, 3, 3, 2, 2, 1, 1]
    assert clock.now() == datetime(2026, 11, 5, 15, 0, tzinfo=MARKETPLACE_TZ)


def test_a_passing_day_resets_the_count() -> None:
    verdict = dial_test_verdict(days(FAIL, FAIL, FAIL, FAIL, PASS, FAIL))
    assert (verdict.reached, verdict.remaining) == (False, 4)
    passing = dial_test_verdict(days(FAIL, FAIL, PASS))
    assert (
        passing.text == "the last dial-test day passed; 5 failing days in a row freeze and hide the product"
    )
    assert passing.remaining == 5


def test_a_day_fails_when_either_probe_fails() -> None:
    verdict = dial_test_verdict(days((True, False), (False, True), (True, False), (False,), (False, True)))
    assert verdict.reached


def test_days_without_a_probe_neither_pass_nor_reset() -> None:
    history = days(FAIL, FAIL)
    history.append(DialDay(DAY1 + timedelta(days=2), ()))  # an unobserved day
    history += [DialDay(DAY1 + timedelta(days=n), FAIL) for n in (4, 5, 6)]  # and a gap on day 4
    assert dial_test_verdict(history).text.startswith("a dial test failed 5 days in a row (to 2026-11-07)")


def test_the_freeze_stays_once_reached() -> None:
    verdict = dial_test_verdict(days(*[FAIL] * 5, PASS, PASS))
    assert verdict.reached
    assert "(to 2026-11-05)" in verdict.text


def test_no_dial_test_yet() -> None:
    verdict = dial_test_verdict([])
    assert verdict.text == "no dial test yet; 5 failing days in a row freeze and hide the product"
    assert (verdict.reached, verdict.remaining) == (False, 5)


def test_results_of_one_date_given_twice_are_taken_together() -> None:
    morning = [DialDay(DAY1 + timedelta(days=n), (False,)) for n in range(5)]
    afternoon = [DialDay(DAY1 + timedelta(days=n), (True,)) for n in range(5)]
    assert dial_test_verdict(afternoon + morning).reached


def _oracle_reached(history: list[tuple[bool, ...]]) -> bool:
    """Five observed failing days with no passing day between them, by brute force."""
    observed = [not all(day) for day in history if day]
    return any(all(observed[i : i + 5]) for i in range(len(observed) - 4))


@given(st.lists(st.lists(st.booleans(), max_size=2).map(tuple), max_size=30), st.randoms())
def test_the_verdict_is_the_published_rule_whatever_the_order_given(
    history: list[tuple[bool, ...]], random: Random
) -> None:
    given_days = days(*history)
    shuffled = list(given_days)
    random.shuffle(shuffled)
    verdict = dial_test_verdict(shuffled)
    assert verdict == dial_test_verdict(given_days)
    assert verdict.reached == _oracle_reached(history)
    assert verdict.remaining is not None
    assert 0 <= verdict.remaining <= FREEZE_AFTER_FAILING_DAYS
    assert verdict.reached == (verdict.remaining == 0)


# --- marketplace days and dial-test times ----------------------------------------------------


def test_probes_fall_on_marketplace_days_in_utc_plus_8() -> None:
    late_utc = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # 01:00 on the 30th in the marketplace
    grouped = dial_days([(late_utc, False), (datetime(2026, 11, 29, 1, 0, tzinfo=UTC), True)])
    assert grouped == [DialDay(date(2026, 11, 29), (True,)), DialDay(date(2026, 11, 30), (False,))]
    with pytest.raises(ValueError, match="timezone-aware"):
        marketplace_day(datetime(2026, 11, 29, 17, 0))


def test_dial_tests_run_in_the_morning_and_the_afternoon() -> None:
    morning, afternoon = dial_test_instants(date(2026, 11, 29))
    assert (morning, afternoon) == (
        datetime(2026, 11, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
    )
    assert next_dial_test(datetime(2026, 11, 29, 0, 0, tzinfo=UTC)) == morning
    assert next_dial_test(morning) == afternoon
    assert next_dial_test(afternoon) == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


# --- V1 failed orders ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failed", "text", "reached", "remaining"),
    [
        (0, "0 failed orders this month, the v1 limit is 5", False, 6),
        (1, "1 failed order this month, the v1 limit is 5", False, 5),
        (3, "3 failed orders this month, the v1 limit is 5", False, 3),
        (5, "5 failed orders this month, the v1 limit is 5", False, 1),
        (6, "6 failed orders this month, more than the v1 limit of 5: the product is removed", True, 0),
    ],
)
def test_more_than_five_failed_v1_orders_a_month_remove_the_product(
    failed: int, text: str, reached: bool, remaining: int
) -> None:
    verdict = v1_orders_verdict(failed)
    assert (verdict.text, verdict.reached, verdict.remaining) == (text, reached, remaining)
    assert (verdict.rule, verdict.rule_ref) == (Rule.V1_ORDERS, "§10.3")


def test_failed_orders_are_counted_per_calendar_month_of_the_marketplace() -> None:
    now = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
    cancellations = [
        datetime(2026, 11, 30, 15, 59, tzinfo=UTC),  # 23:59 on 30 November in UTC+8: last month
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),  # 00:00 on 1 December: this month
        datetime(2026, 12, 31, 15, 59, tzinfo=UTC),  # 23:59 on 31 December
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),  # 1 January: next month
    ]
    assert failed_orders_this_month(cancellations, now) == 2


@pytest.mark.parametrize("bad", [-1, True])
def test_a_count_is_a_whole_number(bad: int) -> None:
    with pytest.raises(ValueError):
        v1_orders_verdict(bad)
    with pytest.raises(ValueError):
        frequent_failures_verdict(bad)


# --- the rule without a number ---------------------------------------------------------------


def test_frequent_failures_name_no_number_and_never_reach_a_verdict() -> None:
    verdict = frequent_failures_verdict(3)
    assert verdict.text == (
        "3 failed calls: the pages remove a product whose interface fails 'frequently' and publish no number"
    )
    assert (verdict.reached, verdict.remaining, verdict.rule_ref) == (False, None, "§10.3, A42")
    assert frequent_failures_verdict(1).text.startswith("1 failed call:")
    assert verdict.as_dict()["rule"] == "frequent failures"


def test_every_verdict_cites_what_exists_in_the_spec() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", spec, flags=re.MULTILINE))
    entries = set(re.findall(r"^\| ([AU]\d+) \|", spec, flags=re.MULTILINE))
    for verdict in (dial_test_verdict([]), v1_orders_verdict(0), frequent_failures_verdict(0)):
        for ref in verdict.rule_ref.split(", "):
            assert ref[1:] in sections if ref.startswith("§") else ref in entries, ref
