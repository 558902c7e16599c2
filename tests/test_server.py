"""``koosim serve``: every blueprint through Flask's test client, bad input to every inbound
endpoint (always a 4xx JSON answer naming the problem, never a 500), and a merchant-side client
that pushes usage and queries an order against a running server.

The merchant-to-marketplace signature is computed here from the documented ASSUMPTION
(docs/server.md), not with simulator.protocol.sign_openapi.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import signal
import subprocess
import sys
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
from conftest import no_server_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, request
from flask.testing import FlaskClient

from simulator import settings as config
from simulator.cli import main as cli_main
from simulator.contracts import validate
from simulator.model import Order
from simulator.openapi import MOCK_ORDERS
from simulator.protocol import apig
from simulator.protocol.usage_signature import sign_usage_push
from simulator.protocol.usage_signature import signature as usage_signature
from simulator.server import create_app as create_server
from simulator.server import market_state
from simulator.server import token as server_token
from simulator.server.openapi import QUERY_ORDER_PATH, USAGE_PATH
from simulator.serving import BackgroundServer
from simulator.store import Store

ACCESS_KEY = "server-test-access-key-77"
MARKET_AK, MARKET_SK = "SERVERTESTAK0000001", "server-test-market-sk-000000001"
SYNC_KEY = "server-test-sync-key-88"
TOKEN = "server-test-notify-token-99"
EC_PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


@pytest.fixture(scope="module")
def merchant(reference_merchant: Any) -> dict[str, Any]:
    """The target settings of the reference merchant, as the console and the API take them."""
    return {
        "url": reference_merchant.url,
        "access_key": ACCESS_KEY,
        "sync_key": SYNC_KEY,
        "rsa_public_key": reference_merchant.rsa_public_key.decode(),
        "timeout": 5,
    }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The server over a fresh history; no test may see it answer a 5xx."""
    with no_server_errors(create_server(Store(tmp_path / "koosim.db"))) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A script's client: it presents the token koosim serve printed, as every client must."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {server_token(app)}"
    return client


@pytest.fixture
def configured(client: FlaskClient, merchant: dict[str, Any]) -> FlaskClient:
    response = client.put("/api/target", json=merchant)
    assert response.status_code == 200, response.json
    return client


