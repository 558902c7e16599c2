"""The conversation checks (simulator/checks/conversation.py), the reference merchant that talks
back (reference/conversation.py, reference/market.py) and ``koosim verify --debug-orders``."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from conftest import Serve
from mutants.base import MERCHANT, refuse_calls

from simulator.checks import Context, Verdict, catalog, select
from simulator.checks.conversation import usage_problems
from simulator.checks.polling import Polling, poll_until_listed
from simulator.cli import main
from simulator.engine.explore import Exploration
from simulator.engine.run import run_checks
from simulator.model import OrderFactory
from simulator.openapi import InboundCall
from simulator.protocol import apig
from simulator.protocol.profiles import Profile
from simulator.protocol.usage_signature import BodyForm, UsageReason, UsageRefusal, UsageSigned
from simulator.reference import MerchantConfig, create_app
from simulator.reference.market import QUERY_ORDER_PATH, MarketClient
from simulator.server.market import MarketServer
from simulator.transport import Target, Transport

ACCESS_KEY = "koosim-conversation-access-key"
SYNC_KEY = "koosim-conversation-sync-key"


def _config(**overrides: object) -> MerchantConfig:
    return MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY, **overrides)  # type: ignore[arg-type]


def _target(url: str, **overrides: object) -> Target:
    return Target(url=url, access_key=ACCESS_KEY, sync_key=SYNC_KEY, **overrides)  # type: ignore[arg-type]


def _alarms(url: str, patterns: list[str], **target: object) -> list[str]:
    run = run_checks(_target(url, **target), select(patterns))
    return [
        f"{r.check.id}: {r.verdict} {r.evidence}"
        for r in run.results
        if r.verdict in (Verdict.FAILED, Verdict.WARNED)
    ]


# --- polling (§10.2, U43) ------------------------------------------------------------------------


def test_polling_waits_for_an_asynchronously_provisioned_instance(serve: Serve) -> None:
    url = serve(create_app(_config(async_provisioning=True)))
    target = _target(url)
    transport = Transport(target)
    ctx = Context(target, transport, OrderFactory(1))
    waited: list[float] = []
    try:
        created = ctx.new_instance()
        polls = poll_until_listed(
            ctx, [created.instance_id], polling=Polling(timedelta(minutes=5), 4), sleep=waited.append
        )
    finally:
        transport.close()
    assert len(polls) == 2  # the first poll: not ready yet; the second lists it
    assert polls[0].result_code == "000000" and polls[0].answer_field("info") == []
    assert [item["instanceId"] for item in polls[1].answer_field("info")] == [created.instance_id]
    assert waited == [timedelta(minutes=5)]


def test_polling_gives_up_after_the_schedule(serve: Serve) -> None:
    from mutants import pending_forever

    url = serve(pending_forever.build(_config()))
    target = _target(url)
    transport = Transport(target)
    ctx = Context(target, transport, OrderFactory(2))
    waited: list[float] = []
    try:
        created = ctx.new_instance()
        polls = poll_until_listed(
            ctx, [created.instance_id], polling=Polling(timedelta(minutes=2), 3), sleep=waited.append
        )
    finally:
        transport.close()
    assert len(polls) == 3 and waited == [timedelta(minutes=2)] * 2
    assert all(poll.answer_field("info") == [] for poll in polls)


@pytest.mark.parametrize("product", ["saas-kit", "license"])
@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_an_asynchronously_provisioning_reference_merchant_passes_every_check(
    serve: Serve, protocol: str, product: str
) -> None:
    """§4.1-c asks for asynchronous provisioning: no check may fail a merchant for doing it."""
    config = _config(async_provisioning=True)
    url = serve(create_app(config))
    from simulator.reference import public_key_pem

    alarms = _alarms(
        url,
        [],
        protocol=protocol,
        profile=Profile(product=product),
        rsa_public_key=public_key_pem(config.rsa_private_key),
    )
    assert not alarms, "\n".join(alarms)


# --- "View Resource Details" (§5.1, §4.5, A23) -----------------------------------------------------


def test_the_v2_recall_of_a_changed_instance_is_only_a_warning(serve: Serve) -> None:
    """On V2 the newInstance re-call is ASSUMPTION U13: the same defect that fails V1 warns."""
    from mutants import recall_changes_instance_id

    url = serve(recall_changes_instance_id.build(_config()))
    run = run_checks(_target(url), select(["conversation.resource-details"]))
    (result,) = run.results
    assert result.verdict is Verdict.WARNED, result.evidence
    assert "ASSUMPTION U13" in result.findings[0].message


# --- the debug orders (§8.2, §10.4) --------------------------------------------------------------


def test_the_debug_order_replay_runs_only_when_asked_for() -> None:
    assert "conversation.debug-orders" not in {check.id for check in catalog()}
    assert "conversation.debug-orders" not in {check.id for check in select(["conversation.*"])}
    assert [check.id for check in select(["conversation.debug-orders"])] == ["conversation.debug-orders"]


def test_verify_debug_orders_replays_the_console_cases(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = serve(create_app(_config()))
    env = {"KOOSIM_ACCESS_KEY": ACCESS_KEY, "COLUMNS": "200"}
    result = CliRunner().invoke(main, ["verify", "--url", url, "--debug-orders"], env=env)
    assert result.exit_code == 0, result.output
    assert "conversation.debug-orders" in result.output
    assert "contract.response-schema" in result.output
    assert "lifecycle.full" not in result.output  # the replay, not the catalog


def test_verify_debug_orders_takes_no_check_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["verify", "--debug-orders", "--checks", "lifecycle.*"])
    assert result.exit_code == 2
    assert "leave out --checks" in result.output


def test_a_merchant_refusing_the_mock_orders_fails_the_debug_cases(serve: Serve) -> None:
    app = create_app(_config())
    refuse_calls(
        app,
        "produce.produce_v2",
        lambda fields: "unknown order" if str(fields.get("orderId", "")).startswith("MOCK") else None,
    )
    run = run_checks(_target(serve(app)), select(["conversation.debug-orders"]))
    (result,) = run.results
    assert result.verdict is Verdict.FAILED
    assert "MOCKPERIODYEARNEW" in result.findings[0].message
    # another billing mode's MOCK order refused: a warning only (U31)
    assert any(f.severity is not None and "MOCKONETIMENEW" in f.message for f in result.findings)


# --- the reference merchant's command line -------------------------------------------------------


def test_merchant_market_url_needs_the_open_api_keys() -> None:
    result = CliRunner().invoke(main, ["merchant", "--market-url", "http://127.0.0.1:9/"])
    assert result.exit_code == 2
    assert "KOOSIM_MARKET_AK" in result.output


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://h:99999", "http://u:p@h", "http://h/?q=1"])
def test_merchant_market_url_must_be_a_base_url(url: str) -> None:
    env = {"KOOSIM_MARKET_AK": "ak", "KOOSIM_MARKET_SK": "sk"}
    result = CliRunner().invoke(main, ["merchant", "--market-url", url], env=env)
    assert result.exit_code == 2, result.output
    assert "--market-url" in result.output
    assert "Traceback" not in result.output


# --- with koosim's open API ------------------------------------------------------------------------

MARKET_AK, MARKET_SK = "koosim-conversation-market-ak", "koosim-conversation-market-sk"


def _talking(market: MarketServer, **overrides: object) -> MerchantConfig:
    market.usage_key = ACCESS_KEY
    return _config(market_url=market.base_url, market_ak=MARKET_AK, market_sk=MARKET_SK, **overrides)


def test_the_debug_cases_ask_querying_an_order_for_the_mock_orders(serve: Serve) -> None:
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK) as market:
        url = serve(create_app(_talking(market)))
        run = run_checks(_target(url), select(["conversation.debug-orders"]), inbound=market.log)
    (result,) = run.results
    assert result.verdict is Verdict.PASSED, result.evidence
    asked = {call.fields.get("orderId") for call in run.inbound if call.api == "queryOrder"}
    assert {"MOCKPERIODYEARNEW", "MOCKONDEMAND", "MOCKMONTYCHANGE"} <= asked
    assert all(call.accepted for call in run.inbound)


def test_a_merchant_without_the_open_api_keys_fails_query_order(serve: Serve) -> None:
    """Wrong AK/SK: the gateway refuses (APIGW.0303, §2.5) and conversation.query-order says so."""
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK) as market:
        config = replace(_talking(market), market_sk="not-the-secret-key")
        url = serve(create_app(config))
        run = run_checks(_target(url), select(["conversation.query-order"]), inbound=market.log)
    (result,) = run.results
    assert result.verdict is Verdict.FAILED
    assert "APIGW.0303" in result.findings[0].message
    assert "not-the-secret-key" not in result.findings[0].message


def test_explore_finds_usage_pushed_for_an_unknown_instance(serve: Serve) -> None:
    from mutants import usage_for_unknown_instance

    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing="on-demand") as market:
        url = serve(usage_for_unknown_instance.build(_talking(market)))
        target = _target(url, profile=Profile(billing="on-demand"))
        explore = Exploration(target, seed=1, max_examples=20, database_dir=None, inbound=market.log)
        assert explore.run() is None  # an unknown instance is a warning: not hunted by default
        found = Exploration(
            target, seed=1, max_examples=20, database_dir=None, inbound=market.log, hunt_warnings=True
        ).run()
    assert found is not None
    assert found.check_id == "conversation.usage-push"
    assert "not an instance created in this run" in found.message
    assert len(found.scenario.steps) == 1  # the first order shows it


def test_explore_finds_nothing_wrong_with_the_talking_reference_merchant(serve: Serve) -> None:
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing="on-demand") as market:
        url = serve(create_app(_talking(market, async_provisioning=True)))
        target = _target(url, profile=Profile(billing="on-demand"))
        found = Exploration(target, seed=2, max_examples=25, database_dir=None, inbound=market.log).run()
    assert found is None, found and found.message
    assert market.log.calls(), "the merchant asked nothing"


def test_the_console_replays_the_debug_cases(serve: Serve, tmp_path: Path) -> None:
    """The runs page's 接口调试 button posts the same selection as ``verify --debug-orders``."""
    import time

    from conftest import no_server_errors

    from simulator.server import create_app as create_server
    from simulator.server import token as server_token
    from simulator.store import Store

    url = serve(create_app(_config()))
    with no_server_errors(create_server(Store(tmp_path / "koosim.db"))) as app:
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {server_token(app)}"
        assert client.put("/api/target", json={"url": url, "access_key": ACCESS_KEY}).status_code == 200
        page = client.get("/runs").data.decode()
        form = page[page.index('id="debug-orders-form"') :]
        checks = form[form.index('value="') + len('value="') :].split('"', 1)[0]
        assert checks.split()[0] == "conversation.debug-orders"
        response = client.post("/runs", data={"checks": checks})
        assert response.status_code == 302
        run_id = response.headers["Location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 30
        while (record := client.get(f"/api/runs/{run_id}").json)["status"] == "running":
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.05)
    assert record["summary"]["failed"] == 0, record["summary"]
    verdicts = {result["id"]: result["verdict"] for result in record["checks"]}
    assert verdicts["conversation.debug-orders"] == "passed"


