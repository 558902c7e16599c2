"""The delisting verdict: which published consequence a merchant's failures lead to
(docs/protocol.md §10.3, A42).

The pages give three separate rules (A42), reported separately, each here a pure function that
returns a :class:`DelistingVerdict` whose ``text`` a report prints as it is:

- **dial tests** [S25]: the marketplace probes every registered interface of a product on sale
  every morning and every afternoon; an interface failing the probe five days in a row gets the
  product's transactions frozen and the product hidden — :func:`dial_test_verdict`;
- **V1 failed orders** [S38]: more than five orders failed through interface errors in one
  month and a V1 product is removed — :func:`v1_orders_verdict`;
- **frequent failures** (every other page): "frequent" interface failures lead to removal, with
  no number — :func:`frequent_failures_verdict` says so instead of calling every failed check a
  delisting risk.

What the pages leave open, and koosim's reading (ASSUMPTIONs, so these verdicts are never the
reason for an ``error``, §0):

- *when a day fails* (U14): the page counts failing **days** but probes twice a day. koosim
  counts a day as failing when **any** of its probes fails — the stricter reading, which a
  merchant satisfies under either text (a merchant none of whose probes fails is safe under
  both); a day passes only when every probe passes, and a passing day resets the count;
- *days koosim did not observe* (``watch`` not run that day) neither pass nor fail: they do not
  reset the count (stricter again: the real probes of that day may have failed);
- *after the freeze*: no page says how a product comes back, so the frozen verdict stays once
  reached, whatever later days show;
- *the marketplace's day and month* (U14): calendar days and months in UTC+08:00, the zone of
  the pages' own timestamps and of the Kit tables (A32); the dial tests at 09:00 and 15:00 there;
- *one month* for the V1 rule: the calendar month ("this month"); a rolling 30-day window would
  be stricter, and no page says which is meant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any

MARKETPLACE_TZ = timezone(timedelta(hours=8), "UTC+08:00")
"""The zone of the marketplace's days and months (ASSUMPTION, see the module docstring)."""

DIAL_TEST_TIMES = (time(9, 0), time(15, 0))
"""When the two daily dial tests run, marketplace local time: "every morning and every
afternoon" [S25]; the hours are ASSUMPTION U14."""

FREEZE_AFTER_FAILING_DAYS = 5
"""Consecutive failing dial-test days that freeze and hide the product (§10.3 [S25])."""

V1_FAILED_ORDER_LIMIT = 5
"""Failed V1 orders a month a product may have; one more and it is removed (§10.3 [S38])."""


class Rule(StrEnum):
    DIAL_TEST = "dial test"
    V1_ORDERS = "v1 failed orders"
    FREQUENT_FAILURES = "frequent failures"
    NONE = "no published consequence"
    """A broken rule the marketplace does not see as a failed call (§3.4): no delisting rule
    applies to it (the check keeps its severity)."""


@dataclass(frozen=True)
class DelistingVerdict:
    """Where a merchant stands under one published rule.

    ``reached``: the rule's consequence happens (frozen and hidden, removed). ``remaining``: how
    many more failing days or failed orders until it does (0 once reached; None for the rule
    without a number). ``rule_ref`` cites docs/protocol.md as a check's ``rule`` does.
    """

    rule: Rule
    text: str
    rule_ref: str
    reached: bool
    remaining: int | None

    def as_dict(self) -> dict[str, str | bool | int | None]:
        return {
            "rule": self.rule.value,
            "text": self.text,
            "rule_ref": self.rule_ref,
            "reached": self.reached,
            "remaining": self.remaining,
        }


# --- dial tests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DialDay:
    """One marketplace day's dial-test results: one bool per probe, True when it passed."""

    day: date
    probes: tuple[bool, ...]

    @property
    def observed(self) -> bool:
        return bool(self.probes)

    @property
    def failed(self) -> bool:
        """Any probe of the day failed (koosim's reading, U14; see the module docstring)."""
        return self.observed and not all(self.probes)


def marketplace_day(instant: datetime, tz: timezone = MARKETPLACE_TZ) -> date:
    """The marketplace day ``instant`` (aware) falls on."""
    if instant.tzinfo is None:
        raise ValueError(f"the instant must be timezone-aware, not the naive {instant.isoformat()}")
    return instant.astimezone(tz).date()