def receiver(check_token: bool = True) -> Flask:
    """A merchant's notification endpoint: verifies x-sign with the token (protocol.md §4 form)."""
    app = Flask("notification-receiver")

    @app.post("/notify")
    def notify() -> dict[str, str]:
        body = request.get_json()
        canonical = json.dumps(
            {k: body[k] for k in sorted(body) if body[k] is not None},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        message = TOKEN + request.headers["x-nonce"] + request.headers["x-timestamp"] + canonical
        expected = hmac.new(TOKEN.encode(), message.encode(), hashlib.sha256).hexdigest()
        if check_token and request.headers.get("x-sign") != expected:
            return {"resultCode": "000001", "resultMsg": "bad x-sign"}
        return {"resultCode": "000000", "resultMsg": "success"}

    return app


def usage_record(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    record = {
        "instance_id": "inst-001",
        "record_time": now.strftime("%Y%m%dT%H%M%SZ"),
        "begin_time": (now - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ"),
        "end_time": now.strftime("%Y%m%dT%H%M%SZ"),
        "usage_value": "1.25",
        "metering_sn": uuid.uuid4().hex,
    }
    return record | changes


def push(client: FlaskClient, body: Any, key: str = ACCESS_KEY, raw: bytes | None = None) -> Any:
    """A usage push signed as §2.6 says (the naturally sorted body, or the raw bytes given)."""
    if raw is None:
        data, headers = sign_usage_push(key, body)
    else:
        ts, nonce = str(int(time.time() * 1000)), uuid.uuid4().hex
        data, headers = raw, {"ts": ts, "nonce": nonce, "signature": usage_signature(key, ts, nonce, raw)}
    return client.post(USAGE_PATH, data=data, headers=headers, content_type="application/json")


def query(
    client: FlaskClient, ak: str = MARKET_AK, sk: str = MARKET_SK, now: datetime | None = None, **params: str
) -> Any:
    """Querying an Order signed with Huawei's own signer (``huaweicloudsdkcore``), as a merchant does."""
    url = f"http://localhost{QUERY_ORDER_PATH}" + (f"?{urlencode(params)}" if params else "")
    signed = apig.sign("GET", url, ak, sk, now=now)
    return client.get(signed.url.removeprefix("http://localhost"), headers=signed.headers)


def send(client: FlaskClient, activity: str, **changes: Any) -> dict[str, Any]:
    fields = client.get(f"/api/activities/{activity}/template").json["fields"] | changes
    response = client.post("/api/calls", json={"activity": activity, "fields": fields})
    assert response.status_code == 200, response.json
    return response.json


def wait_finished(client: FlaskClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = client.get(f"/api/runs/{run_id}").json
        if record["status"] != "running":
            return record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


# --- the console (HTML) ----------------------------------------------------------------------------


CONSOLE_PAGES = ("/", "/target", "/call", "/runs", "/notify", "/marketplace", "/outbox", "/play")


def test_every_console_page_renders_without_a_target(client: FlaskClient) -> None:
    for path in CONSOLE_PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"<nav>" in response.data
    assert b"No target yet" in client.get("/").data


def test_the_target_form_keeps_keys_in_memory_and_shows_only_set(
    client: FlaskClient, merchant: dict[str, Any], app: Flask
) -> None:
    form = {
        "url": merchant["url"],
        "protocol": "v2",
        "access_key": ACCESS_KEY,
        "sync_key": SYNC_KEY,
        "timeout": "5",
    }
    response = client.post("/target", data=form)
    assert response.status_code == 302
    page = client.get("/target").data.decode()
    assert "Target saved" in page and merchant["url"] in page
    assert page.count('badge set">set') >= 2
    assert ACCESS_KEY not in page and SYNC_KEY not in page
    send(client, "newInstance")
    history = market_state(app).store.path
    assert ACCESS_KEY.encode() not in b"".join(p.read_bytes() for p in history.parent.glob("koosim.db*"))
    # an empty key field keeps the key; "forget every key" drops them
    client.post("/target", data={"url": merchant["url"], "access_key": ""})
    assert market_state(app).settings.access_key == ACCESS_KEY
    client.post("/target", data={"url": merchant["url"], "clear_keys": "on"})
    assert market_state(app).settings.access_key is None


def test_the_target_form_names_a_bad_setting(client: FlaskClient) -> None:
    response = client.post("/target", data={"url": "ftp://merchant", "protocol": "v2"})
    assert response.status_code == 400
    assert "url: 'ftp://merchant' is not an http(s) URL" in html.unescape(response.data.decode())


def test_the_call_page_signs_sends_and_judges(configured: FlaskClient) -> None:
    page = html.unescape(configured.get("/call?activity=newInstance").data.decode())
    assert '"activity": "newInstance"' in page
    fields = configured.get("/api/activities/newInstance/template").json["fields"]
    response = configured.post("/call", data={"activity": "newInstance", "fields": json.dumps(fields)})
    page = response.data.decode()
    assert response.status_code == 200
    assert 'id="verdict"' in page and "badge passed" in page and "000000" in page
    assert "signature=" in page  # the exchange is shown, signature computed


@pytest.mark.parametrize(
    ("activity", "fields", "message"),
    [
        ("newInstance", "{not json", "the fields are not JSON"),
        ("newInstance", "[1, 2]", "must be a JSON object"),
        ("noSuchActivity", "{}", "unknown activity"),
    ],
)
def test_the_call_page_names_bad_input(
    configured: FlaskClient, activity: str, fields: str, message: str
) -> None:
    response = configured.post("/call", data={"activity": activity, "fields": fields})
    assert response.status_code == 400
    assert message in response.data.decode()
    assert configured.get("/call?activity=noSuchActivity").status_code == 400


def test_a_verify_run_started_from_the_console_can_be_watched_and_browsed(configured: FlaskClient) -> None:
    response = configured.post("/runs", data={"checks": "lifecycle.full contract.*", "seed": "3"})
    assert response.status_code == 302
    run_id = response.headers["Location"].rsplit("/", 1)[1]
    record = wait_finished(configured, run_id)
    assert record["status"] == "finished" and record["summary"]["failed"] == 0
    page = configured.get(f"/runs/{run_id}").data.decode()
    assert "lifecycle.full" in page and 'class="exchange"' in page and "http-equiv" not in page
    exchange_id = record["exchanges"][0]["id"]
    detail = configured.get(f"/exchanges/{exchange_id}").data.decode()
    assert "request-body" in detail and "response-body" in detail
    assert run_id in configured.get("/runs").data.decode()
    assert configured.post("/runs", data={"checks": "nope.*"}).status_code == 400
    assert configured.post("/runs", data={"seed": "x"}).status_code == 400


def test_a_running_run_page_refreshes_itself(client: FlaskClient, app: Flask) -> None:
    market_state(app).store.history.begin_run(
        "live-run", kind="verify", target={"url": "http://m", "protocol": "v2"}, planned=4
    )
    page = client.get("/runs/live-run").data.decode()
    assert 'http-equiv="refresh"' in page and "0 of 4 checks done" in page
    market_state(app).store.history.finish_run("live-run", exit_code=0)


def test_unknown_pages_are_404_pages(client: FlaskClient) -> None:
    for path in ("/runs/nope", "/exchanges/nope", "/play/nope", "/no/such/page"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"Nothing here" in response.data


def test_the_outbox_page_lets_the_administrator_continue_or_stop(configured: FlaskClient, app: Flask) -> None:
    configured.put("/api/target", json={"sync_key": "a-wrong-sync-key", "contact": "+86 138 0000 0000"})
    assert send(configured, "authSync")["outbox_id"] == 1
    assert send(configured, "tenantSync")["outbox_id"] == 2
    page = configured.get("/outbox").data.decode()
    assert "+86 138 0000 0000" in page and "sms + email" in page and page.count("Continue the sync") == 2
    configured.put("/api/target", json={"sync_key": SYNC_KEY})
    assert configured.post("/outbox/1/continue").status_code == 302
    assert configured.post("/outbox/2/stop").status_code == 302
    page = configured.get("/outbox").data.decode()
    assert "badge resolved" in page and "badge stopped" in page and "Continue the sync" not in page
    assert configured.post("/outbox/1/stop", follow_redirects=True).data.count(b"already resolved") == 1
    assert configured.post("/outbox/1/whatever").status_code == 404


def test_a_scenario_is_played_step_by_step_from_the_console(configured: FlaskClient) -> None:
    page = configured.get("/play").data.decode()
    assert "renewal" in page
    response = configured.post("/play", data={"scenario": "renewal"})
    assert response.status_code == 302
    play_url = response.headers["Location"]
    first = html.unescape(configured.get(play_url).data.decode())
    assert 'id="next-step"' in first and '"activity": "newInstance"' in first
    for _ in range(4):
        assert configured.post(f"{play_url}/next").status_code == 302
    done = configured.get(play_url).data.decode()
    assert done.count("badge passed") == 4 and "Every step has been played" in done
    configured.post(f"{play_url}/finish")
    run_id = play_url.rsplit("/", 1)[1]
    assert configured.get(f"/api/runs/{run_id}").json["status"] == "finished"
    assert configured.post("/play", data={"scenario": "no-such-scenario"}).status_code == 400


def test_the_notification_page_sends_and_shows_the_run(configured: FlaskClient) -> None:
    with BackgroundServer(receiver()) as server:
        configured.put(
            "/api/target", json={"notification_url": f"{server.base_url}/notify", "notification_token": TOKEN}
        )
        fields = configured.get("/api/notifications/template").json["fields"]
        form = {"fields": json.dumps(fields), "check_token": "on", "check_repeat": "on"}
        response = configured.post("/notify", data=form)
        assert response.status_code == 302
        page = configured.get(response.headers["Location"]).data.decode()
    assert "notification.accepted" in page and "notification.token" in page and "badge failed" not in page
    assert "notification.repeat" in page
    assert TOKEN not in page
    assert configured.post("/notify", data={"fields": "{"}).status_code == 400


CROSS_SITE = [
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
    pytest.param({"Origin": "http://evil.example"}, id="foreign-origin"),
    pytest.param({"Origin": "null"}, id="opaque-origin"),
    pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}, id="both-disagree"),
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_request_cannot_change_the_marketplace(
    configured: FlaskClient, app: Flask, headers: dict[str, str]
) -> None:
    before = market_state(app).settings
    form = {"url": "http://evil.example/produceAPI", "access_key": "theirs-0001", "clear_keys": "on"}
    page = configured.post("/target", data=form, headers=headers)
    assert page.status_code == 403
    assert "may not change the marketplace" in html.unescape(page.data.decode())
    api = configured.put("/api/target", json={"url": "http://evil.example/produceAPI"}, headers=headers)
    assert api.status_code == 403 and "may not change the marketplace" in api.json["error"]
    assert configured.post("/api/runs", headers=headers).status_code == 403
    assert configured.post("/outbox/1/stop", headers=headers).status_code == 403
    assert market_state(app).settings == before and configured.get("/api/runs").json["runs"] == []
    assert configured.get("/target", headers=headers).status_code == 200  # reading is not refused


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="typed-by-a-person"),
        pytest.param({}, id="a-script"),
    ],
)
def test_a_same_origin_request_changes_the_marketplace(
    configured: FlaskClient, app: Flask, merchant: dict[str, Any], headers: dict[str, str]
) -> None:
    page = configured.post(
        "/target", data={"url": merchant["url"], "contact": "ops@example.com"}, headers=headers
    )
    assert page.status_code == 302 and market_state(app).settings.contact == "ops@example.com"
    api = configured.put("/api/target", json={"contact": "sre@example.com"}, headers=headers)
    assert api.status_code == 200 and api.json["contact"] == "sre@example.com"


# --- the JSON API --------------------------------------------------------------------------------------


def test_the_api_target_never_echoes_keys(client: FlaskClient, merchant: dict[str, Any], app: Flask) -> None:
    answer = client.put("/api/target", json=merchant).json
    assert answer["access_key"] == "set" and answer["sync_key"] == "set" and answer["rsa_public_key"] == "set"
    assert ACCESS_KEY not in json.dumps(client.get("/api/target").json)
    settings = market_state(app).settings
    assert isinstance(settings, config.Settings)  # the settings every koosim command uses
    assert ACCESS_KEY not in repr(settings) and SYNC_KEY not in repr(settings)


def test_a_public_key_that_is_not_rsa_is_refused_when_it_is_set(configured: FlaskClient) -> None:
    response = configured.put("/api/target", json={"rsa_public_key": EC_PUBLIC_KEY})
    assert response.status_code == 400
    assert "rsa_public_key is not a PEM RSA public key" in response.json["error"]
    assert configured.get("/api/target").json["rsa_public_key"] == "set"  # the RSA key is kept
    template = configured.get("/api/activities/applicationSync/template")
    assert template.status_code == 200 and template.json["fields"]["clientSecret"]
    assert configured.get("/call?activity=applicationSync").status_code == 200


def test_a_sync_call_is_not_sent_without_a_sync_key(client: FlaskClient, merchant: dict[str, Any]) -> None:
    client.put("/api/target", json={name: value for name, value in merchant.items() if name != "sync_key"})
    fields = client.get("/api/activities/authSync/template").json["fields"]
    response = client.post("/api/calls", json={"activity": "authSync", "fields": fields})
    assert response.status_code == 409 and "no sync key is configured" in response.json["error"]
    page = client.post("/call", data={"activity": "authSync", "fields": json.dumps(fields)})
    assert page.status_code == 400 and "no sync key is configured" in page.data.decode()
    assert client.get("/api/runs?kind=call").json["runs"] == []  # nothing was sent or recorded


def test_a_call_answer_is_judged_by_the_catalog_checks(client: FlaskClient) -> None:
    sloppy = Flask("sloppy-merchant")

    @sloppy.post("/produceAPI")
    def produce() -> tuple[str, int, dict[str, str]]:
        return '{"resultCode": "000000"}', 200, {"Content-Type": "text/plain"}

    with BackgroundServer(sloppy) as server:
        client.put("/api/target", json={"url": f"{server.base_url}/produceAPI", "access_key": ACCESS_KEY})
        outcome = send(client, "newInstance")
    assert outcome["verdict"] == "failed"
    checks = {problem.split(":", 1)[0] for problem in outcome["problems"]}
    # resultMsg is optional (§3.1); instanceId and frontEndUrl are the console's members (§10.4)
    assert {"contract.http-200-json", "contract.console-members", "contract.response-schema"} <= checks
    run = client.get(f"/api/runs/{outcome['run_id']}").json
    verdicts = {check["id"]: check["verdict"] for check in run["checks"]}
    assert run["kind"] == "call" and verdicts["contract.console-members"] == "failed"
    assert verdicts["contract.http-200-json"] == "warned"  # ASSUMPTION U3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"protocol": "v3"}, "protocol must be v2 or v1, not 'v3'"),  # the message the CLI gives
        ({"url": "ftp://x"}, "url: 'ftp://x' is not an http(s) URL"),
        ({"url": "http://x:99999/"}, "invalid port"),
        ({"url": 5}, "url must be a string"),
        ({"timeout": "abc"}, "timeout must be a number"),
        ({"timeout": -1}, "more than 0 and at most 300"),
        ({"access_key": 7}, "access_key must be a string"),
        ({"access_key": "short"}, "access_key is 5 character(s) long; a key needs at least 8"),
        ({"sync_key": "k"}, "sync_key is 1 character(s) long"),
        ({"rsa_public_key": "not pem"}, "not a PEM RSA public key"),
        ({"rsa_public_key": EC_PUBLIC_KEY}, "ECPublicKey, not an RSA key"),
        ({"bundled": "yes"}, "bundled must be true or false"),
        ({"colour": "red"}, "unknown setting(s): colour"),
        ([1, 2], "must be a JSON object"),
        ("garbage", "must be a JSON object"),
    ],
)
def test_the_api_target_names_bad_settings(client: FlaskClient, body: Any, message: str) -> None:
    data = body if body == "garbage" else json.dumps(body)
    response = client.put("/api/target", data=data, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json["error"]


def test_the_api_sends_every_activity_with_its_signature(configured: FlaskClient) -> None:
    activities = configured.get("/api/activities").json
    assert set(activities) == {"produce", "license", "sync"}
    created = send(configured, "newInstance")
    assert created["verdict"] == "passed" and created["result_code"] == "000000"
    license_code = json.loads(send(configured, "getLicense")["exchange"]["response"]["body"])["license"]
    outcomes = {}
    # in lifecycle order; V1's own activities (§5.4, §5.6) are refused for this V2 target
    v1_own = {"expireInstance", "instanceStatus"}
    assert v1_own <= set(activities["produce"])
    for activity in [name for names in activities.values() for name in names if name not in v1_own]:
        changes = (
            {"license": license_code} if activity.endswith("License") and activity != "getLicense" else {}
        )
        outcomes[activity] = send(configured, activity, **changes)
    assert {name: o["result_code"] for name, o in outcomes.items() if o["result_code"] != "000000"} == {}
    assert all(o["verdict"] == "passed" and not o["outbox_id"] for o in outcomes.values())
    sync_exchange = outcomes["authSync"]["exchange"]
    assert set(sync_exchange["request"]["headers"]) >= {"x-timestamp", "x-nonce", "x-sign"}
    assert "signature=" in outcomes["queryInstance"]["exchange"]["request"]["url"]


def test_a_call_that_breaks_the_contract_and_is_refused_still_passes(configured: FlaskClient) -> None:
    outcome = send(configured, "newInstance", orderId=None, businessId=12)
    assert outcome["result_code"] == "000002" and outcome["verdict"] == "passed"
    assert any("businessId" in v for v in outcome["request_violations"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"fields": {}}, 400, "activity must be a non-empty string"),
        ({"activity": 3, "fields": {}}, 400, "activity must be a non-empty string"),
        ({"activity": "newInstance", "fields": [1]}, 400, "fields must be a JSON object"),
        ({"activity": "noSuch", "fields": {}}, 400, "unknown activity 'noSuch'"),
        ("not json at all", 400, "must be a JSON object"),
    ],
)
def test_the_api_call_names_bad_input(configured: FlaskClient, body: Any, status: int, message: str) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = configured.post("/api/calls", data=data, content_type="application/json")
    assert response.status_code == status
    assert message in response.json["error"]


