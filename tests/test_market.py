"""The marketplace open API every command serves (server/market.py, server/openapi.py):
Querying an Order and usage push as docs/protocol.md §2.5, §2.6, §8.1-§8.4 publish them, the
inbound calls recorded in the run and its reports, and a fuzz test that no malformed request
gets anything but a JSON answer with a 4xx status (or one of the rows §8.4 prints with 500)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from click.testing import CliRunner
from flask import Flask, request
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main as cli_main
from simulator.contracts import validate
from simulator.model import OrderFactory, watching_orders
from simulator.openapi import MOCK_ORDERS, PREFIX, QUERY_ORDER_PATH, USAGE_PUSH_PATH, OrderBook
from simulator.protocol import apig
from simulator.protocol.mkt import MktCode
from simulator.protocol.usage_signature import sign_usage_push
from simulator.protocol.usage_signature import signature as usage_signature
from simulator.reference import PRODUCE_PATH, MerchantConfig
from simulator.reference import create_app as create_merchant
from simulator.server.market import MarketServer, create_market_app
from simulator.server.openapi import OpenApiService
from simulator.serving import BackgroundServer
from simulator.store import INBOUND, Store

AK, SK = "MARKETTESTAK00000001", "market-test-secret-key-000000001"
USAGE_KEY = "market-test-usage-key-0001"
PUBLISHED_500 = {code.value for code in MktCode if code.status == 500}


@pytest.fixture
def market() -> Iterator[MarketServer]:
    with MarketServer(market_ak=AK, market_sk=SK) as server:
        server.usage_key = USAGE_KEY
        yield server


def signed_get(market: MarketServer, ak: str = AK, sk: str = SK, **params: str) -> requests.Response:
    url = f"{market.base_url}{QUERY_ORDER_PATH}" + (f"?{urlencode(params)}" if params else "")
    signed = apig.sign("GET", url, ak, sk)
    return requests.get(signed.url, headers=signed.headers, timeout=10)


def usage_record(**changes: Any) -> dict[str, Any]:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    record = {
        "instance_id": "inst-001",
        "record_time": hour.strftime("%Y%m%dT%H%M%SZ"),
        "begin_time": (hour - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ"),
        "end_time": hour.strftime("%Y%m%dT%H%M%SZ"),
        "usage_value": "1.5",
        "metering_sn": uuid.uuid4().hex,
    }
    return record | changes


def pushed(market: MarketServer, body: dict[str, Any], key: str = USAGE_KEY) -> requests.Response:
    data, headers = sign_usage_push(key, body)
    return requests.post(
        market.base_url + USAGE_PUSH_PATH,
        data=data,
        headers=headers | {"Content-Type": "application/json"},
        timeout=30,
    )


# --- Querying an Order ---------------------------------------------------------------------------


def test_a_client_signed_with_huaweis_own_signer_is_answered(market: MarketServer) -> None:
    host = market.base_url.removeprefix("http://")
    sdk_request = SdkRequest(
        method="GET",
        schema="http",
        host=host,
        resource_path=QUERY_ORDER_PATH,
        query_params=[("orderId", "MOCKPERIODYEARNEW"), ("orderLineId", "MOCKPERIODYEARNEW-000001")],
        header_params={"Content-Type": "application/json"},
    )
    signed = Signer(BasicCredentials(AK, SK)).sign(sdk_request)
    answer = requests.get(f"{market.base_url}{signed.uri}", headers=signed.header_params, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["resultCode"] == "MKT.0000"
    assert validate(answer.json(), "openapi", "queryOrder", "response") == []
    [call] = market.log.calls()
    assert call.authenticated and call.accepted and call.api == "queryOrder"
    assert call.direction == "merchant → marketplace" and call.fields["orderId"] == "MOCKPERIODYEARNEW"


def test_all_nine_mock_orders_are_answered(market: MarketServer) -> None:
    assert len(MOCK_ORDERS) == 9
    for order_id in MOCK_ORDERS:
        answer = signed_get(market, orderId=order_id)
        assert answer.status_code == 200, answer.text
        info = answer.json()["orderInfo"]
        assert info["orderId"] == order_id and [line["orderLineId"] for line in info["orderLine"]] == [
            f"{order_id}-000001"
        ]
        assert validate(answer.json(), "openapi", "queryOrder", "response") == []


def test_an_unknown_order_is_the_published_validation_code_not_a_404(market: MarketServer) -> None:
    answer = signed_get(market, orderId="CS0000000000NOPE")
    # §8.4 has no "not found" row (U32): MKT.0100 with the HTTP status the table prints (A55)
    assert (answer.status_code, answer.json()["resultCode"]) == (500, "MKT.0100")
    assert "does not exist" in answer.json()["resultMsg"] and "orderInfo" not in answer.json()
    assert validate(answer.json(), "openapi", "queryOrder", "response") == []


def test_wrong_keys_a_stale_date_and_a_malformed_date_are_apigw_0303(market: MarketServer) -> None:
    for ak, sk in ((AK, "wrong-secret-key-000000001"), ("OTHERAK0000000000001", SK)):
        refused = signed_get(market, ak, sk, orderId="MOCKONETIMENEW")
        assert refused.status_code == 401 and refused.json()["error_code"] == "APIGW.0303"
        assert set(refused.json()) == {"error_msg", "error_code", "request_id"}
    url = f"{market.base_url}{QUERY_ORDER_PATH}?orderId=MOCKONETIMENEW"
    stale = apig.sign("GET", url, AK, SK, now=datetime.now(UTC) - timedelta(minutes=15, seconds=30))
    answer = requests.get(stale.url, headers=stale.headers, timeout=10)
    assert answer.status_code == 401 and "15 minutes" in answer.json()["error_msg"]
    fresh = apig.sign("GET", url, AK, SK)
    assert requests.get(fresh.url, headers=fresh.headers, timeout=10).status_code == 200
    again = requests.get(fresh.url, headers=fresh.headers, timeout=10)  # no page names a replay rule (U40)
    assert again.status_code == 200
    malformed = requests.get(
        fresh.url, headers=fresh.headers | {"X-Sdk-Date": "2026-11-30T00:00:00Z"}, timeout=10
    )
    assert malformed.status_code == 401 and "YYYYMMDDTHHMMSSZ" in malformed.json()["error_msg"]
    reasons = [call.gateway.reason.name for call in market.log.calls() if not call.authenticated]  # type: ignore[union-attr]
    assert reasons == [
        "SIGNATURE_MISMATCH",
        "UNKNOWN_ACCESS_KEY",
        "DATE_OUT_OF_WINDOW",
        "MALFORMED_DATE",
    ]


def test_without_keys_every_query_is_refused_and_the_header_says_so() -> None:
    with MarketServer() as market:
        assert "every call is refused with APIGW.0303" in market.header()
        assert signed_get(market, orderId="MOCKPERIODYEARNEW").json()["error_code"] == "APIGW.0303"


def test_an_order_sold_in_the_run_is_answered_as_it_was_sold() -> None:
    with MarketServer(market_ak=AK, market_sk=SK, billing="one-time") as market:
        factory = OrderFactory(7)
        trial = factory.order(trial=True)
        paid = factory.order()
        for order in (trial, paid):
            answer = signed_get(market, orderId=order.order_id)
            assert answer.status_code == 200, answer.text
            info = answer.json()["orderInfo"]
            [line] = info["orderLine"]
            assert info["buyerInfo"]["customerId"] == order.customer_id
            assert line["productInfo"][0]["productId"] == order.product_id
            assert line["productInfo"][0]["skuCode"] == order.sku_code
            assert line["chargingMode"] == "ONE_TIME" and "periodType" not in line
            assert line["trialFlag"] == ("1" if order.trial else "0")
            assert line["currency"] == ("0" if order.trial else "100")
        renewal = signed_get(market, orderId=paid.follow_up_order_id("RENEWAL")).json()["orderInfo"]
        assert renewal["orderType"] == "RENEW" and renewal["buyerInfo"]["customerId"] == paid.customer_id
    after = OrderFactory(8).order()  # the server has stopped watching
    assert after.order_id not in market.book.order_ids()


def test_an_order_book_joins_the_lines_of_one_order() -> None:
    book = OrderBook("period")
    with watching_orders(book.add):
        order = OrderFactory(3).order()
    from dataclasses import replace

    book.add(replace(order, order_line_id=f"{order.order_id}-000002"))
    info = book.find(order.order_id)
    assert info is not None and [line["orderLineId"] for line in info["orderLine"]] == [
        f"{order.order_id}-000001",
        f"{order.order_id}-000002",
    ]
    assert info["orderLine"][0]["periodType"] == "month" and info["orderLine"][0]["chargingMode"] == "PERIOD"


# --- usage push ------------------------------------------------------------------------------


def test_usage_push_answers_the_published_shape(market: MarketServer) -> None:
    answer = pushed(market, {"usage_records": [usage_record()]})
    assert answer.status_code == 200 and answer.json() == {"resultCode": "MKT.0000", "resultMsg": "Success"}
    assert validate(answer.json(), "openapi", "usagePush", "response") == []
    [(call, result)] = market.usage
    assert call.authenticated and result.records[0].instance_id == "inst-001"


def test_usage_push_limits(market: MarketServer) -> None:
    many = pushed(market, {"usage_records": [usage_record() for _ in range(1000)]})
    assert many.status_code == 200, many.text
    warned = market.log.calls()[-1]
    assert any("A45" in warning for warning in warned.warnings)  # 101-1000: accepted, warned
    too_many = pushed(market, {"usage_records": [usage_record() for _ in range(1001)]})
    assert (too_many.status_code, too_many.json()["resultCode"]) == (500, "MKT.9003")
    assert validate(too_many.json(), "openapi", "usagePush", "response") == []
    old = usage_record(begin_time="20000101T000000Z", end_time="20000101T010000Z")
    assert pushed(market, {"usage_records": [old]}).json()["resultCode"] == "MKT.9004"
    wrong_key = pushed(market, {"usage_records": [usage_record()]}, key="not-the-usage-key-01")
    assert (wrong_key.status_code, wrong_key.json()["resultCode"]) == (401, "MKT.0154")


def test_a_gateway_signature_on_a_usage_push_is_verified_when_present(market: MarketServer) -> None:
    """A47: the 2024-05-09 edition also asks for the gateway's AK/SK; the others do not."""
    data, headers = sign_usage_push(USAGE_KEY, {"usage_records": [usage_record()]})
    url = market.base_url + USAGE_PUSH_PATH
    both = apig.sign("POST", url, AK, SK, headers=headers | {"Content-Type": "application/json"}, body=data)
    assert requests.post(both.url, data=data, headers=both.headers, timeout=10).status_code == 200
    assert market.log.calls()[-1].warnings == ()
    data, headers = sign_usage_push(USAGE_KEY, {"usage_records": [usage_record()]})
    wrong = apig.sign("POST", url, AK, "wrong-secret-000000001", headers=headers, body=data)
    refused = requests.post(wrong.url, data=data, headers=wrong.headers, timeout=10)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "APIGW.0303")
    assert pushed(market, {"usage_records": [usage_record()]}).status_code == 200
    assert any("A47" in warning for warning in market.log.calls()[-1].warnings)


