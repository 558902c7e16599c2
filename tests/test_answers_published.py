"""How koosim judges answers, as the pages publish them (issue 17 items 4 and 6).

Every check's ``rule`` names a section of docs/protocol.md; a check resting on an ASSUMPTION
(U-number) is a warning; answers are judged as §3 and §10.4 say (5 s, optional resultMsg, the
console's mandatory members, case-insensitive header names but for Body-Sign's exact case); and
findings cannot hide each other (K34), tried against small merchants on ephemeral ports.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from simulator.checks import REGISTRY, Severity, Verdict, select
from simulator.checks.answers import judge_exchange
from simulator.checks.security import body_sign_problem
from simulator.engine.run import deadline_note, run_checks
from simulator.protocol import sign_body
from simulator.serving import BackgroundServer
from simulator.transport import DEFAULT_TIMEOUT, Exchange, Target

SPEC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
KEY = "answers-published-key"


def _sections() -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", SPEC.read_text(encoding="utf-8"), re.M))


def test_every_rule_names_a_section_of_the_spec() -> None:
    sections = _sections()
    for check in REGISTRY.values():
        first = check.rule.split(",")[0].strip()
        assert first.startswith("§") and first[1:] in sections, f"{check.id}: rule {check.rule!r}"


def test_a_check_resting_on_an_assumption_is_a_warning() -> None:
    for check in REGISTRY.values():
        if re.search(r"\bU\d+\b", check.rule):
            assert check.severity is Severity.WARNING, f"{check.id} cites {check.rule} at {check.severity}"


def test_the_deadline_is_the_published_five_seconds() -> None:
    assert DEFAULT_TIMEOUT == 5.0
    assert Target(url="http://x", access_key="k").timeout == 5.0
    assert "§3.3" in deadline_note(5.0) and "[S24]" in deadline_note(5.0)
    assert "--timeout" in deadline_note(8.0)


def answer(
    body: Any, activity: str = "newInstance", headers: dict[str, str] | None = None, elapsed: float = 0.01
) -> Exchange:
    payload = json.dumps(body).encode()
    return Exchange(
        interface="produce",
        protocol="v2",
        activity=activity,
        method="POST",
        url="http://merchant/produceAPI",
        fields={"activity": activity},
        request_headers={},
        request_body=b"{}",
        started_at=0.0,
        status=200,
        response_headers={"Content-Type": "application/json"} if headers is None else headers,
        response_body=payload,
        elapsed=elapsed,
    )


TARGET = Target(url="http://merchant/produceAPI", access_key=KEY)
SUCCESS = {
    "resultCode": "000000",
    "instanceId": "i-1",
    "appInfo": {"frontEndUrl": "https://saas.example/i-1"},
}


def breaches(exchange: Exchange) -> dict[str, str]:
    return {b.check_id: b.message for b in judge_exchange(exchange, TARGET)}


def test_a_page_shaped_answer_passes_without_result_msg() -> None:
    assert breaches(answer(SUCCESS)) == {}


def test_result_msg_is_at_most_255_characters() -> None:
    found = breaches(answer({**SUCCESS, "resultMsg": "x" * 256}))
    assert "at most 255" in found["contract.result-msg"]
    assert "contract.result-msg" not in breaches(answer({**SUCCESS, "resultMsg": "x" * 255}))


@pytest.mark.parametrize(
    ("body", "activity", "problem"),
    [
        ({"resultCode": "000000", "instanceId": "i-1"}, "newInstance", "must carry appInfo.frontEndUrl"),
        (
            {"resultCode": "000000", "appInfo": {"frontEndUrl": "https://x"}},
            "newInstance",
            "must carry instanceId",
        ),
        ({**SUCCESS, "appInfo": {"frontEndUrl": "https://x/" + "a" * 510}}, "newInstance", "at most 512"),
        ({"resultCode": "000000", "info": [{"appInfo": {}}]}, "queryInstance", "carries no instanceId"),
        (
            {"resultCode": "000000", "info": [{"instanceId": "i-1", "usageInfo": {"usageValue": "1"}}]},
            "queryInstance",
            "without statisticalTime",
        ),
    ],
)
def test_the_console_members_are_required_on_success(
    body: dict[str, Any], activity: str, problem: str
) -> None:
    assert problem in breaches(answer(body, activity)).get("contract.console-members", "")


def test_a_refusal_needs_no_console_members() -> None:
    assert "contract.console-members" not in breaches(answer({"resultCode": "000002"}))


def test_header_names_are_case_insensitive() -> None:
    found = breaches(answer(SUCCESS, headers={"content-type": "application/json; charset=utf-8"}))
    assert "contract.http-200-json" not in found


def test_body_sign_in_another_case_has_its_own_finding() -> None:
    exchange = answer(SUCCESS)
    signature = sign_body(exchange.response_body, KEY)
    exchange.response_headers = {"Content-Type": "application/json", "body-sign": signature}
    assert body_sign_problem(exchange, KEY) == (
        "sent as body-sign; the marketplace's debugging requires the exact case Body-Sign"
    )
    exchange.response_headers = {"Content-Type": "application/json", "Body-Sign": signature}
    assert body_sign_problem(exchange, KEY) is None
    unquoted = signature.replace('"', "")
    exchange.response_headers = {"Content-Type": "application/json", "Body-Sign": unquoted}
    assert "quotes required" in (body_sign_problem(exchange, KEY) or "")


def test_an_answer_after_five_seconds_is_late_even_when_koosim_waited_longer() -> None:
    found = {b.check_id: b.message for b in judge_exchange(answer(SUCCESS, elapsed=6.0), TARGET)}
    assert "the marketplace waits 5 s" in found["timing.deadline"]


# --- findings that cannot hide each other (K34), against real servers ----------------------------


def merchant(handle: Any, *, sign: bool = False) -> Flask:
    """A v2 merchant that trusts every call and answers ``handle(body)`` (a dict)."""
    app = Flask("k34")

    @app.post("/produceAPI")
    def produce() -> Response:
        payload = json.dumps(handle(json.loads(request.get_data()))).encode()
        response = Response(payload, mimetype="application/json")
        if sign:
            response.headers["Body-Sign"] = sign_body(payload, KEY)
        return response

    return app


def run(app: Flask, *patterns: str) -> dict[str, Any]:
    with BackgroundServer(app) as server:
        result = run_checks(
            Target(url=server.base_url + "/produceAPI", access_key=KEY), select(list(patterns))
        )
    return {r.check.id: r for r in result.results}


def test_different_instance_ids_are_reported_before_a_failing_follow_up_query() -> None:
    counter = iter(range(10_000))

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        if body["activity"] == "queryInstance":
            return {"resultCode": "000005", "resultMsg": "query is down"}
        return {**SUCCESS, "instanceId": f"i-{next(counter)}"}

    result = run(merchant(handle), "idempotency.new-instance-resend")["idempotency.new-instance-resend"]
    messages = [f.message for f in result.findings]
    assert result.verdict is Verdict.FAILED
    assert any("got 4 different instanceIds" in m for m in messages), messages
    assert any("queryInstance of the instances just created must succeed" in m for m in messages), messages


def test_copies_answering_success_without_an_instance_id_are_not_one_instance() -> None:
    results = run(merchant(lambda body: {"resultCode": "000000"}), "idempotency.new-instance-concurrent")
    result = results["idempotency.new-instance-concurrent"]
    assert result.verdict is Verdict.WARNED  # concurrent copies are U44
    assert sum("without an instanceId" in f.message for f in result.findings) == 5


def test_a_failed_prerequisite_is_named_as_such() -> None:
    def handle(body: dict[str, Any]) -> dict[str, Any]:
        return {"resultCode": "000005", "resultMsg": "down"}

    result = run(merchant(handle), "lifecycle.unsubscribe-renewal")["lifecycle.unsubscribe-renewal"]
    assert result.findings[0].message.startswith("prerequisite newInstance failed: ")


def test_a_refusal_with_another_code_is_only_a_warning() -> None:
    started = time.time()

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        return {"resultCode": "000005", "resultMsg": "refused"}  # refuses everything, never 000001

    result = run(merchant(handle), "security.v2-signature-wrong")["security.v2-signature-wrong"]
    assert result.verdict is Verdict.WARNED and "ASSUMPTION U2" in result.findings[0].message
    assert time.time() - started < 30


def test_accepting_a_wrong_signature_fails() -> None:
    result = run(merchant(lambda body: SUCCESS), "security.v2-signature-wrong")["security.v2-signature-wrong"]
    assert result.verdict is Verdict.FAILED


def test_v2_body_sign_missing_warns_and_a_wrong_one_fails() -> None:
    unsigned = run(merchant(lambda body: SUCCESS), "security.v2-body-sign")["security.v2-body-sign"]
    assert unsigned.verdict is Verdict.WARNED and "A8" in unsigned.findings[0].message

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        return SUCCESS if body["activity"] == "newInstance" else {"resultCode": "000000", "info": []}

    signed = run(merchant(handle, sign=True), "security.v2-body-sign")["security.v2-body-sign"]
    assert signed.verdict is Verdict.PASSED

    app = merchant(handle, sign=True)

    @app.after_request
    def wrong(response: Response) -> Response:
        response.headers["Body-Sign"] = sign_body(b"other bytes", KEY)
        return response

    wrongly = run(app, "security.v2-body-sign")["security.v2-body-sign"]
    assert wrongly.verdict is Verdict.FAILED


def test_a_query_answer_without_info_is_valid() -> None:
    """info is O in §4.5's answer table: a success that lists nothing is a valid answer."""
    assert breaches(answer({"resultCode": "000000"}, "queryInstance")) == {}