def test_a_call_without_a_target_is_a_conflict_and_license_calls_go_in_the_authtoken_form_on_v1(
    client: FlaskClient, merchant: dict[str, Any]
) -> None:
    response = client.post("/api/calls", json={"activity": "newInstance", "fields": {}})
    assert response.status_code == 409 and "no target configured" in response.json["error"]
    client.put("/api/target", json=merchant | {"protocol": "v1"})
    # The License page publishes getLicense with authToken + timeStamp (docs/protocol.md §6.1, A56).
    license_call = send(client, "getLicense")
    assert "authToken=" in license_call["exchange"]["request"]["url"]
    v1 = send(client, "newInstance")
    assert v1["verdict"] == "passed" and "authToken=" in v1["exchange"]["request"]["url"]


def test_the_api_runs_a_verify_and_serves_the_history(configured: FlaskClient) -> None:
    response = configured.post("/api/runs", json={"checks": ["lifecycle.full"], "seed": 1})
    assert response.status_code == 202
    run_id = response.json["run_id"]
    record = wait_finished(configured, run_id)
    assert record["status"] == "finished" and record["summary"]["passed"] == 1
    reproduce = record["checks"][0]["reproduce"]
    assert reproduce.startswith("koosim verify --url ") and "--timeout 5.0 --seed 1" in reproduce
    assert run_id in [run["run_id"] for run in configured.get("/api/runs").json["runs"]]
    assert configured.get("/api/runs?kind=call").json["runs"] == []
    exchanges = configured.get(f"/api/runs/{run_id}/exchanges").json["exchanges"]
    assert exchanges and configured.get(f"/api/exchanges/{exchanges[0]['id']}").json["run_id"] == run_id
    for path in ("/api/runs/nope", "/api/runs/nope/exchanges", "/api/exchanges/nope", "/api/outbox/99"):
        assert configured.get(path).status_code == 404, path
    assert configured.get("/api/runs?limit=x").status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"checks": "lifecycle.*"}, "checks must be a list"),
        ({"checks": [1]}, "checks must be a list"),
        ({"seed": "1"}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"checks": ["nope.*"]}, "no check matches"),
    ],
)
def test_the_api_run_names_bad_input(configured: FlaskClient, body: Any, message: str) -> None:
    response = configured.post("/api/runs", json=body)
    assert response.status_code == 400 and message in response.json["error"]