def test_a_replayed_usage_push_is_refused(market: MarketServer) -> None:
    data, headers = sign_usage_push(USAGE_KEY, {"usage_records": [usage_record()]})
    headers |= {"Content-Type": "application/json"}
    first = requests.post(market.base_url + USAGE_PUSH_PATH, data=data, headers=headers, timeout=10)
    again = requests.post(market.base_url + USAGE_PUSH_PATH, data=data, headers=headers, timeout=10)
    assert first.status_code == 200 and (again.status_code, again.json()["resultCode"]) == (401, "MKT.0154")


# --- the fuzz test: 4xx JSON to every malformed request --------------------------------------------

FUZZ_APP = create_market_app(
    OpenApiService(keys=lambda: {AK: SK}, usage_key=lambda: USAGE_KEY, find_order=OrderBook().find)
)
"""The open API alone, served in-process (no socket): the fuzz test's examples are many."""


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
paths = st.sampled_from(
    [
        QUERY_ORDER_PATH,
        USAGE_PUSH_PATH,
        PREFIX,
        f"{PREFIX}/",
        f"{PREFIX}/order",
        "/",
        "/x",
        QUERY_ORDER_PATH + "/",
    ]
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
authorizations = st.one_of(
    header_text,
    st.builds(
        lambda ak, names, signature: (
            f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={names}, Signature={signature}"
        ),
        st.sampled_from([AK, "x", ""]),
        st.sampled_from(["host;x-sdk-date", "x-sdk-date;host", "host", "content-type;host;x-sdk-date", ""]),
        st.text("0123456789abcdef", min_size=0, max_size=70),
    ),
)
dates = st.one_of(
    header_text,
    st.sampled_from(["20261130T000000Z", "99991399T999999Z", "20240230T000000Z"]),
    st.datetimes().map(lambda moment: moment.strftime("%Y%m%dT%H%M%SZ")),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"{", b"[" * 5000, b'{"usage_records": [NaN]}', b'{"usage_records": "x"}', b"\xff\xfe"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
        max_leaves=10,
    ).map(lambda value: json.dumps({"usage_records": [value]}).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=methods,
    path=paths,
    query=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=70)), max_size=3),
    authorization=st.none() | authorizations,
    date=st.none() | dates,
    usage_headers=st.dictionaries(st.sampled_from(["ts", "nonce", "signature"]), header_text, max_size=3),
    body=bodies,
)
def test_every_malformed_request_gets_4xx_json(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    authorization: str | None,
    date: str | None,
    usage_headers: dict[str, str],
    body: bytes,
) -> None:
    headers = dict(usage_headers)
    if authorization is not None:
        headers["Authorization"] = authorization
    if date is not None:
        headers["X-Sdk-Date"] = date
    answer = FUZZ_APP.test_client().open(path, method=method, query_string=query, headers=headers, data=body)
    if method == "HEAD":
        assert 400 <= answer.status_code < 500
        return
    payload = answer.get_json(silent=True)
    assert isinstance(payload, dict), answer.data[:200]
    code = payload.get("resultCode") or payload.get("error_code")
    if answer.status_code == 500:  # only the rows §8.4 prints with 500 (A55), never a crash
        assert code in PUBLISHED_500, payload
    else:
        assert 400 <= answer.status_code < 500, payload
    assert code != "MKT.0000"