def _usage_call(
    code: str, *, gateway: object = None, problems: tuple[str, ...] = (), **fields: object
) -> InboundCall:
    return InboundCall(
        id="c1",
        api="usagePush",
        method="POST",
        url="http://127.0.0.1:1/api/mkp-openapi-public/global/v1/isv/usage-data",
        request_headers={},
        request_body=b"",
        started_at=0.0,
        status=200 if code == "MKT.0000" else 401,
        response_body=b"",
        gateway=gateway,  # type: ignore[arg-type]
        code=code,
        problems=problems,
        fields=dict(fields),
    )


def test_usage_problems_name_unknown_instances_and_keep_assumed_refusals_to_warnings() -> None:
    signed = UsageSigned(BodyForm.SORTED, datetime.now(UTC), skewed=False, replayed=False)
    records = [{"instance_id": "inst-1"}, {"instance_id": "CS-order"}, {"instance_id": "CS-order"}]
    (unknown,) = usage_problems(_usage_call("MKT.0000", gateway=signed, usage_records=records), {"inst-1"})
    assert "'CS-order'" in unknown.message and "not an instance created in this run" in unknown.message
    assert "cannot tell an earlier run's instance from a made-up one" in unknown.message
    assert unknown.assumed  # a real merchant pushes for instances of earlier runs too
    assert (
        usage_problems(_usage_call("MKT.0000", gateway=signed, usage_records=records[:1]), {"inst-1"}) == []
    )
    replayed = _usage_call("MKT.0154", gateway=UsageRefusal(UsageReason.NONCE_REPLAYED))
    assert [problem.assumed for problem in usage_problems(replayed, set())] == [True]  # U36
    wrong = _usage_call("MKT.0154", gateway=UsageRefusal(UsageReason.SIGNATURE_MISMATCH))
    assert [problem.assumed for problem in usage_problems(wrong, set())] == [True]  # A48, U37
    repeated = _usage_call("MKT.0101", gateway=UsageRefusal(UsageReason.HEADER_REPEATED))
    assert [problem.assumed for problem in usage_problems(repeated, set())] == [True]  # no page
    missing = _usage_call("MKT.0101", gateway=UsageRefusal(UsageReason.MISSING_HEADER))
    assert [problem.assumed for problem in usage_problems(missing, set())] == [False]  # §2.6
    # judged by the flag, never by the words in the message
    future = _usage_call("MKT.9004", gateway=signed, problems=("begin_time is in the future",))
    assert [p.assumed for p in usage_problems(dataclasses.replace(future, published=False), set())] == [True]
    stale = _usage_call("MKT.9004", gateway=signed, problems=("an ASSUMPTION in the words only",))
    assert [problem.assumed for problem in usage_problems(stale, set())] == [False]
    other = _usage_call("MKT.0000", gateway=signed, usage_records=records)
    assert usage_problems(dataclasses.replace(other, api="queryOrder"), set()) == []


