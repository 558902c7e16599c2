"""``koosim serve`` safe by default, and no hostile byte reaches a terminal (issue 13).

One test (or a parametrized family) per finding of the attack on the server and the CLI: each
failed before its fix. The fuzz test of the JSON API from its own OpenAPI document is in
``test_fuzz_api.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from conftest import no_server_errors
from flask import Flask
from flask.testing import FlaskClient
from test_server import ACCESS_KEY, MARKET_AK, MARKET_SK, SYNC_KEY, push, query, usage_record

from simulator import settings as config
from simulator.cli import main as cli_main
from simulator.protocol import apig
from simulator.protocol.usage_signature import sign_usage_push
from simulator.protocol.usage_signature import signature as usage_signature
from simulator.redaction import printable
from simulator.reference import PRODUCE_PATH, MerchantConfig
from simulator.reference import create_app as create_merchant
from simulator.server import create_app, market_state
from simulator.server.guard import TokenError, bind_problem, is_loopback
from simulator.server.guard import server_token as process_token
from simulator.server.openapi import QUERY_ORDER_PATH, USAGE_PATH
from simulator.server.wsgi import Server
from simulator.serving import BackgroundServer
from simulator.store import INBOUND, Store

TOKEN = "security-test-token-0123456789"
HOSTILE = "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\x1b[2J\x1b]0;pwned\x07\x1bP+q\x1b\\\u009b31m"
INVISIBLE = "\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d"


@pytest.fixture(scope="module")
def merchant() -> Iterator[dict[str, Any]]:
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    with BackgroundServer(create_merchant(config)) as server:
        yield {
            "url": server.base_url + PRODUCE_PATH,
            "access_key": ACCESS_KEY,
            "sync_key": SYNC_KEY,
            "timeout": 5,
        }


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The server over a fresh history, run from ``tmp_path``; no test may see it answer a 5xx."""
    monkeypatch.chdir(tmp_path)
    with no_server_errors(create_app(Store(tmp_path / "koosim.db"), token=TOKEN)) as app:
        yield app


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


@pytest.fixture
def configured(client: FlaskClient, merchant: dict[str, Any]) -> FlaskClient:
    assert client.put("/api/target", json=merchant).status_code == 200
    return client


# --- scenario names, never paths -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/passwd", ".env", "../.env", "./.env", "secrets.yaml", "/etc"])
def test_a_scenario_session_reads_no_file_but_the_library(
    configured: FlaskClient, tmp_path: Path, name: str
) -> None:
    (tmp_path / ".env").write_text(f"KOOSIM_ACCESS_KEY={ACCESS_KEY}\nOTHER=top-secret-line\n")
    (tmp_path / "secrets.yaml").write_text(
        "name: x\nsteps: [{id: a, activity: newInstance}]\npassword: hunter2\n"
    )
    api = configured.post("/api/plays", json={"scenario": name})
    page = configured.post("/play", data={"scenario": name})
    missing = configured.post("/api/plays", json={"scenario": "/no/such/file.yaml"})
    for answer in (api, page):
        text = answer.get_data(as_text=True)
        assert answer.status_code == 400
        assert (
            "root:" not in text
            and "top-secret" not in text
            and ACCESS_KEY not in text
            and "hunter2" not in text
        )
    # an existing path and a missing one get the same answer: nothing tells whether a file exists
    assert api.json["error"].split(":", 1)[1] == missing.json["error"].split(":", 1)[1]
    assert "no scenario of that name" in api.json["error"]


