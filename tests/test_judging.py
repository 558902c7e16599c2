"""One judging system: verify, play, the plugin and the server's per-call verdicts name the same
catalog check, with the same severity, for the same bad answer."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from simulator.checks import REGISTRY, Severity, Verdict, catalog, judge_exchange
from simulator.checks.answers import Situation, appinfo_problems, body_sign_problem, rule_for
from simulator.engine.player import Judgement, StepOutcome, step_result
from simulator.engine.run import run_check
from simulator.engine.scenario import Expect, Step
from simulator.model import InstanceState, OrderFactory
from simulator.protocol import encrypt, sign_body
from simulator.pytest_plugin import SimulatedMarketplace
from simulator.server.calls import judge as judge_call
from simulator.transport import Exchange, Target, Transport, send_at_once

ACCESS_KEY = "judging-access-key-0123456789"
TARGET = Target(url="http://merchant.invalid/produceAPI", access_key=ACCESS_KEY, protocol="v2")


def answer(
    body: Any, *, content_type: str = "application/json", activity: str = "newInstance", **extra: Any
) -> Exchange:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Exchange(
        interface="produce",
        protocol="v2",
        activity=activity,
        method="POST",
        url=TARGET.url,
        fields={"activity": activity},
        request_headers={},
        request_body=b"{}",
        started_at=time.time(),
        label=activity,
        status=200,
        response_headers={"Content-Type": content_type},
        response_body=raw,
        **extra,
    )


def test_verify_the_plugin_and_the_server_name_the_same_checks_for_one_bad_answer() -> None:
    # resultMsg is optional (docs/protocol.md §3.1) but at most 255 characters: this one is over
    bad = answer({"resultCode": "000000", "resultMsg": "x" * 300}, content_type="text/plain")
    expected = {breach.check_id for breach in judge_exchange(bad, TARGET)}
    assert {"contract.http-200-json", "contract.result-msg", "contract.response-schema"} <= expected

    failed_in_verify = set()
    for check in (c for c in catalog() if c.per_exchange):
        result = run_check(check, TARGET, Transport(TARGET), OrderFactory(0), [bad])
        if result.verdict in (Verdict.FAILED, Verdict.WARNED):
            failed_in_verify.add(check.id)
            assert result.verdict is (Verdict.FAILED if check.severity is Severity.ERROR else Verdict.WARNED)
    assert failed_in_verify == expected

    market = SimulatedMarketplace(TARGET, OrderFactory(0))
    try:
        plugin = {problem.split(":", 1)[0] for problem in market.contract_problems(bad)}
    finally:
        market.close()
    server = {problem.split(":", 1)[0] for problem in judge_call(bad, TARGET, [])}
    assert plugin == server == expected


def test_a_played_failure_is_recorded_with_the_severity_verify_gives_its_check() -> None:
    practice = REGISTRY["idempotency.refresh-resend"]
    assert practice.severity is Severity.WARNING
    step = Step(id="again", activity="refreshInstance", expect=Expect(result_code="000000"))
    bad = answer({"resultCode": "000005", "resultMsg": "no"}, activity="refreshInstance")
    outcome = StepOutcome(
        step, None, [bad], [Judgement("resultCode 000000", False, practice.id, "got 000005", bad)]
    )
    result = step_result(outcome)
    assert result.verdict is Verdict.WARNED and result.check.severity is Severity.WARNING
    assert result.findings[0].message.startswith(f"{practice.id}: ")

    doc_rule = REGISTRY["lifecycle.full"]
    outcome.judgements.append(Judgement("listed new", False, doc_rule.id, "left out", bad))
    result = step_result(outcome)
    assert result.verdict is Verdict.FAILED and result.check.severity is Severity.ERROR


@pytest.mark.parametrize(
    ("situation", "check_id"),
    [
        (Situation("newInstance", concurrent=True, again=True), "idempotency.new-instance-concurrent"),
        (Situation("newInstance", again=True), "idempotency.new-instance-resend"),
        (Situation("newInstance", fields={"testFlag": "1"}), "lifecycle.test-order"),
        (Situation("newInstance", expected="000002"), "lifecycle.invalid-parameters"),
        (Situation("getLicense", again=True), "idempotency.license-resend"),
        (Situation("expireLicense"), "lifecycle.license"),
        (Situation("authSync", sync=True, fields={"flag": 0}), "idempotency.user-sync-delete"),
        (Situation("tenantSync", sync=True), "sync.directory"),
        (Situation("queryInstance", fields={"instanceId": "a,b"}), "lifecycle.query-several"),
        (Situation("upgradeInstance"), "lifecycle.unknown-instance"),
        (Situation("upgradeInstance", state=InstanceState.RELEASED), "lifecycle.after-release"),
        (Situation("releaseInstance", state=InstanceState.RELEASED), "idempotency.release-resend"),
        (Situation("upgradeInstance", again=True, state=InstanceState.ACTIVE), "idempotency.upgrade-resend"),
        (
            Situation("refreshInstance", state=InstanceState.ACTIVE, fields={"scene": "TRIAL_TO_FORMAL"}),
            "lifecycle.trial-to-formal",
        ),
    ],
)
def test_a_wrong_result_code_names_a_catalog_check(situation: Situation, check_id: str) -> None:
    rule = rule_for(situation)
    assert rule is REGISTRY[check_id]


def test_appinfo_rule_judges_every_info_item_of_a_query_answer() -> None:
    good = {"userName": encrypt("u", ACCESS_KEY), "password": encrypt("p", ACCESS_KEY)}
    plaintext = {"userName": encrypt("u", ACCESS_KEY), "password": "hunter2-plain"}
    body = {"resultCode": "000000", "resultMsg": "ok", "encryptType": "1"}
    listed = answer(body | {"info": [{"appInfo": good}, {"appInfo": plaintext}]}, activity="queryInstance")
    problems = appinfo_problems(listed, ACCESS_KEY)
    assert len(problems) == 1 and problems[0].startswith("appInfo.password does not decrypt")
    assert appinfo_problems(answer(body | {"appInfo": good}), ACCESS_KEY) == []
    assert appinfo_problems(answer(body | {"encryptType": "3", "appInfo": good}), ACCESS_KEY) == [
        "encryptType must be '1' (AES-256) or '2' (AES-128), got '3'"
    ]


def test_body_sign_rule() -> None:
    payload = b'{"resultCode":"000000","resultMsg":"ok"}'
    signed = answer(payload)
    signed.response_headers["Body-Sign"] = sign_body(payload, ACCESS_KEY)
    assert body_sign_problem(signed, ACCESS_KEY) is None
    signed.response_body = payload.replace(b"ok", b"OK")
    assert body_sign_problem(signed, ACCESS_KEY) == "Body-Sign does not verify over the answer's bytes"
    del signed.response_headers["Body-Sign"]
    assert body_sign_problem(signed, ACCESS_KEY) == "the answer has no Body-Sign header"


def test_an_answer_is_parsed_once_per_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.transport as transport

    parses = []
    real = transport.decode_json
    monkeypatch.setattr(transport, "decode_json", lambda body: parses.append(body) or real(body))
    exchange = answer({"resultCode": "000000", "resultMsg": "ok", "resultMsg ": 1})
    judge_exchange(exchange, TARGET)
    assert exchange.result_code == "000000" and exchange.answer_field("resultMsg") == "ok"
    assert len(parses) == 1
    exchange.response_body = b'{"resultCode": "000001", "resultCode": "000000"}'
    assert exchange.result_code == "000000" and exchange.repeated_members == ("resultCode",)
    assert len(parses) == 2


def test_copies_sent_at_once_come_back_in_order_each_on_its_own_transport() -> None:
    seen: list[Transport] = []

    def call(number: int) -> Any:
        def make(transport: Transport) -> Exchange:
            seen.append(transport)
            return answer({"resultCode": "000000", "resultMsg": str(number)})

        return make

    exchanges = send_at_once(TARGET, [call(number) for number in range(4)])
    assert [e.answer_field("resultMsg") for e in exchanges] == ["0", "1", "2", "3"]
    assert len({id(transport) for transport in seen}) == 4


def test_copies_are_still_sent_when_the_barrier_breaks() -> None:
    impatient = Target(url=TARGET.url, access_key=ACCESS_KEY, protocol="v2", timeout=0.05)
    started = time.perf_counter()

    def slow_to_line_up(transport: Transport) -> Exchange:
        return answer({"resultCode": "000000", "resultMsg": "late"})

    calls = [slow_to_line_up] * 3
    # more copies than workers can never all line up: the barrier times out and breaks
    import simulator.transport as transport

    original = transport.ThreadPoolExecutor
    try:
        transport.ThreadPoolExecutor = lambda max_workers: original(max_workers=1)  # type: ignore[assignment,misc]
        exchanges = send_at_once(impatient, calls)
    finally:
        transport.ThreadPoolExecutor = original  # type: ignore[misc]
    assert [e.answer_field("resultMsg") for e in exchanges] == ["late"] * 3
    assert time.perf_counter() - started < 5


def test_a_success_without_an_instance_id_never_counts_as_one_instance() -> None:
    from simulator.checks import Context
    from simulator.checks.idempotency import _same_instance, answered_ids, succeeded_without

    nameless = [answer({"resultCode": "000000", "resultMsg": "ok"}) for _ in range(3)]
    assert answered_ids(nameless) == [] and succeeded_without(nameless) == [0, 1, 2]
    transport = Transport(TARGET)
    try:
        ctx = Context(TARGET, transport, OrderFactory(0))
        _same_instance(ctx, nameless, "a resend")
    finally:
        transport.close()
    assert [finding.message for finding in ctx.findings] == [
        f"a resend: copy {n} answered 000000 without an instanceId" for n in (1, 2, 3)
    ]
    named = [answer({"resultCode": "000000", "resultMsg": "ok", "instanceId": "i-1"}) for _ in range(2)]
    assert answered_ids([*named, *nameless]) == ["i-1"] and succeeded_without(named) == []


def _play_and_verify(module: Any, check_id: str, steps: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Verify ``check_id`` and play ``steps`` against one faulty merchant of the gallery."""
    from simulator.checks import select
    from simulator.engine.player import Player
    from simulator.engine.run import run_checks
    from simulator.engine.scenario import parse
    from simulator.reference import PRODUCE_PATH, MerchantConfig
    from simulator.serving import BackgroundServer

    config = MerchantConfig(access_key=ACCESS_KEY)
    with BackgroundServer(module.build(config)) as server:
        target = Target(url=server.base_url + PRODUCE_PATH, access_key=ACCESS_KEY, protocol="v2", timeout=5.0)
        (verified,) = run_checks(target, select([check_id])).results
        raw = {"name": "same-bad-answer", "protocol": "v2", "seed": "other-orders", "steps": steps}
        scenario = parse(raw, "inline")  # a seed of its own: not the orders verify just placed
        player = Player(scenario, target)
        try:
            played = player.play()
        finally:
            player.close()
    return verified, played