def test_a_huge_body_is_a_413_in_json(market: MarketServer) -> None:
    answer = requests.post(market.base_url + USAGE_PUSH_PATH, data=b"x" * (2 << 20), timeout=30)
    assert answer.status_code == 413 and answer.json()["error_code"] == "KOOSIM.BODY_TOO_LARGE"


# --- a run with a merchant that calls Querying an Order ---------------------------------------------

ACCESS_KEY, SYNC_KEY = "market-run-access-key-01", "market-run-sync-key-0001"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def calling_merchant(market_url: str, ak: str, sk: str) -> Flask:
    """The reference merchant, which before answering each newInstance asks Querying an Order
    for its details, as the pages tell a SaaS 2.0 merchant to."""
    app = create_merchant(MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY))

    @app.before_request
    def ask_the_marketplace() -> None:
        body = request.get_json(silent=True)
        if isinstance(body, dict) and body.get("activity") == "newInstance":
            url = f"{market_url}{QUERY_ORDER_PATH}?orderId={body.get('orderId', '')}"
            signed = apig.sign("GET", url, ak, sk)
            requests.get(signed.url, headers=signed.headers, timeout=5)

    return app


@pytest.mark.parametrize("sk", [SK, "the-merchant-got-the-sk-wrong"])
def test_a_verify_run_shows_the_merchants_calls_in_every_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sk: str
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    merchant = BackgroundServer(calling_merchant(f"http://127.0.0.1:{port}", AK, sk)).start()
    try:
        result = CliRunner().invoke(
            cli_main,
            [
                "verify",
                "--url",
                merchant.base_url + PRODUCE_PATH,
                "--market-port",
                str(port),
                "--checks",
                "lifecycle.full",
                "--json",
                "r.json",
                "--html",
                "r.html",
                "--junit",
                "r.xml",
                "--db",
                "h.db",
            ],
            env={"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_MARKET_AK": AK, "KOOSIM_MARKET_SK": SK},
        )
    finally:
        merchant.close()
    assert f"marketplace open API: http://127.0.0.1:{port}" in result.output, result.output
    assert "merchant → marketplace: 1 call to the open API" in result.output, result.output
    record = json.loads((tmp_path / "r.json").read_text())
    [call] = record["inbound"]
    assert call["direction"] == "merchant → marketplace" and call["activity"] == "queryOrder"
    gateway = call["verdict"]["gateway"]
    if sk == SK:
        assert gateway["authenticated"] is True and call["verdict"]["code"] == "MKT.0000"
        assert "authenticated (SDK-HMAC-SHA256)" in result.output
    else:
        assert gateway == gateway | {"authenticated": False, "reason": "SIGNATURE_MISMATCH"}
        assert call["verdict"]["code"] == "APIGW.0303" and "refused by the gateway" in result.output
    assert SK not in result.output and SK not in json.dumps(record) and AK not in json.dumps(record)
    assert "Merchant → marketplace" in (tmp_path / "r.html").read_text()
    assert 'name="inbound.calls" value="1"' in (tmp_path / "r.xml").read_text()
    stored = Store(tmp_path / "h.db").history.run(record["run_id"])
    assert stored is not None and [e["id"] for e in stored["inbound"]] == [call["id"]]
    assert all(e["id"] != call["id"] for e in stored["exchanges"])
    [listed] = Store(tmp_path / "h.db").history.runs()
    assert listed["exchange_count"] == len(record["exchanges"])  # koosim runs counts the outbound ones
    assert Store(tmp_path / "h.db").history.exchanges(direction=INBOUND)[0]["run_id"] == record["run_id"]
    shown = CliRunner().invoke(cli_main, ["show", record["run_id"], "--db", "h.db"])
    assert "merchant → marketplace: 1 call" in shown.output