def test_a_scenario_of_a_configured_folder_plays_by_name(tmp_path: Path, merchant: dict[str, Any]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "just_one.yaml").write_text(
        "name: just-one\ndescription: one order\nsteps:\n  - id: new\n    activity: newInstance\n"
        "    expect: {resultCode: '000000'}\n"
    )
    app = create_app(Store(tmp_path / "koosim.db"), token=TOKEN, scenario_dirs=[folder])
    client = app.test_client()
    client.environ_base["HTTP_X_KOOSIM_TOKEN"] = TOKEN
    try:
        client.put("/api/target", json=merchant)
        assert "just-one" in [entry["name"] for entry in client.get("/api/scenarios").json["scenarios"]]
        for name in ("just-one", "just_one", "renewal"):
            assert client.post("/api/plays", json={"scenario": name}).status_code == 201, name
        assert client.post("/api/plays", json={"scenario": str(folder / "just_one.yaml")}).status_code == 400
    finally:
        market_state(app).close()


# --- DNS rebinding and the token -----------------------------------------------------------------


REBOUND = {
    "Host": "attacker.example:5000",
    "Origin": "http://attacker.example:5000",
    "Sec-Fetch-Site": "same-origin",
}


def test_dns_rebinding_reads_nothing_and_changes_nothing(configured: FlaskClient, app: Flask) -> None:
    before = market_state(app).settings
    attempts = [
        configured.get("/api/runs", headers=REBOUND),
        configured.get("/", headers=REBOUND),
        configured.get("/call?activity=releaseInstance", headers=REBOUND),
        configured.get("/api/activities/releaseInstance/template", headers=REBOUND),
        configured.put("/api/target", json={"url": "http://attacker.example/produceAPI"}, headers=REBOUND),
        configured.post("/api/calls", json={"activity": "releaseInstance", "fields": {}}, headers=REBOUND),
    ]
    assert [answer.status_code for answer in attempts] == [403] * len(attempts)
    assert "loopback" in attempts[0].json["error"]
    assert market_state(app).settings == before
    assert configured.get("/api/runs").json["runs"] == []


@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.2", "LOCALHOST"])
def test_loopback_names_are_served(client: FlaskClient, host: str) -> None:
    assert client.get("/api/target", headers={"Host": host}).status_code == 200