def test_a_run_against_an_unreachable_target_is_refused_at_once(client: FlaskClient) -> None:
    client.put("/api/target", json={"url": "http://127.0.0.1:9/produceAPI", "access_key": "key-0123456789"})
    response = client.post("/api/runs", json={"checks": ["lifecycle.full"]})
    assert response.status_code == 409 and "could not be reached" in response.json["error"]


def test_a_failed_sync_goes_to_the_outbox_and_the_administrator_decides(configured: FlaskClient) -> None:
    configured.put("/api/target", json={"sync_key": "a-wrong-sync-key"})
    failed = send(configured, "authSync")
    assert failed["result_code"] == "000001" and failed["outbox_id"] == 1
    message = configured.get("/api/outbox/1").json
    assert message["status"] == "pending" and message["channels"] == ["sms", "email"]
    assert message["sync_call"] == "authSync" and "000001" in message["body"]

    again = configured.post("/api/outbox/1/continue").json
    assert again["message"]["status"] == "pending" and again["message"]["attempts"] == 2
    assert again["call"]["outbox_id"] is None  # a resend does not notify again

    configured.put("/api/target", json={"sync_key": SYNC_KEY})
    fixed = configured.post("/api/outbox/1/continue").json
    assert fixed["message"]["status"] == "resolved" and fixed["call"]["result_code"] == "000000"
    assert len(fixed["message"]["exchange_ids"]) == 3
    assert configured.post("/api/outbox/1/stop").status_code == 409
    assert configured.post("/api/outbox/42/continue").status_code == 404

    configured.put("/api/target", json={"sync_key": "wrong-again"})
    send(configured, "singleOrgSync")
    assert configured.post("/api/outbox/2/stop").json["message"]["status"] == "stopped"
    assert [m["id"] for m in configured.get("/api/outbox?status=pending").json["messages"]] == []