def test_a_market_port_in_use_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli_main, ["verify", "--market-port", str(port), "--checks", "lifecycle.full"]
        )
    assert result.exit_code == 2 and "cannot serve the marketplace open API" in result.output
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(cli_main, ["verify"], env={"KOOSIM_MARKET_PORT": "70000"})
    assert bad.exit_code == 2 and "market_port" in bad.output


def test_the_open_api_stops_with_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    result = CliRunner().invoke(
        cli_main, ["verify", "--market-port", str(port), "--checks", "lifecycle.full"]
    )
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError("the open API still listens after the command ended")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, query=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=70)), max_size=3))
def test_every_malformed_but_signed_request_gets_a_published_answer(
    body: bytes, query: list[tuple[str, str]]
) -> None:
    """Past the authentication, a malformed body or query gets a §8.4 code, never MKT.0000 nor a crash."""
    ts, nonce = str(int(time.time() * 1000)), uuid.uuid4().hex
    headers = {"ts": ts, "nonce": nonce, "signature": usage_signature(USAGE_KEY, ts, nonce, body)}
    client = FUZZ_APP.test_client()
    pushed_answer = client.post(USAGE_PUSH_PATH, data=body, headers=headers, content_type="application/json")
    url = f"http://localhost{QUERY_ORDER_PATH}" + (f"?{urlencode(query)}" if query else "")
    signed = apig.sign("GET", url, AK, SK, headers={"X-Client-Request": uuid.uuid4().hex})  # no replay
    queried = client.get(signed.url.removeprefix("http://localhost"), headers=signed.headers)
    for answer in (pushed_answer, queried):
        payload = answer.get_json(silent=True)
        assert isinstance(payload, dict), answer.data[:200]
        code = payload.get("resultCode") or payload.get("error_code")
        assert (code in {c.value for c in MktCode} and code != "MKT.0000") or (
            answer is queried and code == "MKT.0000"
        ), payload
        assert answer.status_code < 500 or code in PUBLISHED_500, payload


