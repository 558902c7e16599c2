"""Play a :class:`~simulator.engine.scenario.Scenario` against a merchant and judge every expectation.

A :class:`Player` turns each step into the call(s) the marketplace sends: it fills in the
defaults for the activity (from the order or instance the step is ``of``), resolves ``${…}``
references, sends the copies (one after the other, or at the same moment) and judges each copy
against the step's ``expect`` (:mod:`simulator.engine.expectations`). Each failed expectation is
reported under the id of the catalog check that enforces the same rule, so ``koosim play`` and
``koosim verify`` speak the same ids.

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

from simulator.checks import REGISTRY, Check, Finding, Severity, Verdict
from simulator.checks.base import describe
from simulator.clock import FrozenClock
from simulator.engine.expectations import Expectations, Judgement, Prepared, Record
from simulator.engine.run import CheckResult
from simulator.engine.scenario import Scenario, Step, Unresolved, dig, resolve
from simulator.model import (
    TENANT_DOMAIN,
    InstanceState,
    Lifecycle,
    Order,
    OrderFactory,
    announce,
    change_check_fields,
    expire_fields,
    instance_status_fields,
    kit_user,
    org_info,
    query_fields,
    release_call,
    release_fields,
    single_org_fields,
    status_fields,
)
from simulator.protocol import ResultCode, encrypt_client_secret
from simulator.protocol.vocabulary import (
    ADD,
    DELETE,
    INSTANCE_CHANGES,
    LICENSE_CHANGES,
    ORDERING_ACTIVITIES,
)
from simulator.redaction import printable, redact
from simulator.transport import Exchange, Target, Transport, send_at_once

APP_ID = "app-koosim-001"
DEFAULT_USERS = (kit_user("alice", "Alice", role="admin"),)
CLIENT_SECRET = "koosim-client-secret"


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
        """Whether a step broke a rule of error severity (a warning never fails a run, §0)."""
        return any(step.failed and step_severity(step) is Severity.ERROR for step in self.steps)

    @property
    def warned(self) -> bool:
        """Whether some step broke only warning-severity rules (ASSUMPTIONs)."""
        return any(step.failed and step_severity(step) is Severity.WARNING for step in self.steps)

    @property
    def failed_checks(self) -> list[str]:
        """The check ids of every failed expectation, in order, each once."""
        ids = [j.check_id for step in self.steps for j in step.failures if j.check_id]
        return list(dict.fromkeys(ids))


def not_applicable(scenario: Scenario, target: Target) -> str | None:
    """Why the scenario does not apply to the target's product profile (docs/protocol.md §1.2):
    it needs an interface the product does not have. None: play it. Decided before any call."""
    return target.profile.skip_reason(scenario.needs, target.protocol)


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
        self._records: dict[str, Record] = {}
        self.expectations = Expectations(target, self._records, self.lifecycle)
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
            self.advance(step)
            return StepOutcome(step, None)
        try:
            prepared = self.prepare(step)
        except Unresolved as problem:
            return StepOutcome(step, None, blocked=redact(str(problem), self.target.secrets))
        if step.wait:
            time.sleep(step.wait)
        self.advance(step)
        return self.perform(prepared)

    def advance(self, step: Step) -> None:
        """Let ``step.advance`` of marketplace time pass on the run's clock (the target's): a
        frozen clock jumps at once, a scaled one waits the scaled time (1h: 1 s at ×3600)."""
        if step.advance is None:
            return
        clock = self.target.clock
        if isinstance(clock, FrozenClock):
            clock.advance(step.advance)
        else:
            clock.sleep(step.advance)

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
            for judgement in self.expectations.judge(prepared, exchanges)
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

    def _subject(self, step_id: str) -> Record:
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
                announce(placed)  # the open API answers Querying an Order for the order sent
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
            fields = (
                order.license_change_fields(activity, license_code or "")
                if order
                else {"activity": activity, "license": license_code}
            )
            if activity == "refreshLicense":
                fields["expireTime"] = self.orders.expire_time(days=365)
            return fields
        if step.is_sync:
            return self._sync_defaults(step.call, instance_id, order)
        if activity == "queryInstance":
            return query_fields(*instance_ids)
        if activity == "updateInstanceStatus":
            return status_fields(instance_id, str(extra.get("status", "")))
        if activity == "instanceStatus":  # V1, pay-per-use (§5.6)
            return instance_status_fields(instance_id, str(extra.get("instanceStatus", "FREEZE")))
        if activity == "releaseInstance":  # V1 names the subscription order, mandatory (§5.5)
            if order is not None:
                return release_call(self.target.protocol, instance_id, order.order_id)
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
        if activity == "upgradeInstance":
            return order.upgrade_fields(instance_id)
        if activity == "expireInstance":  # V1: the subscription order (§5.4)
            return expire_fields(instance_id, order.order_id)
        return change_check_fields(instance_id, order.product_id, "sku-pro-0002")

    def _sync_defaults(self, call: str, instance_id: str, order: Order | None) -> dict[str, Any]:
        scope = {"instanceId": instance_id, "tenantId": f"tenant-{instance_id[-12:]}"}
        if call == "tenantSync":
            order_id = order.order_id if order else "CS-koosim-sync"
            return scope | {
                "orderId": order_id,
                "tenantCode": "acme",
                "name": "Acme 有限公司",
                "domainName": TENANT_DOMAIN,
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
            return single_org_fields(scope, ADD)
        return scope | {"orgInfo": org_info()}

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

    # --- remembering -------------------------------------------------------------------------------

    def _remember(self, prepared: Prepared, exchanges: list[Exchange]) -> None:
        step = prepared.step
        record = Record(
            step, prepared.fields, exchanges, prepared.order, prepared.instance_ids, prepared.license
        )
        answered = record.answer
        if step.activity == "newInstance" and isinstance(answered.get("instanceId"), str):
            record.instance_ids = (answered["instanceId"],)
        if step.activity in ("getLicense", "getLicenseAsync") and isinstance(answered.get("license"), str):
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
