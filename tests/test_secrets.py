"""No secret leaves koosim: not the access key, not the sync key, not a decrypted appInfo password,
not a decrypted e-mail or phone number, whatever the merchant echoes back.

Every command that talks to a merchant runs against ``hostile.echo``, a merchant that echoes
all of them into its answers (and cuts the access key in two inside an over-long resultCode).
Then stdout, stderr, every report (JSON, JUnit, HTML), every file under the test's directory
(the run history's database and its write-ahead log byte for byte, saved scenarios, the
example database) and every answer of the server's JSON API and console are searched for any
ten-character run of any secret's random part.
"""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile.cli import Finished, koosim_env, run_id, run_koosim
from hostile.echo import Secrets, echo_merchant, new_secrets

from simulator.protocol import EncryptType, encrypt, public_key_pem
from simulator.redaction import REDACTED
from simulator.reference import PRODUCE_PATH
from simulator.server import create_app, market_state
from simulator.serving import BackgroundServer
from simulator.store import Store

SERVER_TOKEN = "secrets-test-server-token-0001"
TOOL_EMAIL = "buyer+tag@example.com"
"""The e-mail security.v1-authtoken-encoded-values encrypts into its v1 call."""
TOOL_EMAIL_SPELLINGS = (
    TOOL_EMAIL,
    "buyer%2Btag%40example.com",
    "buyer%2Btag@example.com",
    "buyer tag@example.com",
)
HARD_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def echoed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every command run once against the echoing merchant: their outputs and the files they left."""
    tmp = tmp_path_factory.mktemp("secrets")
    found = new_secrets()
    app, config = echo_merchant(found)
    public_key = tmp / "merchant-public.pem"
    public_key.write_bytes(public_key_pem(config.rsa_private_key))
    scenarios = tmp / "scenarios"
    scenarios.mkdir()
    (scenarios / "v1-contact.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: v1-contact
            description: >
              A v1 order carrying the buyer's encrypted e-mail and phone number. It expects a
              refusal, so that koosim play prints the (echoing) answer it gets instead.
            protocol: v1
            seed: 7
            steps:
              - id: new
                activity: newInstance
                fields:
                  email: "{encrypt(found.email, found.access_key, EncryptType.AES256)}"
                  mobilePhone: "{encrypt(found.phone, found.access_key, EncryptType.AES128)}"
                expect:
                  resultCode: "000001"
            """
        ),
        encoding="utf-8",
    )
    env = koosim_env(
        tmp,
        KOOSIM_ACCESS_KEY=found.access_key,
        KOOSIM_SYNC_KEY=found.sync_key,
        KOOSIM_RSA_PUBLIC_KEY=str(public_key),
    )
    outputs: dict[str, bytes] = {}
    finished: dict[str, Finished] = {}
    # SQLite deletes the write-ahead log when its last connection closes: one held open by the
    # test keeps the -wal files (and whatever was written through them) there to be searched
    keepers = [_hold_open(tmp / "koosim.db"), _hold_open(tmp / "serve.db")]

    def koosim(name: str, *args: str) -> Finished:
        result = run_koosim(list(args), cwd=tmp / "work", env=env, hard_timeout=HARD_TIMEOUT_S)
        assert result.returncode is not None, result
        assert "Traceback" not in result.output, result
        finished[name] = result
        outputs[f"koosim {name}: stdout+stderr"] = result.output.encode("utf-8")
        return result

    with BackgroundServer(app) as merchant:
        url = merchant.base_url + PRODUCE_PATH
        reports = tmp / "reports"
        for protocol in ("v2", "v1"):
            koosim(
                f"verify {protocol}",
                "verify",
                "--url",
                url,
                "--protocol",
                protocol,
                "--timeout",
                "5",
                "--junit",
                str(reports / f"{protocol}.xml"),
                "--json",
                str(reports / f"{protocol}.json"),
                "--html",
                str(reports / f"{protocol}.html"),
            )
        koosim(
            "play",
            "play",
            "new-order",
            "full-lifecycle",
            "upgrade",
            "user-sync",
            "application-sync",
            "new-order-v1",
            "v1-contact",
            "--scenarios",
            str(scenarios),
            "--url",
            url,
        )
        koosim("explore v2", "explore", "--url", url, "--max-examples", "15", "--seed", "3")
        koosim("explore v1", "explore", "--url", url, "--protocol", "v1", "--max-examples", "5")
        koosim("runs", "runs", "--limit", "50")
        for protocol in ("v2", "v1"):
            verified = run_id(finished[f"verify {protocol}"].output)
            koosim(f"show {protocol}", "show", verified)
            koosim(f"show --json {protocol}", "show", "--json", verified)
        outputs.update(_serve(url, found, public_key.read_text(encoding="ascii"), tmp / "serve.db"))
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            outputs[str(path.relative_to(tmp))] = path.read_bytes()
    for keeper in keepers:
        keeper.close()
    yield {"secrets": found, "outputs": outputs, "finished": finished, "tmp": tmp}