# --- review 2: skips, published refusals, unknown instances (findings 1.2, 1.4, 2.1, 5.8) ---------


def test_a_merchant_that_never_calls_the_open_api_is_skipped_not_passed(serve: Serve) -> None:
    """Nothing observed is nothing judged: SKIPPED with the reason, never PASSED, never a fault."""
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing="on-demand") as market:
        url = serve(create_app(_config()))  # no market_url: it never calls the marketplace
        target = _target(url, profile=Profile(billing="on-demand"))
        run = run_checks(
            target, select(["conversation.query-order", "conversation.usage-push"]), inbound=market.log
        )
    verdicts = {r.check.id: (r.verdict, r.skip_reason) for r in run.results}
    assert verdicts == {
        "conversation.query-order": (
            Verdict.SKIPPED,
            "the merchant made no Querying-an-Order call during this check: nothing to judge",
        ),
        "conversation.usage-push": (
            Verdict.SKIPPED,
            "the merchant made no usage-push call during this check: nothing to judge",
        ),
    }


def test_a_talking_merchant_still_passes_query_order_and_usage_push(serve: Serve) -> None:
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing="on-demand") as market:
        url = serve(create_app(_talking(market)))
        target = _target(url, profile=Profile(billing="on-demand"))
        run = run_checks(
            target, select(["conversation.query-order", "conversation.usage-push"]), inbound=market.log
        )
    assert {r.check.id: r.verdict for r in run.results} == {
        "conversation.query-order": Verdict.PASSED,
        "conversation.usage-push": Verdict.PASSED,
    }


