"""One hand-filled call, as the seller console's interface-debugging page sends it, for every
activity: the produce interface, the license activities and the user-authorization sync.

The server signs the call with the configured keys, sends it, and judges the answer with the
catalog's per-exchange checks (HTTP 200, a JSON object, the answer contract of that activity, the
deadline) and, when what was sent breaks the request contract, that the merchant did not accept
it. Each call is recorded as a run of kind ``call`` (:meth:`~simulator.store.RunRecorder.start`), so the
history, ``koosim show`` and the console render it like any verify run.

When a user-authorization sync call fails, the marketplace notifies the merchant by SMS or
e-mail and the enterprise administrator decides whether to continue the sync (protocol.md §8):
the message goes to the outbox, and :func:`continue_sync` / :func:`stop_sync` are the two
answers the administrator can give.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.checks import REGISTRY, Check, Verdict, judge_exchange
from simulator.checks.answers import answer_checks
from simulator.checks.base import describe
from simulator.contracts import known_contracts, validate
from simulator.engine.record import exchange_record
from simulator.model import (
    KIT_ORGS,
    TENANT_DOMAIN,
    OrderFactory,
    change_check_fields,
    expire_fields,
    instance_status_fields,
    kit_user,
    org_info,
    query_fields,
    release_fields,
    single_org_fields,
    status_fields,
)
from simulator.protocol import ResultCode, encrypt_client_secret
from simulator.protocol.vocabulary import ADD, LICENSE_ASYNC, is_license
from simulator.server import deliveries
from simulator.server.state import MarketState, NotConfigured
from simulator.store import OUTBOX_PENDING, OUTBOX_RESOLVED, OUTBOX_STOPPED, RunRecorder
from simulator.transport import PRODUCE, Exchange, Target

PRODUCE_FAMILIES = ("v2", "v1")
SYNC = "sync"
CALL = "call"
"""The kind of delivery a call sent from the console or the API is."""
PLACEHOLDER_INSTANCE = "replace-with-an-instanceId"
PLACEHOLDER_LICENSE = "replace-with-a-license-from-getLicense"
PLACEHOLDER_SUBSCRIPTION = "replace-with-the-subscription-orderId"
V1_OWN = frozenset({"expireInstance", "instanceStatus"})
"""V1 activities with no V2 counterpart (docs/protocol.md §5.4, §5.6): offered for a V1 target."""


class CallError(ValueError):
    """The call cannot be sent as asked (unknown activity, fields not an object, …)."""


LIFECYCLE_ORDER = (
    "newInstance",
    "refreshInstance",
    "updateInstanceStatus",
    "expireInstance",
    "instanceStatus",
    "upgradeInstance",
    "queryInstance",
    "changeInstanceCheck",
    "releaseInstance",
    "getLicense",
    "getLicenseAsync",
    "refreshLicense",
    "expireLicense",
    "releaseLicense",
    "tenantSync",
    "applicationSync",
    "authSync",
    "singleOrgSync",
    "allOrgSync",
)
"""The order a person meets the activities in: an instance's life, then licences, then sync."""


def activities() -> dict[str, list[str]]:
    """Every activity a hand-made call may use, by kind, from the contracts shipped."""
    requests = [(family, name) for family, name, direction in known_contracts() if direction == "request"]

    def ordered(names: list[str]) -> list[str]:
        position = {name: index for index, name in enumerate(LIFECYCLE_ORDER)}
        return sorted(names, key=lambda name: (position.get(name, len(position)), name))

    v2 = [name for family, name in requests if family == "v2"]
    return {
        "produce": ordered([name for name in v2 if not is_license(name)] + sorted(V1_OWN)),
        "license": ordered([name for name in v2 if is_license(name)]),
        "sync": ordered([name for family, name in requests if family == SYNC]),
    }


