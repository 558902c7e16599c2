"""Property-based exploration: Hypothesis plays the marketplace in random orders and shrinks failures.

:class:`MarketplaceMachine` is a Hypothesis ``RuleBasedStateMachine``. Its rules are the calls
the marketplace makes (new orders, resends, concurrent resends, renewals in every scene,
freeze, unfreeze, upgrade, release, queries of several instances, licenses, user sync) over
bundles of the orders and licenses created so far, with field values drawn from the contracts:
valid by default, boundary values (long unicode names, 64-character ids, every periodType and
scene) a share of the time.

Every rule is a scenario :class:`~simulator.engine.scenario.Step` whose ``expect`` the machine derives
from what it knows: the resultCode the :class:`~simulator.model.Lifecycle` requires, the same
instanceId for the same order, a contract-valid answer, a query that lists exactly the live
instances. The step is played by the same :class:`~simulator.engine.player.Player` as
``koosim play``, and the invariant after each rule fails on any failed expectation, raising
under the expectation's check id. Hypothesis then shrinks the sequence; the smallest one is
returned as a :class:`~simulator.engine.scenario.Scenario` which, saved and replayed with
``koosim play``, fails with the same check id.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from simulator.checks import REGISTRY, Severity
from simulator.checks.conversation import POLLING, listed_ids, usage_problems
from simulator.contracts import schema_for
from simulator.engine.explore_defaults import DATABASE_DIR, DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_STEPS
from simulator.engine.player import Judgement, Player, StepOutcome
from simulator.engine.scenario import Expect, Scenario, Step
from simulator.model import QUERY_INSTANCE_MAX, InstanceState, kit_user, status_fields
from simulator.openapi import InboundCall, InboundLog
from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import ADD, DELETE, LICENSE_CALLS
from simulator.transport import Target, Transport

SUCCESS = ResultCode.SUCCESS.value
NOT_FOUND = ResultCode.INSTANCE_NOT_FOUND.value
COPIES = st.sampled_from([1, 2])
"""One call, or two copies of it at the same moment."""

Progress = Callable[["Exploration"], None]
USAGE_CHECK = "conversation.usage-push"


def _breaks(judgement: Judgement) -> bool:
    """Whether a failed expectation breaks an error-severity rule: explore hunts for those; a
    rule resting on an ASSUMPTION (a warning, docs/protocol.md §0) never makes a failing sequence."""
    check = REGISTRY.get(judgement.check_id or "")
    return check is None or check.severity is Severity.ERROR


class ExpectationFailed(AssertionError):
    """An expectation of an explored step failed; subclassed per check id (see :func:`failure_type`)."""

    check_id = ""


@cache
def failure_type(check_id: str) -> type[ExpectationFailed]:
    """One exception class per check id, so Hypothesis shrinks each kind of failure on its own."""
    name = "ExpectationFailed_" + "".join(c if c.isalnum() else "_" for c in check_id)
    return type(name, (ExpectationFailed,), {"check_id": check_id})


@dataclass
class Found:
    """The smallest failing sequence Hypothesis found, as a scenario."""

    check_id: str
    message: str
    scenario: Scenario
    reproduced: bool = True
    """False when Hypothesis could not make the failure happen again (a flaky merchant)."""


@dataclass
class Exploration:
    """One ``koosim explore`` run: settings, counters for the progress display, the result."""

    target: Target
    seed: int = 0
    max_examples: int = DEFAULT_MAX_EXAMPLES
    max_steps: int = DEFAULT_MAX_STEPS
    database_dir: Path | None = DATABASE_DIR
    on_progress: Progress | None = None
    hunt_warnings: bool = False
    """Also hunt rules resting on ASSUMPTIONs (warning severity); by default only error rules
    make a failing sequence (docs/protocol.md §0)."""
    salt: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    """Mixed into every sequence's order ids: a merchant that keeps its data never sees one twice."""
    examples: int = 0
    calls: int = 0
    failing_runs: int = 0
    smallest: int | None = None
    first_failure: tuple[int, int] | None = None
    """(sequences tried, calls sent) when the first failure happened."""
    found: Found | None = None
    inbound: InboundLog | None = None
    """The open API's log (``koosim explore`` serves it): the merchant's usage pushes are judged
    after every step (``conversation.usage-push``)."""
    instances: set[str] = field(default_factory=set)
    """Every instanceId the merchant answered in the exploration: usage may name any of them."""
    _transport: Transport | None = None

    @property
    def shrinking(self) -> bool:
        return self.failing_runs > 0

    def next_sequence_seed(self) -> str:
        self.examples += 1
        self._report()
        return f"{self.seed}:{self.salt}:{self.examples}"

    def called(self, calls: int) -> None:
        self.calls += calls
        self._report()

    def failed(self, steps: list[Step], judgement: Judgement) -> None:
        """Record a failing sequence; the last one recorded is the one Hypothesis reports."""
        self.failing_runs += 1
        if self.first_failure is None:
            self.first_failure = (self.examples, self.calls)
        self.smallest = len(steps) if self.smallest is None else min(self.smallest, len(steps))
        check_id = judgement.check_id or "koosim.unresolved"
        scenario = Scenario(
            name=f"found-{check_id.replace('.', '-')}",
            description=f"Found by koosim explore --seed {self.seed}. "
            f"{judgement.expectation}: {judgement.message}",
            protocol=self.target.protocol,
            seed=f"found-{self.seed}-{self.salt}",
            steps=tuple(steps),
        )
        self.found = Found(check_id, judgement.message, scenario)
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)

    def run(self) -> Found | None:
        """Explore; return the smallest failing sequence, or None when every invariant held."""
        self._transport = Transport(self.target)
        exploration = self

        @seed(self.seed)
        def machine() -> MarketplaceMachine:
            return MarketplaceMachine(exploration)

        options: dict[str, Any] = {
            "max_examples": self.max_examples,
            "stateful_step_count": self.max_steps,
            "deadline": None,
            "suppress_health_check": list(HealthCheck),
            "report_multiple_bugs": False,
            "verbosity": Verbosity.quiet,
            "print_blob": False,
            # the explain phase replays variations of the failure only to annotate it
            "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            "database": None
            if self.database_dir is None
            else DirectoryBasedExampleDatabase(str(self.database_dir)),
        }
        try:
            # a factory, as Hypothesis allows, so that the machine gets this exploration
            factory = cast("type[RuleBasedStateMachine]", machine)
            run_state_machine_as_test(factory, settings=settings(**options))
        except ExpectationFailed:
            pass
        except Exception:  # Hypothesis' Flaky*: the failure did not happen again on replay
            if self.found is None:
                raise
            self.found.reproduced = False
        finally:
            self._transport.close()
        return self.found

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "run() opens the transport"
        return self._transport