def test_order_notifications_are_sent_signed_and_judged(configured: FlaskClient) -> None:
    fields = configured.get("/api/notifications/template").json["fields"]
    response = configured.post("/api/notifications", json={"fields": fields})
    assert response.status_code == 409 and "notification URL" in response.json["error"]
    for check_token, expected in ((True, "passed"), (False, "warned")):
        with BackgroundServer(receiver(check_token)) as server:
            configured.put(
                "/api/target",
                json={"notification_url": f"{server.base_url}/notify", "notification_token": TOKEN},
            )
            record = configured.post("/api/notifications", json={"fields": fields}).json
        verdicts = {check["id"]: check["verdict"] for check in record["checks"]}
        assert verdicts == {
            "notification.accepted": "passed",
            "notification.token": expected,
            "notification.repeat": "passed",
        }
        assert record["kind"] == "notification" and TOKEN not in json.dumps(record)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fields": [1]}, "JSON object of strings"),
        ({"fields": {"orderId": "o", "n": 1}}, "JSON object of strings"),
        ({"fields": {"orderId": "o", "orderType": "NEW"}}, "the order number only"),
        ({"fields": {"orderId": "o" * 65}}, "at most 64"),
        ({"fields": {"orderLineId": "l"}}, "orderId is required"),
        ({"fields": {"orderId": "o"}, "check_token": "yes"}, "check_token must be"),
        ({"fields": {"orderId": "o"}, "check_repeat": 1}, "check_repeat must be"),
    ],
)
def test_the_api_notification_names_bad_input(configured: FlaskClient, body: Any, message: str) -> None:
    response = configured.post("/api/notifications", json=body)
    assert response.status_code == 400 and message in response.json["error"]