def _query_call(code: str, *, published: bool, gateway: object = None) -> InboundCall:
    call = _usage_call(code, gateway=gateway, problems=("parameters given more than once: orderId",))
    return dataclasses.replace(call, api="queryOrder", published=published)


@pytest.mark.parametrize(("published", "verdict"), [(True, Verdict.FAILED), (False, Verdict.WARNED)])
def test_query_order_judges_a_refusal_by_its_published_flag(published: bool, verdict: Verdict) -> None:
    from simulator.checks.conversation import _judge_query_order

    signed = UsageSigned(BodyForm.SORTED, datetime.now(UTC), skewed=False, replayed=False)
    findings: list[tuple[str, str]] = []

    class Judge:
        def fail(self, message: str, *evidence: object) -> None:
            findings.append(("failed", message))

        def warn(self, message: str, *evidence: object) -> None:
            findings.append(("warned", message))

    call = _query_call("MKT.0101", published=published, gateway=signed)
    _judge_query_order(Judge(), call, [])  # type: ignore[arg-type]
    assert [kind for kind, _ in findings] == [verdict.value]


def test_usage_reasons_carry_a_published_flag_into_the_verdict() -> None:
    published = {reason for reason in UsageReason if reason.published}
    assert published == {UsageReason.MISSING_HEADER, UsageReason.HEADER_TOO_LONG}
    call = _usage_call("MKT.0154", gateway=UsageRefusal(UsageReason.SIGNATURE_MISMATCH))
    assert call.verdict["published"] is False and call.verdict["gateway"]["published"] is False
    call = _usage_call("MKT.0101", gateway=UsageRefusal(UsageReason.MISSING_HEADER))
    assert call.verdict["published"] is True and call.verdict["gateway"]["published"] is True


