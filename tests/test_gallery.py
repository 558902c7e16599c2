"""The faulty-merchant gallery (``tests/mutants/``): each check catches the defect it exists for,
and the reference merchant, run through the whole catalog, sets off none of them.

Every mutant is served on its own ephemeral port and judged by only the checks it needs (its
expected check, the active checks that feed a per-exchange one, and a few neighbours that must
stay green), which keeps the file fast; the reference merchant gets the full catalog, v2 and v1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from mutants import GALLERY, Mutant
from mutants import v2_signature_ignored as cli_mutant

from simulator.checks import Verdict, select
from simulator.cli import main
from simulator.engine.run import CheckResult, Run, run_checks
from simulator.protocol.profiles import DEFAULT_PROFILE, Profile
from simulator.reference import (
    PRODUCE_PATH,
    MerchantConfig,
    create_app,
    generate_rsa_private_key,
    public_key_pem,
)
from simulator.server.market import MarketServer
from simulator.serving import BackgroundServer
from simulator.transport import Target

ACCESS_KEY = "koosim-gallery-access-key"
SYNC_KEY = "koosim-gallery-sync-key"
MARKET_AK, MARKET_SK = "koosim-gallery-market-ak", "koosim-gallery-market-sk"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "mutants.md"


@pytest.fixture(scope="module")
def rsa_private_key() -> bytes:
    return generate_rsa_private_key()  # one key for the module: generating 2048-bit keys is slow


@pytest.fixture
def config(rsa_private_key: bytes) -> MerchantConfig:
    """Keys of our own rather than the demo ones: nothing may work only by the defaults."""
    return MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY, rsa_private_key=rsa_private_key)


def profile_for(patterns: list[str], billing: str | None = None) -> Profile:
    """The product profile under which every selected check applies (docs/protocol.md §1.2):
    Kit checks need a joint-operation SaaS product, License checks a License product."""
    needs = {need for check in select(patterns) if not check.per_exchange for need in check.needs}
    billed = {} if billing is None else {"billing": billing}
    if "getLicenseAsync" in needs:  # declared by the product (A41)
        return Profile(product="license", license_call="getLicenseAsync", **billed)
    if "license" in needs:
        return Profile(product="license", **billed)
    if "instanceStatus" in needs:  # V1 pay-per-use (§1.2)
        return Profile(product="saas", billing="on-demand")
    return Profile(product="saas-kit" if "kit" in needs else "saas", **billed)


@contextmanager
def open_api(
    config: MerchantConfig, billing: str = "period"
) -> Iterator[tuple[MarketServer, MerchantConfig]]:
    """koosim's open API for one run, and ``config`` pointed at it (``koosim merchant --market-url``)."""
    with MarketServer(market_ak=MARKET_AK, market_sk=MARKET_SK, billing=billing) as market:
        market.usage_key = config.access_key
        yield market, replace(config, market_url=market.base_url, market_ak=MARKET_AK, market_sk=MARKET_SK)


def target(
    server: BackgroundServer,
    config: MerchantConfig,
    protocol: str,
    timeout: float,
    profile: Profile = DEFAULT_PROFILE,
) -> Target:
    return Target(
        profile=profile,
        url=server.base_url + PRODUCE_PATH,
        access_key=config.access_key,
        protocol=protocol,
        sync_key=config.sync_key,
        rsa_public_key=public_key_pem(config.rsa_private_key),
        timeout=timeout,
    )


def run_against(
    app: Flask,
    config: MerchantConfig,
    protocol: str,
    patterns: list[str],
    timeout: float = 5.0,
    market: MarketServer | None = None,
    billing: str | None = None,
) -> Run:
    with BackgroundServer(app) as server:
        profile = profile_for(patterns, billing)
        inbound = None if market is None else market.log
        return run_checks(
            target(server, config, protocol, timeout, profile), select(patterns), inbound=inbound
        )