def test_the_api_plays_a_scenario_step_by_step(configured: FlaskClient) -> None:
    names = [s["name"] for s in configured.get("/api/scenarios").json["scenarios"]]
    assert "renewal" in names
    state = configured.post("/api/plays", json={"scenario": "renewal"}).json
    play_id = state["play_id"]
    assert state["next"]["id"] == "new" and state["next"]["fields"]["activity"] == "newInstance"
    edited = state["next"]["fields"] | {"customerName": "edited by hand"}
    state = configured.post(f"/api/plays/{play_id}/next", json={"fields": edited}).json
    assert state["steps"][0]["status"] == "passed"
    exchange = configured.get(f"/api/exchanges/{state['steps'][0]['exchanges'][0]}").json
    assert "edited by hand" in exchange["request"]["body"]
    state = configured.post(f"/api/plays/{play_id}/resend").json  # the same order again: same instance
    assert state["steps"][0]["status"] == "passed"
    while state["next"] is not None:
        state = configured.post(f"/api/plays/{play_id}/next").json
    assert [step["status"] for step in state["steps"]] == ["passed"] * 4
    assert configured.post(f"/api/plays/{play_id}/next").status_code == 400
    finished = configured.post(f"/api/plays/{play_id}/finish").json
    assert finished["finished"] and finished["run"]["status"] == "finished"
    assert len(finished["run"]["checks"]) == 5  # four steps and one resend


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/plays", {"scenario": "no-such"}, 400),
        ("/api/plays", {"scenario": 5}, 400),
        ("/api/plays", "garbage", 400),
        ("/api/plays/nope/next", {}, 404),
        ("/api/plays/nope/resend", {}, 404),
        ("/api/plays/nope/finish", {}, 404),
    ],
)
def test_the_api_play_names_bad_input(configured: FlaskClient, path: str, body: Any, status: int) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = configured.post(path, data=data, content_type="application/json")
    assert response.status_code == status and response.json["error"]


def test_a_new_play_session_has_no_previous_step_to_resend_and_edits_must_be_objects(
    configured: FlaskClient,
) -> None:
    play_id = configured.post("/api/plays", json={"scenario": "renewal"}).json["play_id"]
    assert configured.post(f"/api/plays/{play_id}/resend").status_code == 400
    assert configured.post(f"/api/plays/{play_id}/next", json={"fields": [1]}).status_code == 400


@pytest.mark.parametrize("data", [b"{garbage", b"[1, 2]", b'"a string"', b"\xff\xfe", b"null"])
def test_every_json_endpoint_refuses_a_body_that_is_not_an_object(
    configured: FlaskClient, data: bytes
) -> None:
    for path in ("/api/target", "/api/calls", "/api/runs", "/api/notifications", "/api/plays"):
        response = configured.post(path, data=data, content_type="application/json")
        assert response.status_code == 400, path
        assert "must be a JSON object" in response.json["error"]


def test_unknown_api_paths_and_methods_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/nothing").status_code == 404 and client.get("/api/nothing").json["error"]
    response = client.delete("/api/runs")
    assert response.status_code == 405 and "error" in response.json


# --- the merchant-to-marketplace APIs ------------------------------------------------------------------
# The spec changed these rules (docs/protocol.md §2.5, §2.6, §8.1-§8.4; §13 K19-K23 removed): Querying
# an Order is authenticated by the API gateway's AK/SK (APIGW.0303), usage push by its own
# signature headers keyed with the interconnection key, answers are resultCode/resultMsg with the
# HTTP statuses §8.4 prints (MKT.0100 is 500, A55), and no 404 for an unknown order (U32).


def with_market_keys(client: FlaskClient) -> FlaskClient:
    response = client.put("/api/target", json={"market_ak": MARKET_AK, "market_sk": MARKET_SK})
    assert response.status_code == 200, response.json
    assert response.json["market_ak"] == response.json["market_sk"] == "set"
    return client


def test_query_order_answers_the_mock_orders_and_orders_the_marketplace_sent(configured: FlaskClient) -> None:
    with_market_keys(configured)
    for mock in MOCK_ORDERS:
        answer = query(configured, orderId=mock)
        assert answer.status_code == 200, answer.json
        assert validate(answer.json, "openapi", "queryOrder", "response") == []
        assert answer.json["orderInfo"]["orderLine"][0]["orderLineId"] == f"{mock}-000001"
    sent = json.loads(send(configured, "newInstance")["exchange"]["request"]["body"])
    answer = query(configured, orderId=sent["orderId"], orderLineId=sent["orderLineId"])
    assert answer.status_code == 200, answer.json
    assert validate(answer.json, "openapi", "queryOrder", "response") == []
    line = answer.json["orderInfo"]["orderLine"][0]
    assert line["orderLineId"] == sent["orderLineId"] and line["chargingMode"] == "PERIOD"
    # The call does not carry the product (docs/protocol.md §4.1): the order answer does.
    assert "productId" not in sent
    assert line["productInfo"][0]["productId"] == Order.product_id
    assert line["productInfo"][0]["skuCode"] == Order.sku_code
    missing_line = query(configured, orderId=sent["orderId"], orderLineId="nope")
    assert missing_line.status_code == 500 and missing_line.json["resultCode"] == "MKT.0100"
    assert "has no line" in missing_line.json["resultMsg"]
    unknown = query(configured, orderId="CS000UNKNOWN")
    assert unknown.status_code == 500 and "does not exist" in unknown.json["resultMsg"]
    assert validate(unknown.json, "openapi", "queryOrder", "response") == []