def dial_days(probes: Iterable[tuple[datetime, bool]], tz: timezone = MARKETPLACE_TZ) -> list[DialDay]:
    """Probe results (when, passed) grouped into marketplace days, oldest first."""
    by_day: dict[date, list[tuple[datetime, bool]]] = {}
    for instant, passed in probes:
        by_day.setdefault(marketplace_day(instant, tz), []).append((instant, passed))
    return [
        DialDay(day, tuple(passed for _, passed in sorted(results, key=lambda result: result[0])))
        for day, results in sorted(by_day.items())
    ]


def dial_test_instants(day: date, tz: timezone = MARKETPLACE_TZ) -> tuple[datetime, ...]:
    """When the marketplace dial-tests on ``day`` (U14: 09:00 and 15:00 marketplace time)."""
    return tuple(datetime.combine(day, at, tz) for at in DIAL_TEST_TIMES)


def next_dial_test(after: datetime, tz: timezone = MARKETPLACE_TZ) -> datetime:
    """The first dial-test instant strictly after ``after`` (aware)."""
    day = marketplace_day(after, tz)
    while True:
        for instant in dial_test_instants(day, tz):
            if instant > after:
                return instant
        day += timedelta(days=1)


def dial_test_verdict(days: Iterable[DialDay]) -> DelistingVerdict:
    """The dial-test rule's verdict over a history of marketplace days (any order; results for
    one date given twice are taken together).

    "a dial test failed: 4 more failing days and the product is frozen and hidden" after one
    failing day; "a dial test failed 5 days in a row (to 2026-11-05): the product is frozen and
    hidden" on the fifth, and from then on.
    """
    merged: dict[date, tuple[bool, ...]] = {}
    for dial_day in days:
        merged[dial_day.day] = merged.get(dial_day.day, ()) + dial_day.probes
    history = [DialDay(day, probes) for day, probes in sorted(merged.items()) if probes]
    streak, frozen_on = 0, None
    for dial_day in history:
        streak = streak + 1 if dial_day.failed else 0
        if streak == FREEZE_AFTER_FAILING_DAYS and frozen_on is None:
            frozen_on = dial_day.day
    ref = "§10.3, U14"
    limit = FREEZE_AFTER_FAILING_DAYS
    if frozen_on is not None:
        text = f"a dial test failed {limit} days in a row (to {frozen_on}): the product is frozen and hidden"
        return DelistingVerdict(Rule.DIAL_TEST, text, ref, reached=True, remaining=0)
    if not history:
        text = f"no dial test yet; {limit} failing days in a row freeze and hide the product"
    elif streak == 0:
        text = f"the last dial-test day passed; {limit} failing days in a row freeze and hide the product"
    else:
        more = limit - streak
        text = (
            f"a dial test failed: {more} more failing {'day' if more == 1 else 'days'} "
            "and the product is frozen and hidden"
        )
    return DelistingVerdict(Rule.DIAL_TEST, text, ref, reached=False, remaining=limit - streak)


# --- V1 failed orders ------------------------------------------------------------------------


def failed_orders_this_month(
    failures: Iterable[datetime], now: datetime, tz: timezone = MARKETPLACE_TZ
) -> int:
    """How many of the order failures (the instants V1 orders were cancelled automatically,
    §10.1) fall in the calendar month of ``now``, marketplace time."""
    month = marketplace_day(now, tz).replace(day=1)
    return sum(1 for instant in failures if marketplace_day(instant, tz).replace(day=1) == month)


def v1_orders_verdict(failed_orders: int, *, scope: str = "this month") -> DelistingVerdict:
    """The V1 rule's verdict for this month's failed orders: "3 failed orders this month, the
    v1 limit is 5"; removal when there are more than 5 [S38]. ``scope`` names where the orders
    were counted when it is not the month ("in this run": a run sees only its own orders, and
    they are this month's, so more than 5 there is more than 5 this month)."""
    if isinstance(failed_orders, bool) or failed_orders < 0:
        raise ValueError(f"a number of failed orders is a whole number >= 0, not {failed_orders!r}")
    limit = V1_FAILED_ORDER_LIMIT
    orders = "order" if failed_orders == 1 else "orders"
    per = "" if scope == "this month" else " a month"
    if failed_orders > limit:
        text = (
            f"{failed_orders} failed {orders} {scope}, more than the v1 limit of {limit}{per}: "
            "the product is removed"
        )
        return DelistingVerdict(Rule.V1_ORDERS, text, "§10.3", reached=True, remaining=0)
    text = f"{failed_orders} failed {orders} {scope}, the v1 limit is {limit}{per}"
    return DelistingVerdict(Rule.V1_ORDERS, text, "§10.3", reached=False, remaining=limit + 1 - failed_orders)


