"""Findings that rest on an ASSUMPTION stay warnings (docs/protocol.md §0): koosim's polling
schedule (U43), the V1 re-call in states other than live (U13), the debug follow-up MOCK orders
(U31); a Body-Sign check with nothing answered is skipped; the License customerId is a page fact."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest
from conftest import Serve
from flask import Flask
from mutants.base import install_merchant, refuse_calls

from simulator.checks import Verdict, select
from simulator.checks.polling import POLLING
from simulator.engine.run import run_checks
from simulator.protocol import ResultCode
from simulator.protocol.profiles import Profile
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Answer, answer
from simulator.reference.conversation import ConversingMerchant
from simulator.transport import Target

ACCESS_KEY = "koosim-polling-access-key"
SYNC_KEY = "koosim-polling-sync-key"
PROVISIONING_MINUTES = 15
"""Longer than koosim's assumed polling (10 polls a minute apart, U43), within §4.1-c."""


def _config() -> MerchantConfig:
    return MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)


def _target(url: str, **overrides: object) -> Target:
    return Target(url=url, access_key=ACCESS_KEY, sync_key=SYNC_KEY, **overrides)  # type: ignore[arg-type]


@dataclass
class SlowProvisioningMerchant(ConversingMerchant):
    """Provisions each instance after 15 marketplace minutes: koosim polls once a marketplace
    minute, so the instance shows up on the 16th queryInstance that asks for it."""

    async_provisioning: bool = True
    answer_pending: bool = False
    asked: dict[str, int] = field(default_factory=dict, repr=False)

    def query_instance(self, fields: dict[str, str]) -> Answer:
        ids = [i for i in str(fields.get("instanceId", "")).split(",") if i]
        with self._lock:
            for instance_id in ids:
                self.asked[instance_id] = self.asked.get(instance_id, 0) + 1
            waiting = {i for i in ids if self.asked[i] <= PROVISIONING_MINUTES}
        if waiting and self.answer_pending:
            return answer(ResultCode.PROCESSING, "still provisioning")
        result = super().query_instance(fields)
        info = result.get("info")
        if isinstance(info, list):
            result["info"] = [item for item in info if item.get("instanceId") not in waiting]
        return result


@dataclass
class SlowPendingMerchant(SlowProvisioningMerchant):
    answer_pending: bool = True


def _slow(merchant: type[SlowProvisioningMerchant]) -> Flask:
    app = create_app(_config())
    install_merchant(app, merchant)
    return app


POLLED = [
    "lifecycle.full",
    "lifecycle.query-several",
    "lifecycle.delivered-on-schedule",
    "conversation.resource-details",
    "conversation.debug-orders",
]


@pytest.mark.parametrize("merchant", [SlowProvisioningMerchant, SlowPendingMerchant])
def test_provisioning_slower_than_the_assumed_polling_is_a_warning_naming_u43(
    serve: Serve, merchant: type[SlowProvisioningMerchant]
) -> None:
    assert POLLING.polls * POLLING.interval.total_seconds() < PROVISIONING_MINUTES * 60
    run = run_checks(_target(serve(_slow(merchant))), select(POLLED))
    assert {r.check.id for r in run.results} == set(POLLED)
    for result in run.results:
        assert result.verdict is Verdict.WARNED, f"{result.check.id}: {result.verdict} {result.evidence}"
        messages = [f.message for f in result.findings]
        assert any("still provisioning after koosim's assumed polling (U43)" in m for m in messages), messages


def test_a_second_instance_stays_an_error_while_provisioning_is_pending(serve: Serve) -> None:
    """The page fact (one order line, one instance, §4.1) fails; the give-up on polling warns."""

    @dataclass
    class TwoInstances(SlowPendingMerchant):
        def new_instance(self, fields: dict[str, str]) -> Answer:
            result = super().new_instance(fields)
            result["instanceId"] = f"{result.get('instanceId')}-{fields.get('businessId', '')[-6:]}"
            return result

    run = run_checks(_target(serve(_slow(TwoInstances))), select(["idempotency.new-instance-resend"]))
    (result,) = run.results
    assert result.verdict is Verdict.FAILED
    errors = [f.message for f in result.findings if f.severity is None]
    warnings = [f.message for f in result.findings if f.severity is not None]
    assert any("different instanceIds" in m for m in errors), errors
    assert not any("queryInstance" in m for m in errors), errors
    assert any("(U43)" in m for m in warnings), warnings


def test_a_v1_recall_in_a_changed_state_is_an_assumption_u13(serve: Serve) -> None:
    """[S46] covers the existing order as bought; re-calls for a renewed/frozen/upgraded instance
    are U13: the same defect warns on V1 too."""
    from mutants import recall_changes_instance_id

    run = run_checks(
        _target(serve(recall_changes_instance_id.build(_config())), protocol="v1"),
        select(["conversation.resource-details"]),
    )
    (result,) = run.results
    assert result.verdict is Verdict.WARNED, result.evidence
    assert result.findings and all("ASSUMPTION U13" in f.message for f in result.findings)


def test_a_v1_recall_that_changes_the_live_instance_fails(serve: Serve) -> None:
    app = create_app(_config())
    seen: set[str] = set()

    def second_call(fields: dict[str, object]) -> str | None:
        order = str(fields.get("orderId", ""))
        if fields.get("activity") != "newInstance":
            return None
        if order in seen:
            return "this order already has an instance"
        seen.add(order)
        return None

    refuse_calls(app, "produce.produce_v1", second_call)
    run = run_checks(_target(serve(app), protocol="v1"), select(["conversation.resource-details"]))
    (result,) = run.results
    assert result.verdict is Verdict.FAILED, result.evidence
    assert any("live instance (§5.1)" in f.message and f.severity is None for f in result.findings)


def test_a_refused_follow_up_mock_order_is_a_warning_naming_u31(serve: Serve) -> None:
    app = create_app(_config())
    refuse_calls(
        app, "produce.produce_v2", lambda f: "unknown" if f.get("orderId") == "MOCKMONTYRENEW" else None
    )
    run = run_checks(_target(serve(app)), select(["conversation.debug-orders"]))
    (result,) = run.results
    assert result.verdict is Verdict.WARNED, result.evidence
    (finding,) = result.findings
    assert "refreshInstance RENEWAL" in finding.message and "U31" in finding.message


def test_sync_body_sign_is_skipped_when_nothing_answered(serve: Serve) -> None:
    url = serve(create_app(_config()))
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    run = run_checks(
        _target(url, sync_url=closed, profile=Profile(product="saas-kit")),
        select(["security.sync-body-sign"]),
    )
    (result,) = run.results
    assert result.verdict is Verdict.SKIPPED, result.evidence
    assert "neither tenantSync" in (result.skip_reason or "")


def test_a_64_character_customer_column_fails_the_license_customer_id_check(serve: Serve) -> None:
    from mutants import license_customer_id_64

    run = run_checks(
        _target(serve(license_customer_id_64.build(_config())), profile=Profile(product="license")),
        select(["lifecycle.license-customer-id", "lifecycle.license"]),
    )
    verdicts = {r.check.id: r.verdict for r in run.results}
    assert verdicts == {"lifecycle.license-customer-id": Verdict.FAILED, "lifecycle.license": Verdict.PASSED}