def test_query_order_refuses_calls_the_gateway_cannot_authenticate(configured: FlaskClient) -> None:
    with_market_keys(configured)
    anonymous = configured.application.test_client()  # no console token in Authorization either
    unsigned = anonymous.get(QUERY_ORDER_PATH, query_string={"orderId": "MOCKPERIODYEARNEW"})
    bearer = configured.get(QUERY_ORDER_PATH, query_string={"orderId": "MOCKPERIODYEARNEW"})
    assert "not 'SDK-HMAC-SHA256" in bearer.json["error_msg"]
    wrong_sk = query(configured, sk="not-the-secret-key-0001", orderId="MOCKPERIODYEARNEW")
    wrong_ak = query(configured, ak="NOT-THE-AK-000001", orderId="MOCKPERIODYEARNEW")
    stale = query(configured, now=datetime.now(UTC) - timedelta(minutes=16), orderId="MOCKPERIODYEARNEW")
    for refused, why in ((unsigned, "no Authorization"), (wrong_sk, "does not match"),
                         (wrong_ak, "access key"), (stale, "15 minutes")):  # fmt: skip
        assert refused.status_code == 401 and refused.json["error_code"] == "APIGW.0303", refused.json
        assert why in refused.json["error_msg"] and refused.json["request_id"]
    fresh = query(configured, now=datetime.now(UTC) - timedelta(minutes=14), orderId="MOCKPERIODYEARNEW")
    assert fresh.status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [({}, 400, "MKT.0101"), ({"orderId": "x" * 65}, 500, "MKT.0100"), ({"orderId": ""}, 500, "MKT.0100"),
     ({"orderId": "MOCKONETIMENEW", "extra": "1"}, 400, "MKT.0101")],
)  # fmt: skip
def test_query_order_names_bad_parameters(
    configured: FlaskClient, params: dict[str, str], status: int, code: str
) -> None:
    response = query(with_market_keys(configured), **params)
    assert (response.status_code, response.json["resultCode"]) == (status, code), response.json


def test_open_api_calls_without_market_keys_are_refused(client: FlaskClient) -> None:
    response = query(client, orderId="MOCKPERIODYEARNEW")
    assert response.status_code == 401 and response.json["error_code"] == "APIGW.0303"
    pushed = push(client, {"usage_records": [usage_record()]})
    assert pushed.status_code == 401 and pushed.json["resultCode"] == "MKT.0154"


def test_usage_push_keeps_records_once_and_answers_by_the_contract(configured: FlaskClient) -> None:
    records = [usage_record(), usage_record(usage_value="2.5")]
    response = push(configured, {"usage_records": records})
    assert response.status_code == 200, response.json
    assert validate(response.json, "openapi", "usagePush", "response") == []
    assert response.json == {"resultCode": "MKT.0000", "resultMsg": "Success"}
    kept = configured.get("/api/usage").json["usage_records"]
    assert {r["metering_sn"] for r in kept} == {r["metering_sn"] for r in records}
    assert "usage" in configured.get("/marketplace").data.decode()


def _too_many() -> dict[str, Any]:
    return {"usage_records": [usage_record() for _ in range(1001)]}


BAD_USAGE = [
    pytest.param(None, b"{not json", 400, "MKT.0199", "not UTF-8 JSON", id="garbage-json"),
    pytest.param(None, b"\xff\xfe\x00", 400, "MKT.0199", "not UTF-8 JSON", id="not-utf8"),
    pytest.param(None, b'{"usage_records": [NaN]}', 400, "MKT.0199", "NaN is not a JSON number", id="nan"),
    pytest.param(None, b"[" * 100000, 400, "MKT.0199", "not UTF-8 JSON", id="deeply-nested"),
    pytest.param([1, 2], None, 400, "MKT.0199", "JSON object", id="a-list"),
    pytest.param({}, None, 400, "MKT.0101", "usage_records", id="no-records"),
    pytest.param({"usage_records": "x"}, None, 500, "MKT.0100", "$.usage_records", id="records-a-string"),
    pytest.param({"usage_records": []}, None, 500, "MKT.0100", "$.usage_records", id="no-record"),
    pytest.param({"usage_records": [usage_record(instance_id=5)]}, None, 500, "MKT.0100", "instance_id",
                 id="id-a-number"),
    pytest.param({"usage_records": [usage_record(usage_value="-1")]}, None, 500, "MKT.0100", "usage_value",
                 id="negative"),
    pytest.param({"usage_records": [usage_record(usage_value="1.23456")]}, None, 500, "MKT.0100",
                 "usage_value", id="5-decimals"),
    pytest.param({"usage_records": [usage_record(begin_time="2024-01-01")]}, None, 500, "MKT.0100",
                 "begin_time", id="bad-time"),
    pytest.param({"usage_records": [usage_record(end_time="20240231T000000Z")]}, None, 500, "MKT.0100",
                 "not a real time", id="no-such-day"),
    pytest.param({"usage_records": [usage_record(end_time="20000101T000000Z")]}, None, 500, "MKT.9002",
                 "end_time is not after begin_time", id="ends-before-it-begins"),
    pytest.param({"usage_records": [usage_record(begin_time="20000101T000000Z",
                                                 end_time="20000101T010000Z")]},
                 None, 500, "MKT.9004", "21 days", id="too-old"),
    pytest.param({"usage_records": [usage_record(product_id="x")]}, None, 400, "MKT.0101", "old usage push",
                 id="old-api-field"),
    pytest.param(_too_many(), None, 500, "MKT.9003", "at most 1000", id="too-many"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "raw", "status", "code", "message"), BAD_USAGE)
def test_usage_push_names_bad_input(
    configured: FlaskClient, body: Any, raw: bytes | None, status: int, code: str, message: str
) -> None:
    response = push(configured, body, raw=raw)
    assert response.status_code == status, response.json
    assert response.json["resultCode"] == code and message in response.json["resultMsg"]
    assert validate(response.json, "openapi", "usagePush", "response") == []