def test_market_tls_serves_https_that_a_strict_client_trusts_through_koosims_ca(tmp_path: Path) -> None:
    """K24: the pages make the merchant validate the certificate strictly; --market-tls gives it a
    certificate it can validate, by trusting koosim's CA and nothing else."""
    with MarketServer(market_ak=AK, market_sk=SK, tls_ca=tmp_path / "ca") as market:
        assert market.base_url.startswith("https://127.0.0.1:")
        assert f"trust the CA {tmp_path / 'ca' / 'ca.pem'}" in market.header()
        url = f"{market.base_url}{QUERY_ORDER_PATH}?orderId=MOCKPERIODYEARNEW"
        signed = apig.sign("GET", url, AK, SK)
        trusted = requests.get(
            signed.url, headers=signed.headers, timeout=10, verify=str(tmp_path / "ca" / "ca.pem")
        )
        assert trusted.status_code == 200 and trusted.json()["resultCode"] == "MKT.0000"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(signed.url, headers=signed.headers, timeout=10)  # the system's trust store: refused
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0
    ca = (tmp_path / "ca" / "ca.pem").read_bytes()
    with MarketServer(market_ak=AK, market_sk=SK, tls_ca=tmp_path / "ca") as again:  # the CA is reused
        assert (tmp_path / "ca" / "ca.pem").read_bytes() == ca
        localhost = again.base_url.replace("127.0.0.1", "localhost")
        answer = requests.get(f"{localhost}/x", timeout=10, verify=str(tmp_path / "ca" / "ca.pem"))
        assert answer.status_code == 404