def test_a_listener_that_raises_is_logged_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    from simulator.openapi import InboundLog

    log = InboundLog()

    def broken(call: InboundCall) -> None:
        raise RuntimeError("secret-plaintext-in-the-message")

    with log.listen(broken):
        log.add(_usage_call("MKT.0000"))
    assert len(log) == 1
    (entry,) = [r for r in caplog.records if r.name == "simulator.openapi"]
    assert "RuntimeError" in entry.getMessage() and "broken" in entry.getMessage()
    assert "secret-plaintext" not in caplog.text


class _CommaSigner(MarketClient):
    """Signs Querying an Order correctly but writes the Authorization without the space after
    each comma: the gateway's exact-shape rule is ASSUMPTION U40 (apig.Reason.published False)."""

    def query_order(self, order_id: str, order_line_id: str | None = None) -> dict[str, Any]:
        url = f"{self._url(QUERY_ORDER_PATH)}?{urlencode({'orderId': order_id})}"
        signed = apig.sign("GET", url, self.access_key, self.secret_key)
        headers = dict(signed.headers)
        headers["Authorization"] = headers["Authorization"].replace(", ", ",")
        body = self._call("GET", signed.url, headers, b"", "Querying an Order")
        return dict(body["orderInfo"])


@pytest.mark.parametrize(
    ("client", "verdict"),
    [("comma", Verdict.WARNED), ("wrong-sk", Verdict.FAILED)],
)
def test_a_newinstance_refused_after_an_unpublished_gateway_refusal_is_a_u40_warning(
    serve: Serve, client: str, verdict: Verdict
) -> None:
    """Review 2, finding 1.5: order-details and a prerequisite newInstance warn (U40) when the
    gateway refused the merchant's Querying-an-Order call for a reason no page states; a
    published refusal (a wrong SK: SIGNATURE_MISMATCH, §2.5) still fails."""
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing="on-demand") as market:
        app = create_app(_talking(market))
        merchant = app.extensions[MERCHANT]
        assert merchant.market is not None
        if client == "comma":
            merchant.market = _CommaSigner(merchant.market.base_url, MARKET_AK, MARKET_SK, ACCESS_KEY)
        else:
            merchant.market = replace(merchant.market, secret_key="not-the-secret-key")
        url = serve(app)
        target = _target(url, profile=Profile(billing="on-demand"))
        run = run_checks(
            target, select(["conversation.order-details", "conversation.usage-push"]), inbound=market.log
        )
    results = {r.check.id: r for r in run.results}
    for check_id in ("conversation.order-details", "conversation.usage-push"):
        result = results[check_id]
        assert result.verdict is verdict, (check_id, [f.message for f in result.findings])
        assert ("ASSUMPTION U40" in result.findings[0].message) is (verdict is Verdict.WARNED)