# --- values drawn from the contracts ------------------------------------------------------------


UNKNOWN_QUERY_ID = "koosim-unknown-0001"
"""An instanceId no merchant created, asked for beside real ones in a queryInstance."""


def nothing_to_explore(target: Target) -> str | None:
    """Why the target's profile leaves explore nothing to draw on this generation (None: it has
    something): no produce interface, no License activity, no Kit with a sync key."""
    profile = target.profile
    if profile.requires("newInstance", target.protocol):
        return None
    if profile.requires("license", target.protocol) and profile.requires(
        profile.license_call, target.protocol
    ):
        return None  # the licence the product declares (--license-call, A41) opens every licence rule
    if profile.requires("kit", target.protocol) and target.sync_key:
        return None
    return f"profile {profile} has no interface explore draws on {target.protocol} (docs/protocol.md §1.2)"


@cache
def _enum(family: str, name: str, member: str) -> list[str]:
    values = schema_for(family, name, "request")["properties"][member]["enum"]
    return [value for value in values if value is not None]


@cache
def _max_length(family: str, name: str, member: str) -> int:
    return schema_for(family, name, "request")["properties"][member]["maxLength"]


def _default_first(values: list[str], default: str) -> list[str]:
    """``values`` with ``default`` first, so that Hypothesis shrinks towards it."""
    return [default, *(value for value in values if value != default)]