def summary(result: CheckResult) -> str:
    findings = "\n".join(f"    - {finding.message}" for finding in result.findings)
    return f"{result.check.id}: {result.verdict} ({result.evidence})\n{findings}"


def _param(mutant: Mutant) -> object:
    """A known check bug or gap is an expected failure, strict: the day it is fixed, this says so."""
    marks = (
        []
        if mutant.xfail is None
        else [pytest.mark.xfail(strict=True, raises=AssertionError, reason=mutant.xfail)]
    )
    return pytest.param(mutant, id=mutant.name, marks=marks)


@pytest.mark.parametrize("mutant", [_param(mutant) for mutant in GALLERY])
def test_the_check_catches_the_mutant(mutant: Mutant, config: MerchantConfig) -> None:
    with ExitStack() as stack:
        market = None
        if mutant.market:
            market, config = stack.enter_context(open_api(config, mutant.billing or "period"))
        app = mutant.build(config)
        run = run_against(
            app, config, mutant.protocol, mutant.selection, mutant.timeout, market, mutant.billing
        )
    results = {result.check.id: result for result in run.results}
    caught = results[mutant.catches]
    assert caught.verdict is mutant.verdict, summary(caught)
    assert any(mutant.evidence in finding.message for finding in caught.findings), summary(caught)
    for control in mutant.controls:
        assert results[control].verdict is Verdict.PASSED, f"a neighbour fired: {summary(results[control])}"


@pytest.mark.parametrize("product", ["saas-kit", "license"])
@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_the_reference_merchant_passes_every_check(
    protocol: str, product: str, config: MerchantConfig
) -> None:
    profile = Profile(product=product)
    with open_api(config) as (market, _), BackgroundServer(create_app(config)) as server:
        # the open API runs, as in every command; this merchant is not told about it
        run = run_checks(target(server, config, protocol, 5.0, profile), select([]), inbound=market.log)
    alarms = [summary(r) for r in run.results if r.verdict in (Verdict.FAILED, Verdict.WARNED)]
    assert not alarms, "\n".join(alarms)
    # Only the other generation's and the other products' checks may skip (§1.2): under
    # saas-kit the sync and applicationSync checks really ran. This merchant never calls the
    # open API, so conversation.query-order has nothing to judge: a skip (review 2, 2.1).
    skipped = [r for r in run.results if r.verdict is Verdict.SKIPPED]
    allowed = ("applies to", "no exchange to judge", "the merchant made no Querying-an-Order call")
    assert {r.check.id: r.verdict for r in run.results}["conversation.query-order"] is Verdict.SKIPPED
    expected = [
        r
        for r in skipped
        if (r.skip_reason or "").startswith(allowed) or str(profile) in (r.skip_reason or "")
    ]
    assert skipped == expected, [summary(r) for r in skipped]
    ran = {r.check.id for r in run.results if r.verdict is Verdict.PASSED}
    if product == "saas-kit" and protocol == "v2":
        assert {"sync.directory", "sync.application-secret", "security.sync-signature-wrong"} <= ran
    if product == "license":  # both forms of the License page (§6.1, A56)
        assert {"lifecycle.license", "idempotency.license-resend"} <= ran


