"""Rules about single answers, public so that every judge uses the same function: the catalog's
checks, the scenario player, the explorer, the console's per-call verdicts and the pytest plugin.

- :func:`judge_exchange` runs the per-exchange checks (``contract.*``, ``timing.*``) over one
  answer: the one loop that does it.
- :func:`appinfo_problems` and :func:`body_sign_problem` (defined with their checks in
  :mod:`simulator.checks.security`) are the appInfo encryption and the v1 Body-Sign rules.
- :func:`rule_for` says which catalog check a wrong resultCode breaks, from what the call was
  (:class:`Situation`), so a played step's failure names the same check, with the same
  severity, as ``koosim verify`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.checks import contract, idempotency, lifecycle, security, sync  # noqa: F401 - registers
from simulator.checks.base import REGISTRY, Breach, Check, catalog
from simulator.checks.security import appinfo_problems, body_sign_problem, encrypt_type_problem
from simulator.model import InstanceState
from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import DELETE, LICENSE_CHANGES
from simulator.transport import Exchange, Target

# --- the per-exchange checks -------------------------------------------------------------------


def answer_checks() -> list[Check]:
    """The catalog's checks of single answers (HTTP 200 JSON, result code, schema, deadline)."""
    return [check for check in catalog() if check.per_exchange]


def judge_exchange(exchange: Exchange, target: Target, checks: Iterable[Check] | None = None) -> list[Breach]:
    """What the per-exchange checks (all of them, or ``checks``) find wrong with one answer."""
    breaches = []
    for check in answer_checks() if checks is None else checks:
        problem = check.judge(exchange, target)
        if problem is not None:
            breaches.append(Breach(check, problem, exchange))
    return breaches


# --- which check a played call's answer breaks -----------------------------------------------------


@dataclass(frozen=True)
class Situation:
    """What a call was, as far as the rules care: enough to name the check its answer breaks."""

    activity: str
    """The activity, or the sync call (``authSync``) for a sync call."""
    sync: bool = False
    expected: str | None = None
    """The resultCode the call should get."""
    again: bool = False
    """A resend, or a later copy of the same call."""
    concurrent: bool = False
    """One of several copies sent at the same moment."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    state: InstanceState | None = None
    """What the marketplace believes of the instance the call is about (None: unknown to it)."""
    readds_deleted_user: bool = False

    @property
    def several(self) -> bool:
        return len(str(self.fields.get("instanceId", "")).split(",")) > 1


_RESENDS = {
    "refreshInstance": "idempotency.refresh-resend",
    "updateInstanceStatus": "idempotency.status-resend",
    "upgradeInstance": "idempotency.upgrade-resend",
    "releaseInstance": "idempotency.release-resend",
}
_SCENES = {
    "TRIAL_TO_FORMAL": "lifecycle.trial-to-formal",
    "UNSUBSCRIBE_RENEWAL_PERIOD": "lifecycle.unsubscribe-renewal",
}


def _after(s: Situation) -> str:
    """An instance call: the instance's state and the call's kind decide."""
    if s.state is None:
        return "lifecycle.unknown-instance"
    if s.state is InstanceState.RELEASED:
        return "idempotency.release-resend" if s.activity == "releaseInstance" else "lifecycle.after-release"
    if s.again and s.activity in _RESENDS:
        return _RESENDS[s.activity]
    if s.activity == "refreshInstance":
        return _SCENES.get(str(s.fields.get("scene")), "lifecycle.full")
    return "lifecycle.full"


def _new_instance(s: Situation) -> str:
    if s.concurrent:
        return "idempotency.new-instance-concurrent"
    if s.again:
        return "idempotency.new-instance-resend"
    if s.fields.get("testFlag") == "1":
        return "lifecycle.test-order"
    return "lifecycle.trial-to-formal" if s.fields.get("trialFlag") == "1" else "lifecycle.full"


def _auth_sync(s: Situation) -> str:
    if s.fields.get("flag") == DELETE or s.readds_deleted_user:
        return "idempotency.user-sync-delete"
    return "idempotency.user-sync-add"


_BY_CALL: dict[str, Callable[[Situation], str]] = {
    "newInstance": _new_instance,
    "getLicense": lambda s: "idempotency.license-resend" if s.again else "lifecycle.license",
    "getLicenseAsync": lambda s: "idempotency.license-async-resend",
    **dict.fromkeys(LICENSE_CHANGES, lambda s: "lifecycle.license"),
    "queryInstance": lambda s: "lifecycle.query-several" if s.several else "lifecycle.full",
}
_BY_SYNC_CALL: dict[str, Callable[[Situation], str]] = {
    "authSync": _auth_sync,
    "applicationSync": lambda s: "sync.application-secret",
}


def rule_for(situation: Situation) -> Check:
    """The catalog check that a wrong resultCode to ``situation`` breaks."""
    if situation.expected == ResultCode.INVALID_PARAMETER:
        return REGISTRY["lifecycle.invalid-parameters"]
    if situation.sync:
        decide = _BY_SYNC_CALL.get(situation.activity, lambda s: "sync.directory")
    else:
        decide = _BY_CALL.get(situation.activity, _after)
    return REGISTRY[decide(situation)]


def resend_rule(activity: str, concurrent: bool) -> Check:
    """The check that copies of one order (instance or license code) must agree under."""
    if activity == "getLicense":
        return REGISTRY["idempotency.license-resend"]
    if activity == "getLicenseAsync":
        return REGISTRY["idempotency.license-async-resend"]
    if concurrent:
        return REGISTRY["idempotency.new-instance-concurrent"]
    return REGISTRY["idempotency.new-instance-resend"]


def listing_rule(several: bool, listed: bool = True) -> Check:
    """The check a queryInstance answer that leaves out (``listed``), or still lists, an instance
    breaks. What a released instance looks like in queryInstance is not published (U7)."""
    if not listed:
        return REGISTRY["lifecycle.after-release"]
    return REGISTRY["lifecycle.query-several" if several else "lifecycle.full"]


APPINFO_RULE = REGISTRY["security.appinfo-encrypted"]
BODY_SIGN_RULE = REGISTRY["security.v1-body-sign"]


__all__ = [
    "APPINFO_RULE",
    "BODY_SIGN_RULE",
    "Situation",
    "answer_checks",
    "appinfo_problems",
    "body_sign_problem",
    "encrypt_type_problem",
    "judge_exchange",
    "listing_rule",
    "resend_rule",
    "rule_for",
]
