"""The pytest plugin (simulator/pytest_plugin.py), driven through inner pytest sessions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, Response, request
from werkzeug.datastructures import ImmutableMultiDict

from simulator.checks import catalog
from simulator.protocol import ResultCode, sign_v2
from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.reference.produce import read_json_object
from simulator.serving import BackgroundServer

pytest_plugins = ["pytester"]

BROKEN_KEY = "koosim-broken-merchant-access-key-0001"
PRODUCE_V2 = "produce.produce_v2"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner session in this process (hypothesis' plugin, ~1 s of summary per session, off)."""
    return pytester.runpytest_inprocess("-p", "no:hypothesispytest", *args)


def _serve(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run ``app`` on a free port; its produce URL, with KOOSIM_ACCESS_KEY set to its key."""
    monkeypatch.setenv("KOOSIM_ACCESS_KEY", BROKEN_KEY)
    with BackgroundServer(app) as server:
        yield server.base_url + PRODUCE_PATH


def _wrap_produce_v2(
    app: Flask, wrapper: Callable[[Callable[[], Response]], Callable[[], Response]]
) -> Flask:
    app.view_functions[PRODUCE_V2] = wrapper(app.view_functions[PRODUCE_V2])
    return app


@pytest.fixture
def any_signature_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A merchant that accepts any v2 signature, and echoes its access key in every resultMsg."""

    def accept_any_signature(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            body = read_json_object()
            timestamp, nonce = request.args.get("timestamp"), request.args.get("nonce")
            if body is not None and timestamp and nonce:
                # Sign the call correctly before the real view verifies it: any signature passes.
                signature = sign_v2(body, BROKEN_KEY, timestamp, nonce)
                request.args = ImmutableMultiDict({**request.args, "signature": signature})
            response = view()
            answer = json.loads(response.get_data())
            answer["resultMsg"] = f"{answer['resultMsg']} (debug: access key {BROKEN_KEY})"
            response.set_data(json.dumps(answer))
            return response

        return produce_v2

    app = _wrap_produce_v2(create_app(MerchantConfig(access_key=BROKEN_KEY)), accept_any_signature)
    yield from _serve(app, monkeypatch)


@pytest.fixture
def release_twice_refused_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A merchant that answers 000003 to a resent release: a practice, not a doc, rule."""
    released: set[str] = set()

    def refuse_second_release(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            response = view()
            body = read_json_object() or {}
            if body.get("activity") == "releaseInstance":
                instance_id = body.get("instanceId")
                if instance_id in released:
                    refusal = {"resultCode": ResultCode.INSTANCE_NOT_FOUND.value, "resultMsg": "released"}
                    response.set_data(json.dumps(refusal))
                released.add(instance_id)
            return response

        return produce_v2

    app = _wrap_produce_v2(create_app(MerchantConfig(access_key=BROKEN_KEY)), refuse_second_release)
    yield from _serve(app, monkeypatch)


# --- the catalog as items ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_reference_collects_one_item_per_check_and_none_fails(
    pytester: pytest.Pytester, protocol: str
) -> None:
    result = _run(pytester, "--koosim-url", "reference", "--koosim-protocol", protocol, "-v")

    checks = catalog()
    for check in checks:
        result.stdout.fnmatch_lines([f"koosim::{check.id} [PS]*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == len(checks)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["koosim: checks against the bundled reference merchant*"])


def test_keyword_selects_checks_by_id(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--koosim-url", "reference", "-k", "v2-signature", "--collect-only", "-q")

    expected = sorted(f"koosim::{c.id}" for c in catalog() if "v2-signature" in c.id)
    assert len(expected) == 2
    assert sorted(line for line in result.outlines if line.startswith("koosim::")) == expected
    result.stdout.fnmatch_lines([f"2/{len(catalog())} tests collected ({len(catalog()) - 2} deselected)*"])


def test_per_exchange_checks_without_active_ones_are_skipped(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--koosim-url", "reference", "-k", "contract or timing", "-rs")

    per_exchange = [c for c in catalog() if c.per_exchange]
    result.assert_outcomes(skipped=len(per_exchange), deselected=len(catalog()) - len(per_exchange))
    result.stdout.fnmatch_lines(
        ["SKIPPED * koosim::contract.http-200-json: no exchange to judge: select an active check too"]
    )


def test_per_exchange_checks_judge_the_exchanges_of_the_active_ones_before_them(
    pytester: pytest.Pytester,
) -> None:
    result = _run(pytester, "--koosim-url", "reference", "-k", "v2-signature or contract", "-v")

    per_exchange = [c for c in catalog() if c.per_exchange and c.family == "contract"]
    result.assert_outcomes(passed=2 + len(per_exchange), deselected=len(catalog()) - 2 - len(per_exchange))


def test_a_failed_check_fails_its_item_with_the_finding_and_no_key(
    pytester: pytest.Pytester, any_signature_url: str
) -> None:
    result = _run(pytester, "--koosim-url", any_signature_url, "-k", "v2-signature-wrong")

    result.assert_outcomes(failed=1, deselected=len(catalog()) - 1)
    result.stdout.fnmatch_lines(
        [
            "*koosim security.v2-signature-wrong*",
            "a wrong signature must be refused: expected a refusal (000001), got resultCode 000000 (success)",
            "rule: protocol.md §2.1 (error)",
            "*> POST http://127.0.0.1:*/produceAPI?signature=0000*",
            "*< HTTP 200 in *",
            f"reproduce: koosim verify --url {any_signature_url} --checks security.v2-signature-wrong",
            "FAILED koosim::security.v2-signature-wrong - a wrong signature*",
        ]
    )
    output = result.stdout.str() + result.stderr.str()
    assert "debug: access key [redacted]" in output  # the merchant did echo it
    assert BROKEN_KEY not in output


def test_a_warned_check_passes_with_a_warning(
    pytester: pytest.Pytester, release_twice_refused_url: str
) -> None:
    result = _run(pytester, "--koosim-url", release_twice_refused_url, "-k", "release-resend")

    result.assert_outcomes(passed=1, warnings=1, deselected=len(catalog()) - 1)
    result.stdout.fnmatch_lines(
        ["*KoosimWarning: idempotency.release-resend (practice, protocol.md §4.6, U6): releaseInstance*"]
    )


def test_warnings_as_errors_fail_a_warned_check_in_one_line(
    pytester: pytest.Pytester, release_twice_refused_url: str
) -> None:
    strict = "error::simulator.pytest_plugin.KoosimWarning"
    result = _run(pytester, "--koosim-url", release_twice_refused_url, "-k", "release-resend", "-W", strict)

    result.assert_outcomes(failed=1, deselected=len(catalog()) - 1)
    result.stdout.fnmatch_lines(
        ["idempotency.release-resend (practice, protocol.md §4.6, U6): releaseInstance*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_an_unreachable_target_fails_each_item_in_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOOSIM_ACCESS_KEY", BROKEN_KEY)
    with BackgroundServer(create_app()) as server:
        url = server.base_url + PRODUCE_PATH  # a port nothing listens on once the server is closed
    result = _run(pytester, "--koosim-url", url, "-k", "v2-signature")

    result.assert_outcomes(failed=2, deselected=len(catalog()) - 2)
    result.stdout.fnmatch_lines(["koosim: the target could not be reached: cannot connect to 127.0.0.1:*"])
    assert "Traceback" not in result.stdout.str()


def test_a_url_without_an_access_key_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--koosim-url", "http://127.0.0.1:9/produceAPI")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: koosim: --koosim-url needs the merchant's access key: set KOOSIM_ACCESS_KEY*"]
    )


def test_a_bad_setting_is_a_usage_error_naming_its_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOOSIM_PROTOCOL", "v3")
    result = _run(pytester, "--koosim-url", "reference")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: koosim: KOOSIM_PROTOCOL: protocol must be v2 or v1, not 'v3'"])


def test_koosim_url_in_the_environment_does_not_activate_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOOSIM_URL", "http://127.0.0.1:9/produceAPI")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = _run(pytester, "-v")

    result.assert_outcomes(passed=1)
    assert "koosim:" not in result.stdout.str()  # neither the header nor a koosim:: item


# --- inert unless asked ------------------------------------------------------------------------


def test_without_koosim_url_the_plugin_collects_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    recorder = pytester.inline_run("-p", "no:hypothesispytest", "--collect-only")

    (call,) = recorder.getcalls("pytest_collection_modifyitems")
    assert [item.nodeid for item in call.items] == ["test_plain.py::test_plain"]


def test_a_plain_session_imports_nothing_of_the_package_but_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_imports="""
        import sys

        def test_nothing_of_the_simulator_was_imported():
            loaded = sorted(name for name in sys.modules if name.startswith("simulator."))
            assert loaded == ["simulator.pytest_plugin"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


# --- the marketplace fixture ----------------------------------------------------------------------


MERCHANT_TESTS = """
def test_a_resent_order_gets_the_same_instance(marketplace):
    created = marketplace.new_instance()
    assert created.result_code == "000000"
    again = marketplace.resend(created)
    assert again.fields["businessId"] != created.fields["businessId"]
    assert again.answer_field("instanceId") == created.answer_field("instanceId")
    assert marketplace.exchanges == [created, again]


def test_app_info_decrypts(marketplace):
    created = marketplace.new_instance(trial=True)
    app_info = marketplace.app_info(created)
    assert app_info["password"] and app_info["userName"].startswith("admin-")
    assert app_info["password"] != created.answer_field("appInfo")["password"]
    assert "hidden" in repr(app_info["password"])
    assert marketplace.contract_problems(created) == []


def test_the_lifecycle(marketplace):
    created = marketplace.new_instance()
    for step in (marketplace.refresh, marketplace.freeze, marketplace.unfreeze, marketplace.upgrade):
        assert step(created).result_code == "000000"
    listed = marketplace.query(created).answer_field("info")
    assert [item["instanceId"] for item in listed] == [created.answer_field("instanceId")]
    assert marketplace.release(created).result_code == "000000"
    assert marketplace.refresh(created).result_code == "000003"
    assert marketplace.freeze("koosim-no-such-instance").result_code == "000003"


def test_user_sync(marketplace):
    instance_id = marketplace.new_instance().answer_field("instanceId")
    body = {
        "instanceId": instance_id,
        "tenantId": "tenant-1",
        "appId": "app-1",
        "userList": [
            {"userName": "alice", "name": "Alice", "orgCode": "o-1", "role": "user", "enable": "true"}
        ],
        "flag": 1,
    }
    added = marketplace.sync("authSync", body)
    assert added.result_code == "000000"
    assert marketplace.resend(added).result_code == "000000"
"""


@pytest.mark.parametrize("options", [(), ("--koosim-protocol", "v1")], ids=["no option", "v1"])
def test_the_marketplace_fixture_targets_the_reference_merchant_without_options(
    pytester: pytest.Pytester, options: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_merchant=MERCHANT_TESTS)
    # saas-kit: the authSync test needs a joint-operation product (docs/protocol.md §1.2)
    result = _run(pytester, "-rs", "--koosim-product", "saas-kit", *options)

    if options:  # V1 has no updateInstanceStatus (docs/protocol.md §5.1, U21): that test skips
        result.assert_outcomes(passed=3, skipped=1)
        result.stdout.fnmatch_lines(["*updateInstanceStatus: not a V1 activity*"])
    else:
        result.assert_outcomes(passed=4)


def test_the_marketplace_fixture_skips_calls_the_product_profile_does_not_have(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_merchant=MERCHANT_TESTS)
    result = _run(pytester, "-rs")  # the default profile: saas, yearly/monthly, no Kit

    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*Kit sync interfaces: not a joint-operation SaaS product*"])


def test_the_marketplace_fixture_targets_koosim_url(
    pytester: pytest.Pytester, any_signature_url: str
) -> None:
    pytester.makepyfile(
        test_merchant=f"""
        def test_target(marketplace):
            assert marketplace.target.url == {any_signature_url!r}
            created = marketplace.new_instance()
            assert "debug: access key" in created.answer_field("resultMsg")
            assert marketplace.app_info(created)["password"]
        """
    )
    result = _run(pytester, "--koosim-url", any_signature_url, "-k", "test_target")

    result.assert_outcomes(passed=1, deselected=len(catalog()))


def test_app_info_refuses_an_answer_without_app_info(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_merchant="""
        import pytest

        def test_refused(marketplace):
            refused = marketplace.freeze("koosim-no-such-instance")
            with pytest.raises(ValueError, match="no appInfo in the answer"):
                marketplace.app_info(refused)
            with pytest.raises(ValueError, match="carries no instanceId"):
                marketplace.refresh(refused)
        """
    )
    result = _run(pytester)

    result.assert_outcomes(passed=1)


def test_the_marketplace_fixture_serves_the_open_api_and_shows_the_merchants_calls(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import requests

        from simulator.protocol import apig


        def test_market(marketplace):
            assert marketplace.market is not None and marketplace.inbound == []
            created = marketplace.new_instance()
            order_id = created.fields["orderId"]
            path = "/api/mkp-openapi-public/global/v1/order/query"
            url = f"{marketplace.market.base_url}{path}?orderId={order_id}"
            signed = apig.sign("GET", url, "PLUGINTESTAK00000001", "plugin-test-secret-0000001")
            answer = requests.get(signed.url, headers=signed.headers, timeout=10)
            assert answer.json()["orderInfo"]["orderId"] == order_id
            [call] = marketplace.inbound
            assert call.authenticated and call.accepted and call.api == "queryOrder"
        """
    )
    monkeypatch.setenv("KOOSIM_MARKET_AK", "PLUGINTESTAK00000001")
    monkeypatch.setenv("KOOSIM_MARKET_SK", "plugin-test-secret-0000001")
    result = _run(pytester, "-q")
    result.assert_outcomes(passed=1)


def test_the_merchants_calls_to_the_open_api_are_judged(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's open API (KOOSIM_MARKET_PORT) hears the merchant: a Querying-an-Order call
    signed wrongly fails conversation.query-order, as in verify."""
    from mutants import query_order_signed_wrongly
    from shell import free_port

    from simulator.reference import generate_rsa_private_key

    port, ak, sk = free_port(), "plugin-test-market-ak-01", "plugin-test-market-sk-01"
    config = MerchantConfig(
        access_key=BROKEN_KEY,
        sync_key="plugin-test-sync-key-0001",
        rsa_private_key=generate_rsa_private_key(),
        market_url=f"http://127.0.0.1:{port}",
        market_ak=ak,
        market_sk=sk,
    )
    for name, value in {
        "KOOSIM_MARKET_PORT": str(port),
        "KOOSIM_MARKET_AK": ak,
        "KOOSIM_MARKET_SK": sk,
    }.items():
        monkeypatch.setenv(name, value)
    for url in _serve(query_order_signed_wrongly.build(config), monkeypatch):
        result = _run(pytester, "--koosim-url", url, "-k", "conversation.query-order")
    result.assert_outcomes(failed=1, deselected=len(catalog()) - 1)
    result.stdout.fnmatch_lines(["*not authenticated*"])
    assert sk not in result.stdout.str() + result.stderr.str()