@pytest.mark.parametrize(
    ("mutant", "check_id", "steps", "verdict"),
    [
        (
            "plaintext_password",
            "security.appinfo-encrypted",
            [{"id": "new", "activity": "newInstance", "expect": {"appinfo_decrypts": True}}],
            Verdict.WARNED,
        ),
        (
            "renewal_resend_rejected",
            "idempotency.refresh-resend",
            [
                {"id": "new", "activity": "newInstance", "expect": {"resultCode": "000000"}},
                {
                    "id": "renew",
                    "activity": "refreshInstance",
                    "of": "new",
                    "fields": {"scene": "RENEWAL"},
                    "repeat": 2,
                    "expect": {"resultCode": "000000"},
                },
            ],
            Verdict.WARNED,
        ),
    ],
)
def test_play_names_the_check_and_verdict_verify_gives_the_same_faulty_merchant(
    mutant: str, check_id: str, steps: list[dict[str, Any]], verdict: Verdict
) -> None:
    import importlib

    module = importlib.import_module(f"mutants.{mutant}")
    verified, played = _play_and_verify(module, check_id, steps)
    assert verified.verdict is verdict
    assert played.failed_checks == [check_id]
    (failed_step,) = [step for step in played.steps if step.failed]
    recorded = step_result(failed_step)
    assert recorded.verdict is verdict and recorded.check.severity is verified.check.severity


def test_the_server_judges_with_registered_checks_only() -> None:
    from simulator.server import calls, notify

    bad = answer({"resultCode": "000000"}, content_type="text/plain")
    found = calls.verdicts(bad, TARGET, ["$.orderId: required member 'orderId' is missing"])
    assert all(check is REGISTRY[check.id] for check, _ in found)
    broken = {check.id: problems for check, problems in found if problems}
    assert broken["lifecycle.invalid-parameters"] == [
        "accepted a call that breaks its contract ($.orderId: required member 'orderId' is missing); "
        "§6 asks for 000002"
    ]
    assert (
        notify.ACCEPTED is REGISTRY["notification.accepted"]
        and notify.TOKEN is REGISTRY["notification.token"]
    )
    verify_runs = {check.id for check in catalog()}
    assert "notification.accepted" not in verify_runs and "notification.token" not in verify_runs
    assert notify.ACCEPTED.judge(bad, TARGET) == "; ".join(
        f"{breach.check_id}: {breach.message}" for breach in judge_exchange(bad, TARGET)
    )
