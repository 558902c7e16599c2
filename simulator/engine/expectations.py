"""What a played step is judged by: each expectation of a scenario step (``resultCode``, ``schema``,
``same_instance_as``, ``appinfo_decrypts``, ``body_sign``, ``listed``) against the answers its
copies got, through the catalog's own rule functions, and under the id of the catalog check that
enforces the same rule (:mod:`simulator.checks.answers`), so ``koosim play`` and ``koosim verify``
speak the same ids with the same severities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator.checks import REGISTRY, Check, judge_exchange
from simulator.checks.answers import (
    APPINFO_RULE,
    BODY_SIGN_RULE,
    Situation,
    appinfo_problems,
    body_sign_problem,
    listing_rule,
    resend_rule,
    rule_for,
)
from simulator.checks.base import describe
from simulator.checks.idempotency import answered_ids, succeeded_without
from simulator.engine.scenario import Step
from simulator.model import InstanceState, Lifecycle, Order
from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import LICENSE_ASYNC, ORDERING_ACTIVITIES
from simulator.transport import Exchange, Target

LICENSE_ISSUERS = frozenset({"getLicense", LICENSE_ASYNC})
"""The calls whose answer names a licence (§6.1, §6.2): a resend must get the same one."""


@dataclass(frozen=True)
class Judgement:
    """The verdict on one expectation of a step, over all its copies."""

    expectation: str
    """What was expected, as a person reads it: ``resultCode 000000``, ``same_instance_as new``."""
    passed: bool
    check_id: str | None = None
    """The catalog check a failure corresponds to."""
    message: str = ""
    exchange: Exchange | None = None
    """The copy that failed first."""


@dataclass
class Prepared:
    """A step turned into the calls it will send, before anything is sent."""

    step: Step
    copies: list[dict[str, Any]]
    order: Order | None = None
    instance_ids: tuple[str, ...] = ()
    """The instance(s) the call is about (for newInstance: filled in from the answer)."""
    license: str | None = None
    state_before: InstanceState | None = None
    readds_deleted_user: bool = False

    @property
    def fields(self) -> dict[str, Any]:
        return self.copies[0]


@dataclass
class Record:
    """What a played step left for the steps after it."""

    step: Step
    fields: dict[str, Any]
    exchanges: list[Exchange]
    order: Order | None
    instance_ids: tuple[str, ...]
    license: str | None

    @property
    def primary(self) -> Exchange | None:
        """The copy whose answer later steps read: the first that succeeded, else the first."""
        candidates = [e for e in self.exchanges if e.result_code == ResultCode.SUCCESS] or self.exchanges
        return candidates[0] if candidates else None

    @property
    def answer(self) -> dict[str, Any]:
        body = self.primary.response_json if self.primary is not None else None
        return body if isinstance(body, dict) else {}


class Expectations:
    """Judges the steps of one player: what earlier steps left (``records``) and the lifecycle the
    marketplace expects are the player's own, shared, not copies."""

    def __init__(self, target: Target, records: Mapping[str, Record], lifecycle: Lifecycle) -> None:
        self.target = target
        self.records = records
        self.lifecycle = lifecycle

    def judge(self, prepared: Prepared, exchanges: list[Exchange]) -> list[Judgement]:
        """Every expectation of ``prepared``'s step, judged over the answers of all its copies."""
        step, expect = prepared.step, prepared.step.expect
        judgements: list[Judgement] = []
        if expect.schema:  # first: an answer that is no answer at all is the failure to report
            judgements += self._judge_schema(step, exchanges)
        if expect.result_code is not None:
            judgements += self._judge_result_code(prepared, exchanges, expect.result_code)
        if step.activity in ORDERING_ACTIVITIES and len(exchanges) > 1:
            judgements.append(self._judge_copies_agree(prepared, exchanges))
        if expect.same_instance_as is not None:
            judgements.append(self._judge_same_instance(prepared, exchanges, expect.same_instance_as))
        if expect.appinfo_decrypts:
            judgements.append(self._judge_appinfo(prepared, exchanges))
        if expect.body_sign:
            judgements.append(self._judge_body_sign(prepared, exchanges))
        for key, wanted in (("listed", True), ("not_listed", False)):
            named = getattr(expect, key)
            if named:
                judgements.append(self._judge_listing(prepared, exchanges, key, named, wanted))
        return judgements

    def _copy(self, exchanges: list[Exchange], index: int) -> str:
        return f"copy {index + 1}/{len(exchanges)}: " if len(exchanges) > 1 else ""

    def _judge_result_code(self, prepared: Prepared, exchanges: list[Exchange], code: str) -> list[Judgement]:
        expectation = f"resultCode {code}"
        failed: dict[str, Judgement] = {}
        for index, exchange in enumerate(exchanges):
            if exchange.result_code == code:
                continue
            check_id = self.result_code_rule(prepared, index).id
            if check_id not in failed:
                unknown = ""
                if exchange.result_code == ResultCode.INSTANCE_NOT_FOUND and prepared.instance_ids:
                    unknown = f" for instanceId {', '.join(repr(i) for i in prepared.instance_ids)}"
                failed[check_id] = Judgement(
                    expectation,
                    False,
                    check_id,
                    f"{self._copy(exchanges, index)}expected {_code_text(code)}, "
                    f"got {describe(exchange)}{unknown}",
                    exchange,
                )
        return list(failed.values()) or [Judgement(expectation, True)]

    def _judge_schema(self, step: Step, exchanges: list[Exchange]) -> list[Judgement]:
        failed: dict[str, Judgement] = {}
        for index, exchange in enumerate(exchanges):
            for breach in judge_exchange(exchange, self.target):
                check_id = step.check or breach.check_id
                if check_id not in failed:
                    message = f"{self._copy(exchanges, index)}{breach.message}"
                    failed[check_id] = Judgement("schema", False, check_id, message, exchange)
        return list(failed.values()) or [Judgement("schema", True)]

    def _answered_id(self, prepared: Prepared, exchange: Exchange) -> Any:
        return exchange.answer_field("license" if prepared.step.activity in LICENSE_ISSUERS else "instanceId")

    def _same_check(self, prepared: Prepared) -> str:
        step = prepared.step
        return step.check or resend_rule(step.activity or "", step.concurrent > 1).id

    def _judge_copies_agree(self, prepared: Prepared, exchanges: list[Exchange]) -> Judgement:
        what = "license code" if prepared.step.activity == "getLicense" else "instanceId"
        expectation = f"all {len(exchanges)} copies get one {what}"
        member = "license" if prepared.step.activity == "getLicense" else "instanceId"
        missing = succeeded_without(exchanges, member)
        if missing:  # a success that names nothing never counts as "one instance"
            index = missing[0]
            message = f"{self._copy(exchanges, index)}answered {ResultCode.SUCCESS.value} without a {what}"
            return Judgement(expectation, False, self._same_check(prepared), message, exchanges[index])
        distinct = answered_ids(exchanges, member)
        if len(distinct) <= 1:
            return Judgement(expectation, True)
        message = f"the same orderId + orderLineId got {len(distinct)} different {what}s: " + ", ".join(
            distinct[:4]
        )
        return Judgement(expectation, False, self._same_check(prepared), message, exchanges[0])

    def _judge_same_instance(self, prepared: Prepared, exchanges: list[Exchange], other: str) -> Judgement:
        what = "license code" if prepared.step.activity in LICENSE_ISSUERS else "instanceId"
        expectation = f"same_instance_as {other}"
        check_id = self._same_check(prepared)
        record = self.records.get(other)
        expected = None
        if record is not None:
            expected = record.license if prepared.step.activity in LICENSE_ISSUERS else None
            expected = expected or (record.instance_ids[0] if record.instance_ids else None)
        if prepared.step.activity == "getLicenseAsync":
            # the answer table is not read (U47): only two licences named and different are judged
            named = [self._answered_id(prepared, e) for e in exchanges]
            if expected is None or not all(isinstance(got, str) and got for got in named):
                return Judgement(expectation, True)
        if expected is None:
            return Judgement(expectation, False, check_id, f"step {other!r} got no {what} to compare with")
        for index, exchange in enumerate(exchanges):
            got = self._answered_id(prepared, exchange)
            if got != expected:
                shown = repr(got) if got is not None else describe(exchange)
                message = f"{self._copy(exchanges, index)}{what} {shown}, but step {other!r} got {expected!r}"
                return Judgement(expectation, False, check_id, message, exchange)
        return Judgement(expectation, True)

    def _judge_appinfo(self, prepared: Prepared, exchanges: list[Exchange]) -> Judgement:
        check_id = prepared.step.check or APPINFO_RULE.id
        for index, exchange in enumerate(exchanges):
            problems = appinfo_problems(exchange, self.target.access_key)
            if problems:
                message = f"{self._copy(exchanges, index)}{problems[0]}"
                return Judgement("appinfo_decrypts", False, check_id, message, exchange)
        return Judgement("appinfo_decrypts", True)

    def _judge_body_sign(self, prepared: Prepared, exchanges: list[Exchange]) -> Judgement:
        check_id = prepared.step.check or BODY_SIGN_RULE.id
        for index, exchange in enumerate(exchanges):
            problem = body_sign_problem(exchange, self.target.access_key)
            if problem is not None:
                return Judgement(
                    "body_sign", False, check_id, f"{self._copy(exchanges, index)}{problem}", exchange
                )
        return Judgement("body_sign", True)

    def _judge_listing(
        self, prepared: Prepared, exchanges: list[Exchange], key: str, named: tuple[str, ...], wanted: bool
    ) -> Judgement:
        expectation = f"{key} {', '.join(named)}"
        several = len(str(prepared.fields.get("instanceId", "")).split(",")) > 1
        check_id = prepared.step.check or listing_rule(several, wanted).id
        ids = {}
        for step_id in named:
            record = self.records.get(step_id)
            if record is None or not record.instance_ids:
                return Judgement(
                    expectation, False, check_id, f"step {step_id!r} got no instanceId to look for"
                )
            ids[step_id] = record.instance_ids[0]
        for index, exchange in enumerate(exchanges):
            info = exchange.answer_field("info")
            if exchange.result_code != ResultCode.SUCCESS or not isinstance(info, list):
                message = f"{self._copy(exchanges, index)}no info list to look in: {describe(exchange)}"
                return Judgement(expectation, False, check_id, message, exchange)
            listed = {item.get("instanceId") for item in info if isinstance(item, dict)}
            wrong = [step_id for step_id, iid in ids.items() if (iid in listed) != wanted]
            if wrong:
                verb = "leaves out" if wanted else "still lists"
                what = ", ".join(f"{ids[s]} (step {s})" for s in wrong)
                released = (
                    " although it was released"
                    if not wanted
                    and any(self.lifecycle.states.get(ids[s]) is InstanceState.RELEASED for s in wrong)
                    else ""
                )
                message = f"{self._copy(exchanges, index)}queryInstance {verb} {what}{released}"
                return Judgement(expectation, False, check_id, message, exchange)
        return Judgement(expectation, True)

    def result_code_rule(self, prepared: Prepared, copy: int = 0) -> Check:
        """The catalog check a wrong resultCode on copy ``copy`` of this step breaks."""
        step = prepared.step
        if step.check:
            return REGISTRY[step.check]
        situation = Situation(
            activity=step.call if step.is_sync else step.activity or "",
            sync=step.is_sync,
            expected=step.expect.result_code,
            again=step.resend is not None or copy > 0,
            concurrent=step.concurrent > 1,
            fields=prepared.fields,
            state=prepared.state_before,
            readds_deleted_user=prepared.readds_deleted_user,
        )
        return rule_for(situation)


def _code_text(code: str) -> str:
    try:
        return f"{code} ({ResultCode(code).meaning})"
    except ValueError:
        return code