def test_usage_push_refuses_wrong_signatures_replays_and_oversized_or_misrouted_calls(
    configured: FlaskClient,
) -> None:
    body = {"usage_records": [usage_record()]}
    wrong = push(configured, body, key="not-the-key-00001")
    assert wrong.status_code == 401 and wrong.json["resultCode"] == "MKT.0154"
    unsigned = configured.post(USAGE_PATH, json=body)
    assert unsigned.status_code == 400 and unsigned.json["resultCode"] == "MKT.0101"
    data, headers = sign_usage_push(ACCESS_KEY, body)
    first = configured.post(USAGE_PATH, data=data, headers=headers, content_type="application/json")
    again = configured.post(USAGE_PATH, data=data, headers=headers, content_type="application/json")
    assert first.status_code == 200 and again.status_code == 401 and "nonce" in again.json["resultMsg"]
    huge = configured.post(USAGE_PATH, data=b"x" * (2 << 20), headers=headers)
    assert huge.status_code == 413 and huge.json["error_msg"]
    assert configured.get(USAGE_PATH).status_code == 405
    assert configured.post(QUERY_ORDER_PATH).status_code == 405


def test_every_inbound_call_is_recorded_whatever_its_outcome(configured: FlaskClient) -> None:
    with_market_keys(configured)
    push(configured, {"usage_records": [usage_record()]})
    push(configured, None, raw=b"{garbage")
    query(configured, orderId="MOCKPERIODYEARNEW")
    configured.get(QUERY_ORDER_PATH)
    inbound = configured.get("/api/inbound").json["exchanges"]
    assert [(e["activity"], e["response"]["status"]) for e in inbound] == [
        ("queryOrder", 401),
        ("queryOrder", 200),
        ("usagePush", 400),
        ("usagePush", 200),
    ]
    assert all(e["direction"] == "inbound" for e in inbound)
    assert inbound[1]["response"]["result_code"] == "MKT.0000"
    assert inbound[1]["verdict"]["gateway"]["authenticated"] is True
    assert inbound[0]["verdict"]["gateway"]["reason"] == "MALFORMED_AUTHORIZATION"  # the console's Bearer
    assert inbound[3]["verdict"]["code"] == "MKT.0000"
    assert inbound[2]["verdict"]["problems"][0].startswith("other request-parameter error")
    assert MARKET_SK not in json.dumps(inbound)
    assert "queryOrder" in configured.get("/marketplace").data.decode()


def test_a_merchant_pushes_usage_and_queries_an_order_against_a_running_server(
    app: Flask, merchant: dict[str, Any]
) -> None:
    """The merchant side, over real HTTP with Huawei's signer: what a seller's integration test does."""
    market_state(app).configure(merchant | {"market_ak": MARKET_AK, "market_sk": MARKET_SK})
    with BackgroundServer(app) as server, requests.Session() as session:
        session.headers["X-Koosim-Token"] = server_token(app)
        base = server.base_url
        call = session.post(
            f"{base}/api/calls",
            json={
                "activity": "newInstance",
                "fields": session.get(f"{base}/api/activities/newInstance/template").json()["fields"],
            },
            timeout=10,
        ).json()
        order = json.loads(call["exchange"]["request"]["body"])
        instance_id = json.loads(call["exchange"]["response"]["body"])["instanceId"]

        signed_query = apig.sign(
            "GET", f"{base}{QUERY_ORDER_PATH}?orderId={order['orderId']}", MARKET_AK, MARKET_SK
        )
        answer = session.get(signed_query.url, headers=signed_query.headers, timeout=10)
        assert answer.status_code == 200 and answer.json()["orderInfo"]["orderId"] == order["orderId"]
        assert validate(answer.json(), "openapi", "queryOrder", "response") == []

        data, headers = sign_usage_push(
            ACCESS_KEY, {"usage_records": [usage_record(instance_id=instance_id)]}
        )
        pushed = session.post(
            base + USAGE_PATH, data=data, headers=headers | {"Content-Type": "application/json"}, timeout=10
        )
        assert pushed.status_code == 200 and pushed.json()["resultCode"] == "MKT.0000"
        assert (
            session.get(f"{base}/api/usage", timeout=10).json()["usage_records"][0]["instance_id"]
            == instance_id
        )


# --- koosim serve --------------------------------------------------------------------------------------


def test_koosim_serve_starts_on_a_free_port_and_stops_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ)  # conftest.py has unset every KOOSIM_*
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", "--port", "0", "--db", str(tmp_path / "h.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env | {"COLUMNS": "200"},
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        base = re.search(r"http://127\.0\.0\.1:\d+", first).group(0)  # type: ignore[union-attr]
        token = re.search(r"\?token=([\w-]+)", first).group(1)  # type: ignore[union-attr]
        assert requests.get(f"{base}/api/target", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        target = requests.get(f"{base}/api/target", headers=bearer, timeout=10).json()
        assert target["bundled"] is True and target["access_key"] == "set"
        assert requests.get(f"{base}/", headers=bearer, timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.returncode == 0
    assert (tmp_path / "h.db").is_file()


def test_koosim_serve_names_an_unusable_history(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(cli_main, ["serve", "--port", "0", "--db", str(tmp_path / "file" / "h.db")])
    assert result.exit_code == 2 and "cannot create" in result.output