# --- frequent failures -----------------------------------------------------------------------


def frequent_failures_verdict(failed_calls: int) -> DelistingVerdict:
    """The rule without a number (A42): say what the pages say, never "delisting risk"."""
    if isinstance(failed_calls, bool) or failed_calls < 0:
        raise ValueError(f"a number of failed calls is a whole number >= 0, not {failed_calls!r}")
    calls = "call" if failed_calls == 1 else "calls"
    text = (
        f"{failed_calls} failed {calls}: the pages remove a product whose interface fails "
        "'frequently' and publish no number"
    )
    return DelistingVerdict(Rule.FREQUENT_FAILURES, text, "§10.3, A42", reached=False, remaining=None)


# --- a run's verdict: which published consequence each failure leads to ----------------------

ORDER_ACTIVITIES = frozenset({"newInstance", "getLicense", "getLicenseAsync"})
"""The calls that open an order: when one fails, the order fails (§10.1, §10.3)."""


@dataclass(frozen=True)
class Consequence:
    """What one failed check leads to under the published rules: ``rule`` names the rule the
    failure counts toward, ``text`` says how, in a sentence a report prints as it is."""

    check: str
    rule: Rule
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "rule": self.rule.value, "text": self.text}


@dataclass(frozen=True)
class RunVerdict:
    """The delisting verdict of a run (or of a watched target): one :class:`DelistingVerdict`
    per published rule that has something to say, and the consequence of each failed check.

    It replaces the old ``delisting_risk`` flag, which called any failed check a delisting risk:
    a check's severity says whether a rule is broken; this says what the marketplace then does.
    """

    verdicts: tuple[DelistingVerdict, ...] = ()
    consequences: tuple[Consequence, ...] = ()

    @property
    def reached(self) -> bool:
        """A rule's consequence happens: frozen and hidden, or removed."""
        return any(verdict.reached for verdict in self.verdicts)

    @property
    def counting(self) -> bool:
        """Something counts against the merchant: a failed check, or a failing dial-test day."""
        return bool(self.counted) or any(_warns(verdict) for verdict in self.verdicts)

    @property
    def counted(self) -> tuple[Consequence, ...]:
        """The failed checks that count toward a published rule."""
        return tuple(item for item in self.consequences if item.rule is not Rule.NONE)

    @property
    def headline(self) -> str:
        reached = [verdict.text for verdict in self.verdicts if verdict.reached]
        if reached:
            return "Delisting verdict: " + "; ".join(reached)
        if not self.counting:
            return "Delisting verdict: no failure here leads to a published delisting consequence (§10.3)"
        counted = len(self.counted)
        if counted == 1:
            failures = "1 failed check counts"
        elif counted:
            failures = f"{counted} failed checks count"
        else:
            failures = "the failing dial tests count"
        return f"Delisting verdict: {failures} toward the published rules (§10.3), none reached yet"

    def lines(self) -> list[str]:
        """The rules' verdicts, then each failed check's consequence, one line each."""
        return [f"{verdict.text} ({verdict.rule_ref})" for verdict in self.verdicts] + [
            f"{consequence.check}: {consequence.text}" for consequence in self.consequences
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "headline": self.headline,
            "reached": self.reached,
            "rules": [verdict.as_dict() for verdict in self.verdicts],
            "consequences": [consequence.as_dict() for consequence in self.consequences],
        }

    @classmethod
    def from_dict(cls, data: object) -> RunVerdict | None:
        """A verdict read back from a JSON record; None when ``data`` is not one (an older record:
        recompute it with :func:`record_verdict`)."""
        if not isinstance(data, dict):
            return None
        try:
            verdicts = tuple(
                DelistingVerdict(
                    Rule(item["rule"]),
                    str(item["text"]),
                    str(item["rule_ref"]),
                    bool(item["reached"]),
                    None if item.get("remaining") is None else int(item["remaining"]),
                )
                for item in data.get("rules", [])
            )
            consequences = tuple(
                Consequence(str(item["check"]), Rule(item["rule"]), str(item["text"]))
                for item in data.get("consequences", [])
            )
        except (KeyError, TypeError, ValueError):
            return None
        return cls(verdicts, consequences)