def test_koosim_serve_serves_the_open_api_alone_over_https_on_market_tls(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    env = dict(os.environ) | {"KOOSIM_MARKET_AK": AK, "KOOSIM_MARKET_SK": SK, "COLUMNS": "200"}
    command = [sys.executable, "-m", "simulator", "serve", "--port", "0", "--market-tls", "--db", "h.db"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    try:
        assert process.stdout is not None
        line = ""
        for _ in range(30):  # the header's lines, up to the open API's
            line = process.stdout.readline()
            if "marketplace open API" in line or not line:
                break
        base = re.search(r"https://127\.0\.0\.1:\d+", line).group(0)  # type: ignore[union-attr]
        signed = apig.sign("GET", f"{base}{QUERY_ORDER_PATH}?orderId=MOCKONDEMAND", AK, SK)
        ca = tmp_path / ".koosim" / "market-ca" / "ca.pem"
        answer = requests.get(signed.url, headers=signed.headers, timeout=10, verify=str(ca))
        assert answer.status_code == 200 and answer.json()["orderInfo"]["orderId"] == "MOCKONDEMAND"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.returncode == 0
    inbound = Store(tmp_path / "h.db").history.exchanges(direction=INBOUND)
    assert [e["activity"] for e in inbound] == ["queryOrder"]


def test_play_shows_the_merchants_calls_after_their_step_and_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    merchant = BackgroundServer(calling_merchant(f"http://127.0.0.1:{port}", AK, SK)).start()
    try:
        result = CliRunner().invoke(
            cli_main,
            ["play", "new-order", "--step", "--url", merchant.base_url + PRODUCE_PATH,
             "--market-port", str(port), "--db", "h.db"],
            env={"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_MARKET_AK": AK, "KOOSIM_MARKET_SK": SK},
            input="\n" * 20,
        )  # fmt: skip
    finally:
        merchant.close()
    assert result.exit_code == 0, result.output
    assert f"marketplace open API: http://127.0.0.1:{port}" in result.output
    assert "merchant → marketplace GET" in result.output and "MKT.0000; authenticated" in result.output
    [run] = Store(tmp_path / "h.db").history.runs(kind="play")
    stored = Store(tmp_path / "h.db").history.run(run["run_id"])
    assert stored is not None and [call["activity"] for call in stored["inbound"]] == ["queryOrder"]
    assert stored["inbound"][0]["verdict"]["gateway"]["authenticated"] is True


def test_the_order_book_keeps_the_most_recent_orders_only() -> None:
    book = OrderBook(capacity=3)
    orders = [OrderFactory(seed).order() for seed in range(5)]  # not watched: added by hand
    for order in orders:
        book.add(order)
    assert [book.find(order.order_id) is not None for order in orders] == [False, False, True, True, True]
    assert len(book) == 3 * 4  # each with its renewal, upgrade and trial-to-formal orders


def test_the_inbound_log_keeps_the_most_recent_calls_and_counts_them_all() -> None:
    from simulator.openapi import InboundCall, InboundLog

    log = InboundLog(capacity=2)
    heard: list[str] = []
    with log.listen(lambda call: heard.append(call.id)):
        for number in range(4):
            code = "MKT.0000" if number % 2 else "APIGW.0303"
            log.add(InboundCall(str(number), "queryOrder", "GET", "/", {}, b"", 0.0, 200, b"{}", code=code))
    log.add(InboundCall("late", None, "GET", "/", {}, b"", 0.0, 404, b"{}"))
    assert heard == ["0", "1", "2", "3"]  # the listener left with its block
    assert [call.id for call in log.calls()] == ["3", "late"] and (log.total, log.refused) == (5, 3)
    assert [call.id for call in log.since(3)] == ["3", "late"] and log.since(5) == []
