"""Play a :class:`~simulator.engine.scenario.Scenario` against a merchant and judge every expectation.

A :class:`Player` turns each step into the call(s) the marketplace sends: it fills in the
defaults for the activity (from the order or instance the step is ``of``), resolves ``${…}``
references, sends the copies (one after the other, or at the same moment) and judges each copy
against the step's ``expect``. Each failed expectation is reported under the id of the catalog
check that enforces the same rule, so ``koosim play`` and ``koosim verify`` speak the same ids.

The player keeps the lifecycle the marketplace expects (:class:`~simulator.model.Lifecycle`) to
name those checks: an UNFREEZE refused on a live instance breaks ``lifecycle.full``, one
accepted on a released instance breaks ``lifecycle.after-release``. :mod:`simulator.engine.explore`
drives the same player one step at a time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.checks import REGISTRY, Check, Finding, Severity, Verdict, judge_exchange
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
from simulator.engine.run import CheckResult
from simulator.engine.scenario import Scenario, Step, Unresolved, dig, resolve
from simulator.model import (
    InstanceState,
    Lifecycle,
    Order,
    OrderFactory,
    change_check_fields,
    query_fields,
    release_fields,
    status_fields,
)
from simulator.protocol import ResultCode, encrypt_client_secret
from simulator.protocol.vocabulary import (
    ADD,
    DELETE,
    INSTANCE_CHANGES,
    LICENSE_CHANGES,
    ORDERING_ACTIVITIES,
    is_license,
)
from simulator.redaction import printable, redact
from simulator.transport import Exchange, Target, Transport, send_at_once

APP_ID = "app-koosim-001"
DEFAULT_USERS = ({"userName": "alice", "name": "Alice", "role": "admin"},)
CLIENT_SECRET = "koosim-client-secret"


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
class StepOutcome:
    step: Step
    prepared: Prepared | None
    exchanges: list[Exchange] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    blocked: str | None = None
    """Why the step was not sent: a value it needs did not come from an earlier step."""

    @property
    def failures(self) -> list[Judgement]:
        return [j for j in self.judgements if not j.passed]

    @property
    def failed(self) -> bool:
        return self.blocked is not None or bool(self.failures)


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    target: Target
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(step.failed for step in self.steps)

    @property
    def failed_checks(self) -> list[str]:
        """The check ids of every failed expectation, in order, each once."""
        ids = [j.check_id for step in self.steps for j in step.failures if j.check_id]
        return list(dict.fromkeys(ids))


@dataclass
class _Record:
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


def requirements(scenario: Scenario, target: Target) -> list[str]:
    """Why the scenario cannot be played against ``target`` at all (missing keys, wrong protocol)."""
    problems = []
    for number, step in enumerate(scenario.steps, start=1):
        where = f"{scenario.source}: step {step.id!r} (#{number})"
        if step.is_sync and not target.sync_key:
            problems.append(f"{where}: a user-sync call needs the sync key (KOOSIM_SYNC_KEY)")
        if (
            step.call == "applicationSync"
            and step.resend is None
            and "clientSecret" not in step.fields
            and not target.rsa_public_key
        ):
            problems.append(
                f"{where}: applicationSync encrypts a clientSecret with the merchant's RSA public key; "
                "set KOOSIM_RSA_PUBLIC_KEY or give fields.clientSecret"
            )
        if is_license(step.activity) and target.protocol != "v2":
            problems.append(f"{where}: {step.activity} is a v2 call, the target speaks {target.protocol}")
        if step.expect.body_sign and target.protocol != "v1":
            problems.append(f"{where}: body_sign is a v1 expectation, the target speaks {target.protocol}")
    return problems


class Player:
    """Plays one scenario's steps against one target, keeping what each step left."""

    def __init__(
        self,
        scenario: Scenario,
        target: Target,
        *,
        seed: int | str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.scenario = scenario
        self.target = target
        self.orders = OrderFactory(scenario.seed if seed is None else seed)
        self.lifecycle = Lifecycle()
        self._owns_transport = transport is None
        self.transport = transport or Transport(target)
        self._records: dict[str, _Record] = {}
        self._deleted_users: set[tuple[str, str, str, str]] = set()

    def close(self) -> None:
        if self._owns_transport:
            self.transport.close()

    # --- playing ---------------------------------------------------------------------------------

    def play(self, on_step: Callable[[StepOutcome], None] | None = None) -> ScenarioOutcome:
        outcome = ScenarioOutcome(self.scenario, self.target)
        for step in self.scenario.steps:
            result = self.play_step(step)
            outcome.steps.append(result)
            if on_step is not None:
                on_step(result)
        return outcome

    def play_step(self, step: Step) -> StepOutcome:
        """Prepare, wait, send and judge one step."""
        if step.activity is None:
            time.sleep(step.wait)
            return StepOutcome(step, None)
        try:
            prepared = self.prepare(step)
        except Unresolved as problem:
            return StepOutcome(step, None, blocked=redact(str(problem), self.target.secrets))
        if step.wait:
            time.sleep(step.wait)
        return self.perform(prepared)

    def prepare(self, step: Step) -> Prepared:
        """The calls ``step`` will send; raises :class:`Unresolved` when an earlier value is missing."""
        prepared = self._prepare_resend(step) if step.resend is not None else self._prepare_call(step)
        if step.activity in INSTANCE_CHANGES:
            instance_id = prepared.fields.get("instanceId")
            prepared.state_before = (
                self.lifecycle.states.get(instance_id) if isinstance(instance_id, str) else None
            )
        if step.call == "authSync" and prepared.fields.get("flag") == ADD:
            prepared.readds_deleted_user = any(
                key in self._deleted_users for key in _user_keys(prepared.fields)
            )
        return prepared

    def perform(self, prepared: Prepared) -> StepOutcome:
        """Send a prepared step and judge what came back."""
        exchanges = self._send_all(prepared)
        outcome = StepOutcome(prepared.step, prepared, exchanges)
        secrets = self.target.secrets  # after the calls: what they decrypted is among them
        outcome.judgements = [  # a message quotes the merchant, who may echo a secret or send escapes
            dataclasses.replace(judgement, message=printable(redact(judgement.message, secrets)))
            for judgement in self._judge(prepared, exchanges)
        ]
        self._remember(prepared, exchanges)
        return outcome

    def instance_id(self, step_id: str) -> str | None:
        """The instance an earlier step created or named, if it has one."""
        record = self._records.get(step_id)
        return record.instance_ids[0] if record is not None and record.instance_ids else None

    def state_of(self, step_id: str) -> InstanceState | None:
        """The lifecycle state the marketplace expects the instance of ``step_id`` to be in."""
        instance_id = self.instance_id(step_id)
        return self.lifecycle.states.get(instance_id) if instance_id is not None else None

    # --- building the calls ----------------------------------------------------------------------

    def _lookup(self, step_id: str, path: tuple[str, ...]) -> Any:
        record = self._records.get(step_id)
        reference = "${" + ".".join((step_id, *path)) + "}"
        if record is None:
            raise Unresolved(f"{reference}: step {step_id!r} was not played")
        sources: tuple[str, ...] = ("response", "request")
        if path and path[0] in sources:
            sources, path = (path[0],), path[1:]
        for source in sources:
            try:
                return dig(record.answer if source == "response" else record.fields, path)
            except KeyError:
                continue
        got = describe(record.primary) if record.primary is not None else "nothing"
        raise Unresolved(f"{reference}: step {step_id!r} has no such value (it got {got})")

    def _subject(self, step_id: str) -> _Record:
        record = self._records.get(step_id)
        if record is None:
            raise Unresolved(f"step {step_id!r} was not played, so there is nothing to refer to")
        return record

    def _instance_of(self, step_id: str) -> str:
        record = self._subject(step_id)
        if not record.instance_ids:
            got = describe(record.primary) if record.primary is not None else "nothing"
            raise Unresolved(f"step {step_id!r} has no instanceId to refer to (it got {got})")
        return record.instance_ids[0]

    def _prepare_resend(self, step: Step) -> Prepared:
        original = self._subject(step.resend or "")
        base = dict(original.fields) | resolve(step.fields, self._lookup)
        copies = [self._fresh_business_id(base) for _ in range(step.copies)]
        return Prepared(step, copies, original.order, original.instance_ids, original.license)

    def _fresh_business_id(self, fields: dict[str, Any]) -> dict[str, Any]:
        return fields | {"businessId": self.orders.business_id()} if "businessId" in fields else dict(fields)

    def _prepare_call(self, step: Step) -> Prepared:
        extra = resolve(step.fields, self._lookup)
        activity = step.activity or ""
        if activity in ORDERING_ACTIVITIES:
            placed = self.orders.order()
            if step.id_length is not None:
                order_id = placed.order_id.ljust(step.id_length, "0")
                line_id = f"{order_id[: step.id_length - 7]}-000001"
                placed = dataclasses.replace(placed, order_id=order_id, order_line_id=line_id)
            build = placed.new_instance_fields if activity == "newInstance" else placed.license_fields
            copies = [build(self.orders.business_id()) | extra for _ in range(step.copies)]
            return Prepared(step, copies, placed)
        order: Order | None = None
        instance_ids: tuple[str, ...] = ()
        license_code: str | None = None
        if step.of:
            first = self._subject(step.of[0])
            order, license_code = first.order, first.license
            if activity not in LICENSE_CHANGES:
                instance_ids = tuple(self._instance_of(step_id) for step_id in step.of)
            elif license_code is None:
                raise Unresolved(f"step {step.of[0]!r} has no license code to refer to")
        defaults = self._defaults(step, order, instance_ids, license_code, extra) if step.of else {}
        if not step.is_sync:
            defaults["activity"] = activity
        fields = defaults | extra
        return Prepared(step, [dict(fields) for _ in range(step.copies)], order, instance_ids, license_code)

    def _defaults(
        self,
        step: Step,
        order: Order | None,
        instance_ids: tuple[str, ...],
        license_code: str | None,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """The members koosim fills in for a call ``of`` an earlier step; ``fields`` override them."""
        activity = step.activity or ""
        instance_id = instance_ids[0] if instance_ids else ""
        if activity in LICENSE_CHANGES:
            line = {"orderId": order.order_id, "orderLineId": order.order_line_id} if order else {}
            fields = {"activity": activity, **line, "license": license_code}
            if activity == "refreshLicense":
                fields["expireTime"] = self.orders.expire_time(days=365)
            return fields
        if step.is_sync:
            return self._sync_defaults(step.call, instance_id, order)
        if activity == "queryInstance":
            return query_fields(*instance_ids)
        if activity == "updateInstanceStatus":
            return status_fields(instance_id, str(extra.get("status", "")))
        if activity == "releaseInstance":
            return release_fields(instance_id)
        if order is None:  # an instance the scenario did not create: only what the step gives
            return {"instanceId": instance_id}
        if activity == "refreshInstance":
            scene = str(extra.get("scene", "RENEWAL"))
            expire_time = {
                "TRIAL_TO_FORMAL": self.orders.expire_time(days=365),
                "UNSUBSCRIBE_RENEWAL_PERIOD": order.expire_time,
            }.get(scene, self.orders.expire_time(days=60))
            return order.refresh_fields(instance_id, expire_time, scene)
        if activity == "upgrade":  # the upgrade's order line: the first one's, numbered 000002
            return order.upgrade_fields(instance_id) | {"orderLineId": order.order_line_id[:-6] + "000002"}
        return change_check_fields(instance_id, order.product_id, "sku-pro-0002")

    def _sync_defaults(self, call: str, instance_id: str, order: Order | None) -> dict[str, Any]:
        scope = {"instanceId": instance_id, "tenantId": f"tenant-{instance_id[-12:]}"}
        if call == "tenantSync":
            order_id = order.order_id if order else "CS-koosim-sync"
            return scope | {
                "orderId": order_id,
                "tenantCode": "acme",
                "name": "Acme 有限公司",
                "domainName": "acme",
                "flag": ADD,
            }
        if call == "applicationSync":
            fields = scope | {"appId": APP_ID, "name": "koosim app", "clientId": "client-001", "flag": ADD}
            if self.target.rsa_public_key:
                fields["clientSecret"] = encrypt_client_secret(CLIENT_SECRET, self.target.rsa_public_key)
            return fields
        if call == "authSync":
            return scope | {"appId": APP_ID, "userList": [dict(user) for user in DEFAULT_USERS], "flag": ADD}
        if call == "singleOrgSync":
            return scope | {"orgCode": "org-001", "name": "研发部", "parentCode": "", "flag": ADD}
        return scope | {
            "orgList": [
                {"orgCode": "org-001", "name": "研发部", "parentCode": ""},
                {"orgCode": "org-002", "name": "测试组", "parentCode": "org-001"},
            ]
        }

    # --- sending ---------------------------------------------------------------------------------

    def _send_all(self, prepared: Prepared) -> list[Exchange]:
        step = prepared.step
        total = len(prepared.copies)

        def label(index: int) -> str:
            return step.id if total == 1 else f"{step.id} (copy {index + 1}/{total})"

        if step.concurrent <= 1:
            return [
                self._send(self.transport, step, fields, label(index), index + 1)
                for index, fields in enumerate(prepared.copies)
            ]

        def copy(index: int) -> Callable[[Transport], Exchange]:
            fields = prepared.copies[index]
            return lambda transport: self._send(transport, step, fields, label(index), index + 1)

        return send_at_once(self.target, [copy(index) for index in range(total)])

    def _send(
        self, transport: Transport, step: Step, fields: dict[str, Any], label: str, attempt: int
    ) -> Exchange:
        if step.is_sync:
            return transport.sync(step.call, fields, label=label, attempt=attempt)
        return transport.send(fields, label=label, attempt=attempt)

    # --- judging ---------------------------------------------------------------------------------

    def _judge(self, prepared: Prepared, exchanges: list[Exchange]) -> list[Judgement]:
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
        return exchange.answer_field("license" if prepared.step.activity == "getLicense" else "instanceId")

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
        what = "license code" if prepared.step.activity == "getLicense" else "instanceId"
        expectation = f"same_instance_as {other}"
        check_id = self._same_check(prepared)
        record = self._records.get(other)
        expected = None
        if record is not None:
            expected = record.license if prepared.step.activity == "getLicense" else None
            expected = expected or (record.instance_ids[0] if record.instance_ids else None)
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
        check_id = prepared.step.check or listing_rule(wanted and several).id
        ids = {}
        for step_id in named:
            record = self._records.get(step_id)
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

    # --- remembering -------------------------------------------------------------------------------

    def _remember(self, prepared: Prepared, exchanges: list[Exchange]) -> None:
        step = prepared.step
        record = _Record(
            step, prepared.fields, exchanges, prepared.order, prepared.instance_ids, prepared.license
        )
        answered = record.answer
        if step.activity == "newInstance" and isinstance(answered.get("instanceId"), str):
            record.instance_ids = (answered["instanceId"],)
        if step.activity == "getLicense" and isinstance(answered.get("license"), str):
            record.license = answered["license"]
        self._records[step.id] = record
        for exchange in exchanges:
            if exchange.result_code != ResultCode.SUCCESS:
                continue
            if step.activity == "newInstance" and record.instance_ids:
                self.lifecycle.created(record.instance_ids[0])
            elif step.activity in INSTANCE_CHANGES:
                self._advance(prepared.fields)
            elif step.call == "authSync":
                keys = _user_keys(prepared.fields)
                if prepared.fields.get("flag") == DELETE:
                    self._deleted_users.update(keys)
                else:
                    self._deleted_users.difference_update(keys)

    def _advance(self, fields: dict[str, Any]) -> None:
        """Move the expected lifecycle on for a call the merchant accepted, when the rules allow it."""
        try:
            if self.lifecycle.expected_code(fields) == ResultCode.SUCCESS:
                self.lifecycle.apply(fields)
        except KeyError:  # a status the lifecycle does not know: nothing to move
            pass


def _code_text(code: str) -> str:
    try:
        return f"{code} ({ResultCode(code).meaning})"
    except ValueError:
        return code


def _user_keys(fields: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    users = fields.get("userList")
    if not isinstance(users, list):
        return set()
    scope = tuple(str(fields.get(name, "")) for name in ("instanceId", "tenantId", "appId"))
    return {(*scope, str(user.get("userName"))) for user in users if isinstance(user, dict)}  # type: ignore[misc]


# --- a played step as a check result, for the run history -------------------------------------


def step_result(outcome: StepOutcome) -> CheckResult:
    """A played step as the history stores a check: one finding per failed expectation, each
    naming the catalog check it breaks; the step's severity and verdict are those ``koosim
    verify`` gives the worst of those checks (a step that breaks only practice rules warns)."""
    findings = [
        Finding(f"{judgement.check_id or judgement.expectation}: {judgement.message}", _evidence(judgement))
        for judgement in outcome.failures
    ]
    if outcome.blocked:
        findings.append(Finding(f"not sent: {outcome.blocked}"))
    step = outcome.step
    expected = ", ".join(judgement.expectation for judgement in outcome.judgements) or "nothing"
    severity = step_severity(outcome)
    check = Check(
        id=f"step {step.id}",
        title=f"{step.activity or 'pause'}: expected {expected}",
        severity=severity,
        rule="scenario",
        doc="A step of a scenario; each failed expectation names the catalog check it breaks.",
    )
    verdict = Verdict.PASSED
    if findings:
        verdict = Verdict.FAILED if severity is Severity.ERROR else Verdict.WARNED
    duration = sum(exchange.elapsed for exchange in outcome.exchanges)
    return CheckResult(check, verdict, findings, list(outcome.exchanges), duration)


def step_severity(outcome: StepOutcome) -> Severity:
    """ERROR unless every failure of the step breaks a catalog check of severity WARNING."""
    if outcome.blocked or not outcome.failures:
        return Severity.ERROR
    checks = [REGISTRY.get(judgement.check_id or "") for judgement in outcome.failures]
    if all(check is not None and check.severity is Severity.WARNING for check in checks):
        return Severity.WARNING
    return Severity.ERROR


def _evidence(judgement: Judgement) -> list[Exchange]:
    return [] if judgement.exchange is None else [judgement.exchange]