def _warns(verdict: DelistingVerdict) -> bool:
    """A rule's verdict that counts something against the merchant: a failing dial-test day."""
    return verdict.reached or (
        verdict.rule is Rule.DIAL_TEST
        and verdict.remaining is not None
        and verdict.remaining < FREEZE_AFTER_FAILING_DAYS
    )


def _request_fields(exchange: Mapping[str, Any]) -> dict[str, Any]:
    """The members of a recorded request body (an empty dict when it is not a JSON object)."""
    body = (exchange.get("request") or {}).get("body")
    if not isinstance(body, str):
        return {}
    try:
        fields = json.loads(body)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _failed_call(exchange: Mapping[str, Any]) -> bool:
    """Whether the marketplace counts a recorded call as failed (§3.4), as far as its record
    shows: no answer, not HTTP 200, a ``resultCode`` other than ``000000`` (or none, or a body
    that does not parse), or a newInstance success without an ``instanceId`` (§10.4 D4)."""
    response = exchange.get("response")
    if not isinstance(response, dict) or response.get("status") != 200:
        return True
    if response.get("result_code") != "000000":
        return True
    if exchange.get("activity") == "newInstance":
        try:
            answer = json.loads(str(response.get("body") or ""))
        except ValueError:
            return True
        return not (isinstance(answer, dict) and answer.get("instanceId"))
    return False


ANSWER_FAMILIES = frozenset({"contract", "timing"})
"""Check families that judge answers by §3.4's other failure causes (a missing or over-long
member, a missing Body-Sign, a late answer): a failure there is a failed call."""


def consequence_of(
    check: Mapping[str, Any], exchanges: Mapping[str, Mapping[str, Any]], protocol: str
) -> Consequence:
    """Which published consequence a failed check (a record of engine/record.py) leads to,
    read from the calls its findings point at:

    - the test order (``testFlag=1``) failing: what a dial test sends (ASSUMPTION U14), so the
      dial-test rule — five failing days in a row freeze and hide the product;
    - an order opened for real failing: the order fails — V1: the order is cancelled after the
      published resends and counts toward the five a month [S38]; V2: no number, "frequent";
    - any other failed call (§3.4): the pages remove a product whose interface fails
      "frequently" (A42);
    - a broken rule on calls the marketplace counts as answered (a duplicate instance, a forged
      call accepted — the marketplace never sends one): no published delisting consequence.
    """
    check_id = str(check.get("id", "?"))
    family = check_id.split(".", 1)[0]
    shown = [
        exchanges[exchange_id]
        for finding in check.get("findings", [])
        for exchange_id in finding.get("exchanges", [])
        if exchange_id in exchanges
    ]
    failed = (
        [] if family == "security" else [e for e in shown if family in ANSWER_FAMILIES or _failed_call(e)]
    )
    orders = [e for e in failed if e.get("interface") == "produce" and e.get("activity") in ORDER_ACTIVITIES]
    # what the dial test itself judges (engine/dial.py: the envelope and the instanceId)
    if any(str(_request_fields(e).get("testFlag")) == "1" and _failed_call(e) for e in orders):
        return Consequence(
            check_id,
            Rule.DIAL_TEST,
            "the test order fails, which is what a dial test places (ASSUMPTION U14): each day a "
            f"dial test fails counts toward the {FREEZE_AFTER_FAILING_DAYS} in a row that freeze and "
            "hide the product",
        )
    if orders and protocol == "v1":
        return Consequence(
            check_id,
            Rule.V1_ORDERS,
            "a failed order: the marketplace resends newInstance 60 times every 3 minutes, then "
            f"cancels the order automatically; more than {V1_FAILED_ORDER_LIMIT} such orders a month "
            "remove a V1 product",
        )
    if orders:
        return Consequence(
            check_id,
            Rule.FREQUENT_FAILURES,
            "a failed order: the delivery ends as a production-interface message (生产接口消息) until "
            "重新启动; the pages remove a product whose interface fails 'frequently' (no number)",
        )
    if failed:
        activities = sorted({str(e.get("activity")) for e in failed if e.get("activity")})
        what = f"a failed {'/'.join(activities[:3])} call" if activities else "a failed call"
        return Consequence(
            check_id,
            Rule.FREQUENT_FAILURES,
            f"{what} (§3.4): the pages remove a product whose interface fails 'frequently' (no number)",
        )
    if family == "security":
        why = "the marketplace never sends such a call"
    else:
        why = "the marketplace counts these calls as answered (§3.4)"
    return Consequence(
        check_id,
        Rule.NONE,
        f"{why}: no published delisting consequence; the broken rule is still an error of its own",
    )