def family_of(activity: str, protocol: str) -> str:
    """The contract family a call of ``activity`` belongs to for a target of ``protocol``."""
    kinds = activities()
    if activity in kinds["sync"]:
        return SYNC
    if activity == LICENSE_ASYNC and protocol != "v2":
        raise CallError(f"{activity} is a V2 call (docs/protocol.md §6.2); the target speaks {protocol}")
    if activity in kinds["license"]:  # both forms are published (docs/protocol.md §6.1, A56)
        return protocol
    if activity in V1_OWN and protocol != "v1":
        raise CallError(f"{activity} is a V1 activity (docs/protocol.md §5.1); the target speaks {protocol}")
    if activity in kinds["produce"]:
        return protocol
    known = ", ".join(name for names in kinds.values() for name in names)
    raise CallError(f"unknown activity {activity!r}; known: {known}")


def template(activity: str, market: MarketState) -> dict[str, Any]:
    """Fields a person can send as they are: a fresh order, or the last instance created."""
    orders = OrderFactory(secrets.randbits(32))
    order = orders.order()
    instance_id = market.store.marketplace.latest_instance_id() or PLACEHOLDER_INSTANCE
    scope = {"instanceId": instance_id, "tenantId": "tenant-001"}
    rsa_public_key = market.settings.rsa_public_key
    license_fields = {"orderId": order.order_id, "license": PLACEHOLDER_LICENSE}
    templates: dict[str, Any] = {
        "newInstance": lambda: order.new_instance_fields(orders.business_id()) | {"testFlag": "1"},
        "refreshInstance": lambda: order.refresh_fields(instance_id, orders.expire_time(days=60)),
        "updateInstanceStatus": lambda: status_fields(instance_id, "FREEZE"),
        "expireInstance": lambda: expire_fields(instance_id, PLACEHOLDER_SUBSCRIPTION),
        "instanceStatus": lambda: instance_status_fields(instance_id, "FREEZE"),
        "releaseInstance": lambda: release_fields(instance_id),
        "upgradeInstance": lambda: order.upgrade_fields(instance_id),
        "queryInstance": lambda: query_fields(instance_id),
        "changeInstanceCheck": lambda: change_check_fields(instance_id, order.product_id, "sku-pro-0002"),
        "getLicense": lambda: order.license_fields(orders.business_id()),
        "getLicenseAsync": lambda: order.license_async_fields(
            orders.event_id(), orders.license_effective_time(), device_fingerprint=orders.device_fingerprint()
        ),
        "refreshLicense": lambda: (
            {"activity": "refreshLicense", **license_fields} | {"expireTime": orders.expire_time(days=365)}
        ),
        "expireLicense": lambda: {"activity": "expireLicense", **license_fields},
        "releaseLicense": lambda: {"activity": "releaseLicense", **license_fields},
        "tenantSync": lambda: (
            scope
            | {
                "orderId": order.order_id,
                "tenantCode": "acme",
                "name": "Acme 有限公司",
                "domainName": TENANT_DOMAIN,
                "flag": ADD,
            }
        ),
        "applicationSync": lambda: (
            scope
            | {
                "appId": "app-001",
                "name": "koosim app",
                "clientId": "client-001",
                "clientSecret": encrypt_client_secret("s3cret-client", rsa_public_key)
                if rsa_public_key
                else "replace-with-a-secret-encrypted-with-the-merchant-RSA-key",
                "flag": ADD,
            }
        ),
        "authSync": lambda: (
            scope
            | {
                "appId": "app-001",
                "userList": [kit_user("alice", "Alice", role="admin")],
                "flag": ADD,
            }
        ),
        "singleOrgSync": lambda: single_org_fields(scope, ADD),
        "allOrgSync": lambda: scope | {"orgInfo": org_info(KIT_ORGS[:1])},
    }
    if activity not in templates:
        family_of(activity, "v2")  # raises CallError naming the known activities
    return templates[activity]()


# --- judging an answer -------------------------------------------------------------------------


ACCEPTS_INVALID = REGISTRY["lifecycle.invalid-parameters"]
"""The catalog rule a merchant breaks by accepting a call that breaks its request contract."""


def verdicts(
    exchange: Exchange, target: Target, request_violations: Sequence[str]
) -> list[tuple[Check, list[str]]]:
    """Each catalog rule that applies to the answer of one hand-made call, with what it finds:
    the per-exchange checks, and (when what was sent breaks the request contract) that the
    merchant did not accept it."""
    breaches = judge_exchange(exchange, target)
    found = [(check, [b.message for b in breaches if b.check is check]) for check in answer_checks()]
    if request_violations:
        accepted = exchange.result_code == ResultCode.SUCCESS.value
        found.append(
            (
                ACCEPTS_INVALID,
                [
                    f"accepted a call that breaks its contract ({violation}); §6 asks for 000002"
                    for violation in request_violations
                ]
                if accepted
                else [],
            )
        )
    return found