@pytest.mark.parametrize(
    ("product", "billing"), [("saas-kit", "period"), ("saas", "on-demand"), ("saas", "one-time")]
)
@pytest.mark.parametrize("protocol", ["v2", "v1"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_reference_merchant_asking_querying_an_order_passes_every_check(
    protocol: str, product: str, billing: str, asynchronous: bool, config: MerchantConfig
) -> None:
    """Issue 16's done-when: a merchant that takes the order from Querying an Order (and fails
    without it) passes the whole catalog, the open-API checks included, in every profile."""
    with open_api(config, billing) as (market, talking):
        talking.async_provisioning = asynchronous
        with BackgroundServer(create_app(talking)) as server:
            profile = Profile(product=product, billing=billing)
            run = run_checks(target(server, talking, protocol, 5.0, profile), select([]), inbound=market.log)
    alarms = [summary(r) for r in run.results if r.verdict in (Verdict.FAILED, Verdict.WARNED)]
    assert not alarms, "\n".join(alarms)
    ran = {r.check.id for r in run.results if r.verdict is Verdict.PASSED}
    assert "conversation.query-order" in ran
    assert ("conversation.usage-push" in ran) is (billing == "on-demand")
    queried = [call for call in run.inbound if call.api == "queryOrder"]
    assert queried and all(call.accepted for call in queried)
    if billing == "on-demand":
        pushed = [call for call in run.inbound if call.api == "usagePush"]
        assert pushed and all(call.accepted for call in pushed)


def test_the_reference_merchant_fails_without_the_open_api(config: MerchantConfig) -> None:
    """The merchant really depends on Querying an Order: pointed at nothing, it provisions nothing."""
    unreachable = replace(config, market_url="http://127.0.0.1:9", market_ak=MARKET_AK, market_sk=MARKET_SK)
    run = run_against(create_app(unreachable), unreachable, "v2", ["lifecycle.test-order"])
    (result,) = run.results
    assert result.verdict is Verdict.FAILED
    assert "000005" in result.evidence


def test_koosim_verify_names_the_failing_check_and_how_to_reproduce_it(
    config: MerchantConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutant = cli_mutant.MUTANT
    env = {"KOOSIM_ACCESS_KEY": config.access_key, "COLUMNS": "200"}
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # no koosim.toml of the working directory, history in tmp_path
    with BackgroundServer(mutant.build(config)) as server:
        url = server.base_url + PRODUCE_PATH
        result = runner.invoke(main, ["verify", "--url", url, "--checks", mutant.catches], env=env)
    assert result.exit_code == 1, result.output
    assert mutant.catches in result.output
    assert f"reproduce: koosim verify --url {url} --checks {mutant.catches}" in result.output
    assert config.access_key not in result.output


def test_the_docs_list_every_mutant() -> None:
    table = DOCS.read_text(encoding="utf-8")
    for mutant in GALLERY:
        assert f"`{mutant.name}`" in table, f"docs/mutants.md does not list {mutant.name}"
        assert f"`{mutant.catches}`" in table


def test_a_verify_run_started_from_serve_judges_the_merchants_calls_to_its_open_api(
    config: MerchantConfig, tmp_path: Path
) -> None:
    """``koosim serve`` is the merchant's marketplace too: a run started from its console hears the
    Querying-an-Order calls the merchant makes to it, so the wrongly signed ones fail the run."""
    from time import monotonic, sleep

    from conftest import no_server_errors
    from mutants import query_order_signed_wrongly

    from simulator.server import create_app as create_server
    from simulator.server import token
    from simulator.store import Store

    with (
        no_server_errors(create_server(Store(tmp_path / "koosim.db"))) as app,
        BackgroundServer(app) as koosim,
    ):
        talking = replace(config, market_url=koosim.base_url, market_ak=MARKET_AK, market_sk=MARKET_SK)
        with BackgroundServer(query_order_signed_wrongly.build(talking)) as merchant:
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token(app)}"
            target = {
                "url": merchant.base_url + PRODUCE_PATH,
                "access_key": config.access_key,
                "market_ak": MARKET_AK,
                "market_sk": MARKET_SK,
                "timeout": 5,
            }
            assert client.put("/api/target", json=target).status_code == 200
            started = client.post("/api/runs", json={"checks": ["conversation.query-order"]})
            assert started.status_code == 202, started.json
            deadline = monotonic() + 60
            while (record := client.get(started.json["url"]).json)["status"] == "running":
                assert monotonic() < deadline, "the run did not finish"
                sleep(0.05)
    assert record["status"] == "finished" and len(record["checks"]) == 1, record
    (result,) = record["checks"]
    assert result["verdict"] == "failed", record
    assert any("not authenticated" in finding["message"] for finding in result["findings"]), result