def _failed_orders(checks: Iterable[Mapping[str, Any]], exchanges: Mapping[str, Mapping[str, Any]]) -> int:
    """How many distinct orders the V1_ORDERS consequences of ``checks`` fail."""
    orders: set[str] = set()
    for check in checks:
        for finding in check.get("findings", []):
            for exchange_id in finding.get("exchanges", []):
                exchange = exchanges.get(exchange_id)
                if exchange is None or exchange.get("activity") not in ORDER_ACTIVITIES:
                    continue
                if not _failed_call(exchange):
                    continue
                orders.add(str(_request_fields(exchange).get("orderId") or exchange_id))
    return len(orders)


def run_verdict(
    checks: Iterable[Mapping[str, Any]],
    exchanges: Iterable[Mapping[str, Any]],
    protocol: str,
    dial_history: Iterable[DialDay] | None = None,
) -> RunVerdict:
    """The verdict of a run from its check and exchange records (engine/record.py shape).

    ``dial_history`` is the target's dial-test days (``koosim watch``, ``serve``): with it the
    dial-test line is the countdown over real dial tests; without it, a run whose test order
    fails counts as one failing dial-test day (what today's dial tests would meet).
    """
    by_id = {str(exchange.get("id")): exchange for exchange in exchanges}
    failed = [check for check in checks if check.get("verdict") == "failed"]
    consequences = tuple(consequence_of(check, by_id, protocol) for check in failed)
    verdicts: list[DelistingVerdict] = []
    history = list(dial_history) if dial_history is not None else None
    if history:
        verdicts.append(dial_test_verdict(history))
    elif any(consequence.rule is Rule.DIAL_TEST for consequence in consequences):
        one_day = dial_test_verdict([DialDay(date.min, (False,))])
        verdicts.append(
            DelistingVerdict(
                Rule.DIAL_TEST,
                "the test order a dial test places fails here (U14): if today's dial tests meet it, "
                f"{one_day.remaining} more failing days and the product is frozen and hidden",
                one_day.rule_ref,
                reached=False,
                remaining=one_day.remaining,
            )
        )
    order_checks = [c for c, q in zip(failed, consequences, strict=True) if q.rule is Rule.V1_ORDERS]
    if order_checks:
        verdicts.append(v1_orders_verdict(_failed_orders(order_checks, by_id), scope="in this run"))
    frequent = [c for c, q in zip(failed, consequences, strict=True) if q.rule is Rule.FREQUENT_FAILURES]
    if frequent:
        calls = {
            exchange_id
            for check in frequent
            for finding in check.get("findings", [])
            for exchange_id in finding.get("exchanges", [])
            if exchange_id in by_id
            and (
                str(check.get("id", "")).split(".", 1)[0] in ANSWER_FAMILIES
                or _failed_call(by_id[exchange_id])
            )
        }
        verdicts.append(frequent_failures_verdict(len(calls) or len(frequent)))
    return RunVerdict(tuple(verdicts), consequences)


def record_verdict(record: Mapping[str, Any]) -> RunVerdict:
    """A record's verdict: the one it carries, or — a record written before verdicts existed
    (``delisting_risk``) — recomputed from its checks and exchanges."""
    stored = RunVerdict.from_dict(record.get("delisting"))
    if stored is not None:
        return stored
    protocol = str((record.get("target") or {}).get("protocol") or "v2")
    return run_verdict(record.get("checks", []), record.get("exchanges", []), protocol)