def test_the_host_the_server_was_started_with_is_served(tmp_path: Path) -> None:
    app = create_app(Store(tmp_path / "koosim.db"), token=TOKEN, hosts=["koosim.internal"])
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/target", headers=bearer | {"Host": "koosim.internal:5000"}).status_code == 200
    assert client.get("/api/target", headers=bearer | {"Host": "other.internal:5000"}).status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/runs"), ("GET", "/api/target"), ("PUT", "/api/target"), ("POST", "/api/calls"),
     ("GET", "/"), ("GET", "/runs"), ("POST", "/target"), ("GET", "/api/openapi.json")],
)  # fmt: skip
def test_without_the_token_nothing_is_read_or_changed(anonymous: FlaskClient, method: str, path: str) -> None:
    answer = anonymous.open(path, method=method, json={"contact": "x"})
    assert answer.status_code == 401
    assert "token" in answer.get_data(as_text=True)
    wrong = anonymous.open(path, method=method, headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401


def test_the_token_in_a_header_or_the_printed_address(anonymous: FlaskClient) -> None:
    assert anonymous.get("/api/target", headers={"X-Koosim-Token": TOKEN}).status_code == 200
    assert anonymous.get("/api/target", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert anonymous.get("/?token=wrong-token-wrong-token").status_code == 401
    login = anonymous.get(f"/runs?token={TOKEN}")
    assert login.status_code == 302 and login.headers["Location"] == "/runs"
    cookie = login.headers["Set-Cookie"]
    assert TOKEN in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert anonymous.get("/runs").status_code == 200  # the browser now sends the cookie
    assert anonymous.get("/api/runs").status_code == 200


def test_merchants_call_the_marketplace_apis_without_the_token(client: FlaskClient, app: Flask) -> None:
    market_state(app).configure(
        {"url": "http://127.0.0.1:9/produceAPI", "access_key": ACCESS_KEY, "market_ak": MARKET_AK,
         "market_sk": MARKET_SK}
    )  # fmt: skip
    anonymous = app.test_client()
    assert query(anonymous, orderId="MOCKPERIODYEARNEW").status_code == 200
    assert anonymous.get(USAGE_PATH).status_code == 405
    assert client.get("/static/console.css").status_code == 200


def test_a_target_moved_to_another_host_forgets_the_keys(
    configured: FlaskClient, merchant: dict[str, Any]
) -> None:
    same_host = merchant["url"].replace("/produceAPI", "/other")
    kept = configured.put("/api/target", json={"url": same_host}).json
    assert kept["access_key"] == kept["sync_key"] == "set"
    moved = configured.put("/api/target", json={"url": "http://attacker.example/produceAPI"}).json
    assert moved["access_key"] == moved["sync_key"] == "not set"
    given = configured.put("/api/target", json={"url": merchant["url"], "access_key": "a-new-key-0001"}).json
    assert given["access_key"] == "set" and given["sync_key"] == "not set"
    configured.put(
        "/api/target", json={"notification_url": "http://127.0.0.1:9/n", "notification_token": "tok-0001"}
    )
    moved = configured.put("/api/target", json={"notification_url": "http://attacker.example/n"}).json
    assert moved["notification_token"] == "not set"


def test_no_page_may_be_framed(client: FlaskClient, anonymous: FlaskClient) -> None:
    for answer in (client.get("/"), client.get("/call?activity=releaseInstance"), client.get("/api/target"),
                   anonymous.get("/"), client.get(QUERY_ORDER_PATH)):  # fmt: skip
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Referrer-Policy"] == "same-origin"


# --- the token and the bind address of koosim serve ----------------------------------------------


def test_the_process_token() -> None:
    random_one, from_env = process_token({})
    assert not from_env and len(random_one) >= 32 and random_one != process_token({})[0]
    assert process_token({"KOOSIM_SERVE_TOKEN": TOKEN}) == (TOKEN, True)
    for bad in ("short", "x" * 15, "sixteen chars\x1b[2J", "with a space in it, long enough"):
        with pytest.raises(TokenError, match="at least 16"):
            process_token({"KOOSIM_SERVE_TOKEN": bad})


def test_a_non_loopback_bind_needs_the_token_from_the_environment() -> None:
    assert bind_problem("127.0.0.1", False) is None and bind_problem("::1", False) is None
    assert bind_problem("localhost", False) is None
    assert "KOOSIM_SERVE_TOKEN" in (bind_problem("0.0.0.0", False) or "")
    assert bind_problem("0.0.0.0", True) is None
    assert (
        is_loopback("127.8.9.10") and not is_loopback("0.0.0.0") and not is_loopback("localhost.evil.example")
    )


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--host", "0.0.0.0"], {}, "KOOSIM_SERVE_TOKEN"),
        (["--host", "192.0.2.1"], {}, "KOOSIM_SERVE_TOKEN"),
        ([], {"KOOSIM_SERVE_TOKEN": "too-short"}, "at least 16"),
        (["--url", "http://[::1"], {}, "not a URL"),
        (["--url", "http://127.0.0.1:9/\x1b[2J"], {}, "control"),
    ],
)
def test_koosim_serve_refuses_to_start_unsafely(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(
        cli_main, ["serve", "--port", "0", "--db", str(tmp_path / "h.db"), *arguments], env=environment
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_koosim_serve_runs_on_waitress_with_the_token_from_the_environment(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KOOSIM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", "--port", "0", "--db", str(tmp_path / "h.db")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env | {"COLUMNS": "200", "KOOSIM_SERVE_TOKEN": TOKEN}, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"?token={TOKEN}" in first, first
        base = re.search(r"http://127\.0\.0\.1:\d+", first).group(0)  # type: ignore[union-attr]
        answer = requests.get(f"{base}/api/target", headers={"X-Koosim-Token": TOKEN}, timeout=10)
        assert answer.status_code == 200 and answer.headers["Server"] == "koosim"
        assert requests.get(f"{base}/api/target", timeout=10).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_idle_connections_neither_hold_threads_nor_stay_open(app: Flask) -> None:
    server = Server(app, "127.0.0.1", 0, channel_timeout=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    threads_before = threading.active_count()
    idle = []
    try:
        for _ in range(250):  # each was a thread of Werkzeug's development server, forever
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        started = time.monotonic()
        answer = requests.get(
            f"http://127.0.0.1:{server.port}/api/target", headers={"X-Koosim-Token": TOKEN}, timeout=10
        )
        assert answer.status_code == 200 and time.monotonic() - started < 5
        assert answer.headers["Server"] == "koosim"
        assert threading.active_count() - threads_before <= 10
        assert idle[0].recv(1) == b""  # the server hung up on an idle connection (within ~4 s)
    finally:
        for connection in idle:
            connection.close()
        server.close()
        thread.join(10)


# --- key files ----------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["device", "fifo", "huge"])
def test_a_key_file_is_read_with_a_cap_and_only_when_regular(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "key.fifo"
        os.mkfifo(path)
    else:
        path = tmp_path / "key.pem"
        path.write_bytes(b"A" * (10 << 20))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOOSIM_RSA_PUBLIC_KEY", str(path))
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load_settings({"url": "http://127.0.0.1:9/produceAPI"})


# --- hostile bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("char", [*HOSTILE, *INVISIBLE, "\u2028", "\u00ad", "\U000e0041"])
def test_printable_spells_out_every_hostile_character(char: str) -> None:
    if char.isprintable() and char not in INVISIBLE and char not in "\u00ad":
        assert printable(char) == char
        return
    shown = printable(f"a{char}b")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b")
    assert shown.isascii()


def test_printable_on_one_line_spells_out_line_breaks() -> None:
    assert printable("000000\rFAILED\n", one_line=True) == "000000\\x0dFAILED\\x0a"
    assert printable("line\nnext") == "line\nnext"
    assert printable("中文 ✓ émoji 😀") == "中文 ✓ émoji 😀"


def test_the_console_shows_no_hostile_character(client: FlaskClient) -> None:
    client.put("/api/target", json={"contact": f"ops{HOSTILE}{INVISIBLE}@example.com"})
    for page in (client.get("/target"), client.get("/")):
        text = page.get_data(as_text=True)
        assert not {char for char in HOSTILE + INVISIBLE if not char.isprintable()} & set(text)


BAD_URLS = [
    "http://127.0.0.1:9/\x1b]0;pwned\x07",
    "http://127.0.0.1:9/\u202eIPAecudorp",
    "http://127.0.0.1:9/a\u200bb",
    "http://127.0.0.1:9/a b",
    "http://[::1",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_url_with_control_characters_is_refused(client: FlaskClient, url: str) -> None:
    assert config.url_problem(url) is not None
    answer = client.put("/api/target", json={"url": url})
    assert (
        answer.status_code == 400
        and "\x1b" not in answer.json["error"]
        and "\u202e" not in answer.json["error"]
    )
    assert client.post("/target", data={"url": url}).status_code == 400


def test_an_error_message_never_quotes_a_key(client: FlaskClient) -> None:
    client.put("/api/target", json={"url": "http://127.0.0.1:9/produceAPI", "access_key": ACCESS_KEY})
    answer = client.put("/api/target", json={"url": f"ftp://{ACCESS_KEY}/x"})
    assert answer.status_code == 400 and ACCESS_KEY not in answer.get_data(as_text=True)
    page = client.post("/target", data={"url": f"ftp://{ACCESS_KEY}/x"})
    assert page.status_code == 400 and ACCESS_KEY not in page.get_data(as_text=True)


# --- inputs that gave HTTP 500 --------------------------------------------------------------------


DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/target"), ("POST", "/api/calls"), ("POST", "/api/runs"), ("POST", "/api/plays"),
     ("POST", "/api/notifications"), ("POST", "/api/plays/nope/next")],
)  # fmt: skip
def test_deeply_nested_json_is_a_400(configured: FlaskClient, method: str, path: str, body: str) -> None:
    answer = configured.open(path, method=method, data=body, content_type="application/json")
    assert answer.status_code in (400, 404) and "error" in answer.json


def test_deeply_nested_console_fields_are_a_400(configured: FlaskClient) -> None:
    for path in ("/call?activity=newInstance", "/notify"):
        assert configured.post(path, data={"fields": DEEP_OBJECT}).status_code == 400


def test_a_deep_sync_call_is_refused_before_it_is_sent(configured: FlaskClient, app: Flask) -> None:
    fields: dict[str, Any] = {"instanceId": "i-1"}
    nested = fields
    for _ in range(600):
        nested["x"] = {}
        nested = nested["x"]
    answer = configured.post("/api/calls", json={"activity": "authSync", "fields": fields})
    assert answer.status_code == 400 and "nest" in answer.json["error"]
    store = market_state(app).store
    assert (
        store.marketplace.outbox() == [] and store.history.runs() == []
    )  # nothing sent, nothing half-recorded


def test_a_lone_surrogate_is_a_400(configured: FlaskClient) -> None:
    body = '{"scenario": "\\ud800"}'
    assert configured.post("/api/plays", data=body, content_type="application/json").status_code == 400
    usage = json.dumps({"usage_records": [usage_record(instance_id="\udfff")]})
    pushed = push(configured, None, raw=usage.encode())
    assert pushed.status_code == 400 and pushed.json["resultCode"] == "MKT.0199"
    assert "lone surrogate" in pushed.json["resultMsg"]


@pytest.mark.parametrize("number", ["99999999999999999999", str(2**63)])
def test_an_id_past_sqlite_integers_is_a_404(configured: FlaskClient, number: str) -> None:
    assert configured.get(f"/api/outbox/{number}").status_code == 404
    assert configured.post(f"/api/outbox/{number}/continue").status_code == 404
    assert configured.post(f"/api/outbox/{number}/stop").status_code == 404
    assert configured.post(f"/outbox/{number}/stop").status_code == 404


@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, -1])
def test_a_seed_sqlite_cannot_store_is_a_400(configured: FlaskClient, seed: int) -> None:
    assert configured.post("/api/runs", json={"seed": seed}).status_code == 400
    assert configured.post("/runs", data={"seed": str(seed)}).status_code == 400
    assert configured.get("/api/runs").json["runs"] == []


def test_a_bad_ipv6_url_is_one_line_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli_main, ["verify", "--url", "http://[::1"], env={"KOOSIM_ACCESS_KEY": "k" * 20}
    )
    assert result.exit_code == 2 and "not a URL" in result.output and "Traceback" not in result.output


# --- the marketplace APIs a merchant calls --------------------------------------------------------


def test_the_same_signed_query_twice_is_answered_twice(configured: FlaskClient, app: Flask) -> None:
    """The AK/SK scheme has no nonce and no page names a replay rule (U40): a merchant asking for
    one order twice in a second (a resend, two copies of one call) must not lose its order."""
    market_state(app).configure({"market_ak": MARKET_AK, "market_sk": MARKET_SK})
    signed = apig.sign(
        "GET", f"http://localhost{QUERY_ORDER_PATH}?orderId=MOCKPERIODYEARNEW", MARKET_AK, MARKET_SK
    )
    path = signed.url.removeprefix("http://localhost")
    first = configured.get(path, headers=signed.headers)
    again = configured.get(path, headers=signed.headers)
    assert first.status_code == 200 and again.status_code == 200
    assert again.json["resultCode"] == first.json["resultCode"] == "MKT.0000"


@pytest.mark.parametrize(
    "date", ["20240230T000000Z", "2024-01-01T00:00:00Z", "20240101T000000", "1700000000"]
)
def test_an_inbound_x_sdk_date_must_be_well_formed(configured: FlaskClient, app: Flask, date: str) -> None:
    market_state(app).configure({"market_ak": MARKET_AK, "market_sk": MARKET_SK})
    url = f"http://localhost{QUERY_ORDER_PATH}?orderId=MOCKPERIODYEARNEW"
    signed = apig.sign("GET", url, MARKET_AK, MARKET_SK)  # Huawei's signer cannot sign such a date
    headers = signed.headers | {"X-Sdk-Date": date}
    answer = configured.get(signed.url.removeprefix("http://localhost"), headers=headers)
    assert answer.status_code == 401 and "YYYYMMDDTHHMMSSZ" in answer.json["error_msg"]


@pytest.mark.parametrize("spelling", ["1_{}", " {}", "{}0", "+{}", "{}.0"])
def test_a_usage_push_ts_is_13_digits(configured: FlaskClient, spelling: str) -> None:
    now = str(int(time.time() * 1000))
    ts = spelling.format(now[2:] if spelling.startswith("1_") else now)
    body = json.dumps({"usage_records": [usage_record()]}).encode()
    headers = {"ts": ts, "nonce": "n-1", "signature": usage_signature(ACCESS_KEY, ts, "n-1", body)}
    answer = configured.application.test_client().post(
        USAGE_PATH, data=body, headers=headers, content_type="application/json"
    )
    assert answer.status_code in (400, 401, 500) and answer.json["resultCode"] in ("MKT.0100", "MKT.0154")
    assert answer.json["resultCode"] != "MKT.0000"


def test_refused_inbound_calls_are_stored_cut(configured: FlaskClient, app: Flask) -> None:
    long_query = "orderId=" + "A" * 65000
    assert configured.get(f"{QUERY_ORDER_PATH}?{long_query}").status_code == 401
    body = json.dumps({"usage_records": [usage_record()], "padding": "x" * 100_000})
    assert (
        configured.application.test_client()
        .post(USAGE_PATH, data=body, content_type="application/json")
        .status_code
        == 400
    )
    stored = market_state(app).store.history.exchanges(direction=INBOUND, limit=5)
    record = json.dumps(stored)
    assert len(record) < 20_000, len(record)
    assert all(len(exchange["request"]["url"]) < 2100 for exchange in stored)


def test_a_cross_site_call_to_the_marketplace_apis_is_refused(configured: FlaskClient) -> None:
    body, headers = sign_usage_push(ACCESS_KEY, {"usage_records": [usage_record()]})
    headers |= {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}
    assert (
        configured.application.test_client().post(USAGE_PATH, data=body, headers=headers).status_code == 403
    )
    url = f"http://localhost{QUERY_ORDER_PATH}?orderId=MOCKPERIODYEARNEW"
    signed = apig.sign("GET", url, MARKET_AK, MARKET_SK)
    forged = configured.get(
        signed.url.removeprefix("http://localhost"),
        headers=signed.headers | {"Origin": "http://evil.example"},
    )
    assert forged.status_code == 403 and forged.json["error_msg"]


def test_the_server_publishes_its_openapi_document(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert {"/target", "/calls", "/runs", "/plays", "/outbox/{message_id}/stop"} <= set(document["paths"])


# --- no hostile byte reaches a terminal --------------------------------------------------------------

UNPRINTABLE = {char for char in HOSTILE + INVISIBLE if not char.isprintable()}


@pytest.fixture(scope="module")
def hostile_merchant() -> Iterator[str]:
    """A merchant that answers every call with escape sequences, C1 controls and bidi overrides."""
    app = Flask("hostile-merchant")

    @app.route("/produceAPI", methods=["GET", "POST"])
    def produce() -> Any:
        answer = {
            "resultCode": f"00{HOSTILE}{INVISIBLE}",
            "resultMsg": f"ok{HOSTILE}",
            "instanceId": f"i{HOSTILE}",
        }
        return app.response_class(json.dumps(answer), mimetype="application/json")

    with BackgroundServer(app) as server:
        yield server.base_url + "/produceAPI"


@pytest.mark.parametrize("step", [False, True], ids=["play", "play-step"])
def test_koosim_play_prints_no_hostile_byte(
    hostile_merchant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    arguments = [
        "play",
        "new-order",
        "--url",
        hostile_merchant,
        "--timeout",
        "5",
        "--db",
        str(tmp_path / "h.db"),
    ]
    result = CliRunner().invoke(
        cli_main,
        arguments + (["--step"] if step else []),
        env={"KOOSIM_ACCESS_KEY": ACCESS_KEY},
        input="\n" * 20,
    )
    assert result.exit_code == 1, result.output
    assert "\\x1b" in result.output or "\\x9b" in result.output  # shown, spelled out
    assert not UNPRINTABLE & set(result.output), repr(result.output)


def test_koosim_runs_and_show_print_no_hostile_byte(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    store = Store(db)
    url = f"http://127.0.0.1:9/{HOSTILE}{INVISIBLE}"  # written by an older koosim, or by hand
    store.history.begin_run("20261129T000000-abcdef", kind="verify", target={"url": url, "protocol": "v2"})
    store.history.finish_run("20261129T000000-abcdef", exit_code=1)
    for arguments in (["runs"], ["show", "20261129T000000-abcdef"]):
        result = CliRunner().invoke(cli_main, [*arguments, "--db", str(db)], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        assert "127.0.0.1:9" in result.output and not UNPRINTABLE & set(result.output), repr(result.output)


LOAD_SUMMARY = """
import json, sys
from rich.console import Console
from simulator.load import LoadSummary, print_summary
hostile, invisible = json.loads(sys.argv[1])
summary = LoadSummary(
    activities=[], requests=2, failures=0, orders=1, max_error_rate=0.01,
    errors=[("newInstance", "bad" + hostile, 1)],
    duplicates={"CS1-000001": {"i-1" + hostile, "i-2" + invisible}},
)
print_summary(Console(width=200, force_terminal=False), summary)
"""


def test_koosim_load_prints_no_hostile_instance_id() -> None:
    # in a process of its own: locust patches the standard library when it is imported
    finished = subprocess.run(
        [sys.executable, "-c", LOAD_SUMMARY, json.dumps([HOSTILE, INVISIBLE])],
        capture_output=True, text=True, timeout=60, env=os.environ | {"PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "CS1-000001" in finished.stdout and not UNPRINTABLE & set(finished.stdout), repr(finished.stdout)


@pytest.mark.parametrize("command", ["verify", "explore"])
def test_a_seed_past_2_63_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_main, [command, "--seed", str(2**63)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--seed'" in result.output, result.output


def test_a_hostile_answer_reaches_no_page_and_no_report_raw(
    client: FlaskClient, hostile_merchant: str
) -> None:
    from simulator.report import html as html_report
    from simulator.report import junit as junit_report

    client.put("/api/target", json={"url": hostile_merchant, "access_key": ACCESS_KEY})
    call = client.post("/api/calls", json={"activity": "newInstance", "fields": {"orderId": "CS1"}}).json
    assert HOSTILE not in json.dumps(call, ensure_ascii=False)
    record = market_state(client.application).store.history.run(call["run_id"])
    outputs = {
        "exchange page": client.get(f"/exchanges/{call['exchange']['id']}").get_data(as_text=True),
        "run page": client.get(f"/runs/{call['run_id']}").get_data(as_text=True),
        "html report": html_report.render(record),
        "junit report": junit_report.render(record),
    }
    for name, text in outputs.items():
        assert "resultCode" in text or "newInstance" in text, name
        assert not UNPRINTABLE & set(text), (name, sorted(UNPRINTABLE & set(text)))