def mostly(default: Any, boundary: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``default`` three times in four, a boundary value otherwise; shrinks to ``default``."""
    return st.one_of(st.just(default), st.just(default), st.just(default), boundary)


@cache
def order_shapes() -> list[tuple[dict[str, str], int | None]]:
    """Boundary shapes of a new order, drawn from the contracts: the fields that differ from
    koosim's defaults, and a length to pad orderId and orderLineId to.

    The newInstance body has five fields (docs/protocol.md §4.1, A6); what varies is
    ``testFlag`` (absent, ``0`` and ``1`` all mean something, A14) and the IDs' published
    maximum length. The buyer and the product are Querying an Order's business (§8.1).

    One choice per order rather than one per member: every choice is one more thing for
    Hypothesis to shrink, and each shrinking attempt replays calls against the merchant.
    """
    shapes: list[tuple[dict[str, str], int | None]] = [
        ({"testFlag": flag}, None) for flag in _enum("v2", "newInstance", "testFlag")
    ]
    shapes += [({}, _max_length("v2", "newInstance", "orderLineId"))]
    return shapes


def new_order_fields() -> st.SearchStrategy[tuple[dict[str, str], int | None]]:
    """A new order: koosim's valid defaults two times in three, one boundary shape otherwise."""
    shapes = order_shapes()
    return st.sampled_from([({}, None)] * (2 * len(shapes)) + shapes)


USERS = ["alice", "bob", "名" * 255]
"""Users the sync rules add and delete: two plain names and one of the contract's maximum length."""


class MarketplaceMachine(RuleBasedStateMachine):
    """The marketplace as a state machine: each rule sends one call and states what must come back."""

    orders = Bundle("orders")
    """Step ids of the newInstance steps the merchant accepted."""
    licenses = Bundle("licenses")
    """Step ids of the getLicense steps the merchant accepted."""
    async_licenses = Bundle("async_licenses")
    """Step ids of the getLicenseAsync steps the merchant answered (§6.2)."""

    def __init__(self, exploration: Exploration) -> None:
        super().__init__()
        self.exploration = exploration
        target = exploration.target
        sequence = Scenario(name="explore", steps=(), protocol=target.protocol)
        self.player = Player(
            sequence, target, seed=exploration.next_sequence_seed(), transport=exploration.transport
        )
        self.steps: list[Step] = []
        self.failure: Judgement | None = None
        self.license_states: dict[str, str] = {}
        self.reported: set[str] = set()
        """The orders whose instance queryInstance has listed: provisioning is over (§10.2)."""
        self.calls: list[InboundCall] = []
        self._listening = ExitStack()
        if exploration.inbound is not None:
            self._listening.enter_context(exploration.inbound.listen(self.calls.append))

    def teardown(self) -> None:
        self._listening.close()

    def has(self, interface: str) -> bool:
        """Whether the target's product profile has ``interface`` (docs/protocol.md §1.2): the
        rules of interfaces it does not have are never drawn."""
        target = self.exploration.target
        return target.profile.requires(interface, target.protocol)

    # --- playing one step ------------------------------------------------------------------------

    def _step_id(self, kind: str) -> str:
        return f"{kind}{len(self.steps) + 1}"

    def _play(self, step: Step) -> StepOutcome:
        if self.exploration.target.protocol == "v1" and not step.is_sync:
            step = dataclasses.replace(step, expect=dataclasses.replace(step.expect, body_sign=True))
        self.steps.append(step)
        outcome = self.player.play_step(step)
        self.exploration.called(len(outcome.exchanges))
        if outcome.blocked is not None:
            self.failure = Judgement("sent", False, None, outcome.blocked)
        elif breaking := [j for j in outcome.failures if self.exploration.hunt_warnings or _breaks(j)]:
            self.failure = breaking[0]
        if self.failure is not None:
            self.exploration.failed(list(self.steps), self.failure)
        return outcome

    @invariant()
    def merchant_answered_as_expected(self) -> None:
        """Contract, idempotency and lifecycle hold for the call just made; the merchant's usage
        pushes meanwhile name instances it created (§8.3)."""
        self.exploration.instances.update(self.player.lifecycle.states)
        calls, self.calls[:] = list(self.calls), []
        problems = [
            problem.message
            for call in calls
            for problem in usage_problems(call, self.exploration.instances)
            if self.exploration.hunt_warnings or not problem.assumed
        ]
        if problems and self.failure is None and self.steps:
            self.failure = Judgement("usage push (§8.3)", False, USAGE_CHECK, problems[0])
            self.exploration.failed(list(self.steps), self.failure)
        if self.failure is not None:
            raise failure_type(self.failure.check_id or "koosim.unresolved")(
                f"{self.steps[-1].id}: {self.failure.expectation}: {self.failure.message}"
            )

    def _expected(self, activity: str, order: str, fields: dict[str, str]) -> str:
        """What the lifecycle requires the merchant to answer to ``activity`` on ``order``'s instance."""
        instance_id = self.player.instance_id(order) or ""
        call = (
            status_fields(instance_id, fields["status"])
            if "status" in fields
            else {"activity": activity, **fields}
        )
        return self.player.lifecycle.expected_code(call | {"instanceId": instance_id}).value

    def _instance_call(self, kind: str, activity: str, order: str, fields: dict[str, str]) -> None:
        expected = self._expected(activity, order, fields)
        step = Step(
            id=self._step_id(kind),
            activity=activity,
            of=(order,),
            fields=fields,
            expect=Expect(result_code=expected, schema=True),
        )
        self._play(step)

    # --- orders ----------------------------------------------------------------------------------

    @initialize(target=orders, drawn=new_order_fields(), copies=COPIES)
    def first_order(self, drawn: tuple[dict[str, str], int | None], copies: int) -> Any:
        """Every sequence starts with an order, so the rules about instances apply from the first step
        (a License product has no instances: nothing is sent, the bundle stays empty)."""
        if not self.has("newInstance"):
            return multiple()
        return self._new_instance(drawn, copies)

    @precondition(lambda self: self.has("newInstance"))
    @rule(target=orders, drawn=new_order_fields(), copies=COPIES)
    def new_instance(self, drawn: tuple[dict[str, str], int | None], copies: int) -> str:
        """A new order; two copies at the same moment expose a check-then-insert race."""
        return self._new_instance(drawn, copies)

    def _new_instance(self, drawn: tuple[dict[str, str], int | None], copies: int) -> str:
        fields, id_length = drawn
        step = Step(
            id=self._step_id("new"),
            activity="newInstance",
            id_length=id_length,
            fields=fields,
            concurrent=copies,
            expect=Expect(result_code=SUCCESS, schema=True, appinfo_decrypts=True),
        )
        self._play(step)
        return step.id

    @rule(order=orders, copies=COPIES)
    def resend(self, order: str, copies: int) -> None:
        """The marketplace resends a new order (new businessId, timestamp, nonce), once or twice at once."""
        step = Step(
            id=self._step_id("resend"),
            activity="newInstance",
            resend=order,
            concurrent=copies,
            expect=Expect(result_code=SUCCESS, same_instance_as=order, schema=True),
        )
        self._play(step)

    # --- the lifecycle of an instance -----------------------------------------------------------

    @precondition(lambda self: self.has("refreshInstance"))
    @rule(
        order=orders,
        scene=st.sampled_from(_default_first(_enum("v2", "refreshInstance", "scene"), "RENEWAL")),
    )
    def refresh(self, order: str, scene: str) -> None:
        """A renewal, a trial turned formal, or a renewal period unsubscribed."""
        fields = {} if scene == "RENEWAL" else {"scene": scene}
        self._instance_call("refresh", "refreshInstance", order, fields)

    def _freezes(self) -> bool:
        return any(self.has(name) for name in ("updateInstanceStatus", "instanceStatus", "expireInstance"))

    @precondition(_freezes)
    @rule(order=orders, status=st.sampled_from(_enum("v2", "updateInstanceStatus", "status")))
    def change_status(self, order: str, status: str) -> None:
        """FREEZE or UNFREEZE: each succeeds on a live instance, and gets 000003 on a released one.

        In the generation's own words: V2 updateInstanceStatus (§4.4); V1 instanceStatus FREEZE /
        NORMAL for pay-per-use (§5.6), expireInstance for a yearly/monthly freeze (§5.4). One rule
        for all, so the V2 draws are what they were.
        """
        if self.has("updateInstanceStatus"):
            self._instance_call(status.lower(), "updateInstanceStatus", order, {"status": status})
        elif self.has("instanceStatus"):
            v1_status = "NORMAL" if status == "UNFREEZE" else "FREEZE"
            self._instance_call(v1_status.lower(), "instanceStatus", order, {"instanceStatus": v1_status})
        else:
            self._instance_call("expire", "expireInstance", order, {})

    @precondition(lambda self: self.has("upgradeInstance"))
    @rule(order=orders, ask_first=st.booleans())
    def upgrade(self, order: str, ask_first: bool) -> None:
        """An upgrade, after a changeInstanceCheck when the marketplace asks first."""
        # The contract lets changeInstanceCheck answer no 000003, so a released instance is not asked.
        asks = ask_first and self.has("changeInstanceCheck")
        if asks and self.player.state_of(order) is not InstanceState.RELEASED:
            self._instance_call("check", "changeInstanceCheck", order, {})
            if self.failure is not None:
                return
        self._instance_call("upgrade", "upgradeInstance", order, {})

    @precondition(lambda self: self.has("releaseInstance"))
    @rule(order=orders)
    def release(self, order: str) -> None:
        self._instance_call("release", "releaseInstance", order, {})

    def _within_query_limit(self, chosen: list[str], unknown: bool) -> list[str]:
        """The first of ``chosen`` whose instanceIds (and the unknown one) fit the 100 characters
        of queryInstance's instanceId (docs/protocol.md §4.5, A9): a longer query is koosim's
        fault, not the merchant's."""
        extra = [UNKNOWN_QUERY_ID] if unknown else []
        kept: list[str] = []
        for step_id in chosen:
            ids = [self.player.instance_id(s) or "" for s in (*kept, step_id)]
            if len(",".join([*ids, *extra])) > QUERY_INSTANCE_MAX:
                break
            kept.append(step_id)
        return kept

    @precondition(lambda self: self.has("queryInstance"))
    @rule(chosen=st.lists(orders, min_size=1, max_size=4), unknown=st.booleans())
    def query(self, chosen: list[str], unknown: bool) -> None:
        """queryInstance of several instances, released ones included: it lists exactly the live ones.

        A live instance must be listed once provisioning is over (once a query listed it): a
        merchant may provision asynchronously (§4.1-c), which :meth:`await_provisioning` polls for.
        """
        chosen = self._within_query_limit(list(dict.fromkeys(chosen)), unknown)
        if not chosen:
            return
        released = tuple(o for o in chosen if self.player.state_of(o) is InstanceState.RELEASED)
        live = tuple(o for o in chosen if o not in released and o in self.reported)
        fields = {}
        if unknown:
            ids = [f"${{{o}.instanceId}}" for o in chosen]
            fields["instanceId"] = ",".join([*ids, UNKNOWN_QUERY_ID])
        step = Step(
            id=self._step_id("query"),
            activity="queryInstance",
            of=() if unknown else tuple(chosen),
            fields=fields,
            expect=Expect(result_code=SUCCESS, schema=True, listed=live, not_listed=released),
        )
        self._note_reported(self._play(step), chosen)

    def _note_reported(self, outcome: StepOutcome, chosen: list[str]) -> None:
        """Remember the orders whose instance a queryInstance answer listed."""
        exchange = next(iter(outcome.exchanges), None)
        listed = set(listed_ids(exchange)) if exchange is not None else set()
        self.reported |= {order for order in chosen if self.player.instance_id(order) in listed}

    @precondition(lambda self: self.has("queryInstance"))
    @rule(order=orders)
    def await_provisioning(self, order: str) -> None:
        """The marketplace polls queryInstance after a newInstance until the instance is reported
        (§4.1-c, §10.2); cadence and give-up point as the checks poll (ASSUMPTION U43)."""
        if self.player.state_of(order) in (None, InstanceState.RELEASED) or order in self.reported:
            return
        for poll in range(1, POLLING.polls + 1):
            last = poll == POLLING.polls
            step = Step(
                id=self._step_id("poll"),
                activity="queryInstance",
                of=(order,),
                advance=None if poll == 1 else POLLING.interval,
                expect=Expect(result_code=SUCCESS, schema=True, listed=(order,) if last else ()),
            )
            self._note_reported(self._play(step), [order])
            if self.failure is not None or order in self.reported:
                return

    @rule(order=orders)
    def view_resource_details(self, order: str) -> None:
        """The buyer opens "View Resource Details" (§5.1, §4.5, A23): V2 asks queryInstance
        synchronously, V1 (and V2, U13) re-calls newInstance, which must name the same instance."""
        if self.has("queryInstance") and self.player.state_of(order) is not InstanceState.RELEASED:
            if order not in self.reported:
                self.await_provisioning(order)
            if self.failure is not None:
                return
            step = Step(
                id=self._step_id("details"),
                activity="queryInstance",
                of=(order,),
                expect=Expect(result_code=SUCCESS, schema=True, listed=(order,)),
            )
            self._play(step)
            if self.failure is not None:
                return
        recall = Step(
            id=self._step_id("recall"),
            activity="newInstance",
            resend=order,
            expect=Expect(result_code=SUCCESS, same_instance_as=order, schema=True),
        )
        self._play(recall)

    # --- licenses --------------------------------------------------------------------------------

    def _licenses_apply(self) -> bool:
        return self.has("license") and self.has("getLicense")

    def _async_licenses_apply(self) -> bool:
        return self.has("license") and self.has("getLicenseAsync")

    @precondition(_async_licenses_apply)
    @rule(target=async_licenses, fingerprint=st.booleans())
    def get_license_async(self, fingerprint: bool) -> str:
        """A getLicenseAsync as §6.2's table lists it, with or without a device fingerprint.

        Only the contract is expected of the answer: its table is not read (U47)."""
        orders = self.player.orders
        fields = orders.order().license_async_fields(
            orders.event_id(),
            orders.license_effective_time(),
            period=self.exploration.target.profile.billing == "period",
            device_fingerprint=orders.device_fingerprint() if fingerprint else None,
        )
        step = Step(
            id=self._step_id("async"), activity="getLicenseAsync", fields=fields, expect=Expect(schema=True)
        )
        self._play(step)
        return step.id

    @precondition(_async_licenses_apply)
    @rule(license=async_licenses)
    def resend_license_async(self, license: str) -> None:
        """The same request again (eventId + deviceFingerprint): the same License (§6.2)."""
        expect = Expect(same_instance_as=license, schema=True)
        self._play(
            Step(id=self._step_id("resend"), activity="getLicenseAsync", resend=license, expect=expect)
        )

    @precondition(_licenses_apply)
    @rule(target=licenses)
    def get_license(self) -> str:
        step = Step(id=self._step_id("license"), activity="getLicense", expect=Expect(SUCCESS, schema=True))
        self._play(step)
        self.license_states[step.id] = "ACTIVE"
        return step.id

    @precondition(_licenses_apply)
    @rule(
        license=licenses,
        activity=st.sampled_from(LICENSE_CALLS),
    )
    def change_license(self, license: str, activity: str) -> None:
        """A resent getLicense (same code), a validity update, an expiry or a release.

        After a release only another release succeeds.
        """
        if activity == "getLicense":
            expect = Expect(SUCCESS, same_instance_as=license, schema=True)
            self._play(Step(id=self._step_id("resend"), activity=activity, resend=license, expect=expect))
            return
        released = self.license_states[license] == "RELEASED"
        code = SUCCESS if activity == "releaseLicense" or not released else NOT_FOUND
        step = Step(
            id=self._step_id(activity.removesuffix("License")),
            activity=activity,
            of=(license,),
            expect=Expect(code, schema=True),
        )
        self._play(step)
        if activity == "releaseLicense":
            self.license_states[license] = "RELEASED"

    # --- user-authorization sync ---------------------------------------------------------------

    def _sync_applies(self) -> bool:
        return self.has("kit") and bool(self.exploration.target.sync_key)

    @precondition(_sync_applies)
    @rule(
        order=orders,
        user=mostly("alice", st.sampled_from(USERS[1:])),
        flags=st.lists(st.sampled_from([ADD, DELETE]), min_size=1, max_size=3),
    )
    def sync_user(self, order: str, user: str, flags: list[int]) -> None:
        """authSync adds and deletes of one user, one call each: every repeat and every re-add succeeds."""
        for flag in flags:
            kind = "add-user" if flag == ADD else "delete-user"
            step = Step(
                id=self._step_id(kind),
                activity="sync:authSync",
                of=(order,),
                fields={"userList": [kit_user(user)], "flag": flag},
                expect=Expect(SUCCESS, schema=True),
            )
            if self._play(step).failed:
                return