def judge(exchange: Exchange, target: Target, request_violations: Sequence[str]) -> list[str]:
    """What is wrong with the merchant's answer to one hand-made call (empty: nothing), each
    problem named by the catalog check it breaks."""
    return [
        f"{check.id}: {problem}"
        for check, problems in verdicts(exchange, target, request_violations)
        for problem in problems
    ]


@dataclass
class CallOutcome:
    """A sent call, the merchant's answer, and the verdict on it."""

    run_id: str
    activity: str
    exchange: Exchange
    problems: list[str]
    request_violations: list[str]
    result_code: str | None
    summary: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """The target's keys, redacted from the exchange wherever it is shown."""
    outbox_id: int | None = None
    delivery_id: int | None = None
    """The delivery this call is the first attempt of (produce interface only)."""
    delivery: str | None = None
    """How that delivery stands after this attempt (delivered, pending and when, parked …)."""
    notes: list[str] = field(default_factory=list)

    @property
    def meaning(self) -> str:
        """What the result code means (protocol.md §6), or what came back instead of one."""
        try:
            return ResultCode(self.result_code or "").meaning
        except ValueError:
            return self.summary

    @property
    def verdict(self) -> str:
        return Verdict.FAILED.value if self.problems else Verdict.PASSED.value

    @property
    def record(self) -> dict[str, Any]:
        """The exchange as a page or the API shows it, keys redacted."""
        return exchange_record(self.exchange, self.secrets)

    def as_json(self) -> dict[str, Any]:
        # asdict() would copy the Exchange's raw bytes, unredacted: it goes out as its record
        shown = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("exchange", "secrets")
        }
        return shown | {"verdict": self.verdict, "exchange": self.record}


def send_call(
    market: MarketState, activity: Any, fields: Any, *, label: str = "", report_sync_failure: bool = True
) -> CallOutcome:
    """Sign and send one call, record it, judge the answer; a failed sync call goes to the outbox.

    A produce-interface call is a delivery (:mod:`~simulator.server.deliveries`): this is its first
    attempt, and when it fails and its policy resends (docs/protocol.md §10.1) the scheduler of
    ``koosim serve`` sends the next attempts at their marketplace instants.
    """
    if not isinstance(activity, str) or not activity:
        raise CallError("activity must be a non-empty string")
    if not isinstance(fields, dict):
        raise CallError("fields must be a JSON object")
    target = market.target()
    family = family_of(activity, target.protocol)
    if family == SYNC and not target.sync_key:
        raise NotConfigured("no sync key is configured: set it on the target page before sending a sync call")
    if family == SYNC:
        outcome = _send_once(market, target, family, activity, fields, label=label or activity)
        if report_sync_failure and outcome.result_code != ResultCode.SUCCESS.value:
            outcome.outbox_id = _notify_sync_failure(market, target, activity, fields, outcome.exchange)
        return outcome
    fields = {"activity": activity} | {name: value for name, value in fields.items() if name != "activity"}
    started = deliveries.begin_new(
        market,
        kind=CALL,
        interface=PRODUCE,
        protocol=target.protocol,
        activity=activity,
        label=label or activity,
        target_url=target.url,
        body=fields,
    )
    try:
        outcome = _send_once(market, target, family, activity, fields, label=label or activity)
    except BaseException:
        market.store.deliveries.release(started.id, market.owner)
        raise
    deliveries.finish(market, started, outcome.exchange, deliveries.judge(outcome.exchange))
    outcome.delivery_id = started.id
    outcome.delivery = started.delivery.summary()
    return outcome