def _hold_open(path: Path) -> sqlite3.Connection:
    Store(path)  # creates the file in WAL mode, as every koosim command would
    keeper = sqlite3.connect(path)
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # a read opens the log
    return keeper


def _serve(url: str, found: Secrets, public_key: str, db: Path) -> dict[str, bytes]:
    """Drive the server's JSON API (and the console pages of what it recorded) against the merchant."""
    app = create_app(Store(db), token=SERVER_TOKEN)
    client = app.test_client()
    client.environ_base["HTTP_X_KOOSIM_TOKEN"] = SERVER_TOKEN
    answers: dict[str, bytes] = {}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = client.open(path, method=method, **kwargs)
        answers[f"serve: {method} {path}"] = response.get_data()
        assert response.status_code < 500, (path, response.get_data(as_text=True))
        return response

    try:
        call(
            "PUT",
            "/api/target",
            json={
                "url": url,
                "access_key": found.access_key,
                "sync_key": found.sync_key,
                "rsa_public_key": public_key,
                "timeout": 5,
            },
        )
        started = call("POST", "/api/runs", json={"checks": ["*"]}).get_json()
        assert market_state(app).wait_for_runs(120)
        run = started["run_id"]
        exchanges = call("GET", f"/api/runs/{run}").get_json()["exchanges"]
        call("GET", f"/api/runs/{run}/exchanges")
        call("GET", "/api/runs")
        for exchange in exchanges[:40]:
            call("GET", f"/api/exchanges/{exchange['id']}")
            call("GET", f"/exchanges/{exchange['id']}")
        call("GET", f"/runs/{run}")
        call("GET", "/runs")
        template = call("GET", "/api/activities/newInstance/template").get_json()["fields"]
        call("POST", "/api/calls", json={"activity": "newInstance", "fields": template})
        play = call("POST", "/api/plays", json={"scenario": "full-lifecycle"}).get_json()
        for _ in play["steps"]:
            call("POST", f"/api/plays/{play['play_id']}/next", json={})
        call("POST", f"/api/plays/{play['play_id']}/finish")
        call("GET", f"/play/{play['play_id']}")
        call("GET", "/api/inbound")
        call("GET", "/api/outbox")
        call("GET", "/outbox")
        call("GET", "/")
    finally:
        market_state(app).close()
    return answers


def test_no_secret_appears_in_any_output_report_file_or_the_database(echoed: dict[str, Any]) -> None:
    found: Secrets = echoed["secrets"]
    leaks = {where: names for where, data in echoed["outputs"].items() if (names := found.leaks(data))}
    leaks |= {
        where: ["the tool's own decrypted v1 email"]
        for where, data in echoed["outputs"].items()
        if any(spelling.encode() in data for spelling in TOOL_EMAIL_SPELLINGS)
    }
    assert not leaks, f"secrets leaked: {leaks}"


def test_every_kind_of_output_was_searched(echoed: dict[str, Any]) -> None:
    """The search above covered what it claims to: every command, report and file kind."""
    outputs: dict[str, bytes] = echoed["outputs"]
    names = set(outputs)
    for command in (
        "verify v2",
        "verify v1",
        "play",
        "explore v2",
        "explore v1",
        "runs",
        "show v2",
        "show --json v1",
    ):
        assert f"koosim {command}: stdout+stderr" in names
    for suffix in (".xml", ".json", ".html", "koosim.db", "koosim.db-wal", "serve.db", ".yaml"):
        assert any(name.endswith(suffix) for name in names), suffix
    assert any(name.startswith("serve: POST /api/runs") for name in names)
    assert any(name.startswith("serve: POST /api/plays/") for name in names)
    assert sum(len(data) for data in outputs.values()) > 1_000_000  # a real amount of output


def test_the_merchant_did_echo_and_koosim_redacted_what_it_echoed(echoed: dict[str, Any]) -> None:
    """Proof that the secrets reached koosim (no leak because none was sent would prove nothing)."""
    outputs: dict[str, bytes] = echoed["outputs"]
    report = outputs["reports/v2.json"].decode("utf-8")
    assert f"your password is {REDACTED}" in report  # decrypted by the transport, then redacted
    assert f"access key {REDACTED}, sync key {REDACTED}" in report
    v1_report = outputs["reports/v1.json"].decode("utf-8")
    assert f"email {REDACTED}, mobilePhone None" in v1_report  # the tool's v1 e-mail, echoed
    played = " ".join(echoed["finished"]["play"].output.split())
    assert f"email {REDACTED}, mobilePhone {REDACTED}" in played  # the scenario's contact, echoed
    database = b"".join(data for name, data in outputs.items() if name.startswith("koosim.db"))
    # the access key cut in two by a schema message is masked before it is cut
    assert f"resultCode '{'0' * 50}{REDACTED}'".encode() in database