def _send_once(
    market: MarketState,
    target: Target,
    family: str,
    activity: str,
    fields: dict[str, Any],
    *,
    label: str,
    attempt: int = 1,
) -> CallOutcome:
    """Send one call (one attempt), record it as a run of kind ``call`` and judge the answer."""
    recording = RunRecorder.start(
        market.store,
        target,
        kind="call",
        planned=len(answer_checks()) + 1,
        command=f"{activity} sent by hand" if attempt == 1 else f"{activity}, attempt {attempt}",
    )
    try:
        if family == SYNC:
            exchange = recording.transport.sync(activity, fields, label=label)
        else:
            exchange = recording.transport.send(fields, label=label, attempt=attempt)
        violations = [
            f"{v.path}: {v.message}" for v in validate(exchange.fields, family, activity, "request")
        ]
        found = verdicts(exchange, target, violations)
        for check, check_problems in found:
            recording.judge(check, exchange, check_problems)
        problems = [f"{check.id}: {problem}" for check, found_problems in found for problem in found_problems]
    finally:
        recording.finish()
    return CallOutcome(
        run_id=recording.id,
        activity=activity,
        exchange=exchange,
        problems=problems,
        request_violations=violations,
        result_code=exchange.result_code,
        summary=describe(exchange),
        secrets=target.secrets,
        notes=[] if recording.problem is None else [f"the run history is incomplete: {recording.problem}"],
    )


def _resend(market: MarketState, row: Mapping[str, Any], number: int) -> Exchange:
    """Attempt ``number`` of a stored call (the scheduler's, or a 重新启动): fresh signature,
    timestamp and nonce, the body as first sent."""
    target = market.target()
    if target.url != row["target_url"] or target.protocol != row["protocol"]:
        raise NotConfigured(
            f"the target is {target.url} ({target.protocol}) now, not {row['target_url']} ({row['protocol']})"
        )
    family = family_of(row["activity"], target.protocol)
    label = f"{row['label']} (attempt {number}, delivery #{row['id']})"
    return _send_once(
        market, target, family, row["activity"], dict(row["body"]), label=label, attempt=number
    ).exchange


deliveries.register(CALL, _resend)


def _notify_sync_failure(
    market: MarketState, target: Target, call: str, body: dict[str, Any], exchange: Exchange
) -> int:
    scope = ", ".join(
        f"{name} {body[name]}" for name in ("instanceId", "tenantId", "appId") if body.get(name)
    )
    return market.store.marketplace.add_outbox(
        channels=("sms", "email"),
        recipient=market.settings.contact,
        subject=f"KooGallery: user synchronisation {call} failed",
        body=(
            f"The marketplace could not synchronise {call} ({scope or 'no scope'}): {describe(exchange)}. "
            "The enterprise administrator may continue the synchronisation (the marketplace sends it "
            "again) or stop it."
        ),
        sync_call=call,
        sync_body=body,
        exchange_id=exchange.id,
        secrets=target.secrets,
    )


class NoSuchMessage(LookupError):
    """No outbox message has that id."""


class AlreadyDecided(Exception):
    """The outbox message is no longer waiting for the administrator's decision."""


def _pending(market: MarketState, message_id: int) -> dict[str, Any]:
    message = market.store.marketplace.outbox_message(message_id)
    if message is None:
        raise NoSuchMessage(f"no outbox message {message_id}")
    if message["status"] != OUTBOX_PENDING:
        raise AlreadyDecided(f"outbox message {message_id} is already {message['status']}")
    return message


def continue_sync(market: MarketState, message_id: int) -> CallOutcome:
    """The administrator continues the sync: send the same call again (fresh timestamp and nonce)."""
    message = _pending(market, message_id)
    outcome = send_call(
        market,
        message["sync_call"],
        message["sync_body"],
        label=f"{message['sync_call']} (resent from outbox #{message_id})",
        report_sync_failure=False,
    )
    succeeded = outcome.result_code == ResultCode.SUCCESS.value
    market.store.marketplace.decide_outbox(
        message_id, OUTBOX_RESOLVED if succeeded else OUTBOX_PENDING, outcome.exchange.id
    )
    return outcome


def stop_sync(market: MarketState, message_id: int) -> None:
    """The administrator stops the sync: nothing more is sent for this message."""
    _pending(market, message_id)
    market.store.marketplace.decide_outbox(message_id, OUTBOX_STOPPED)
