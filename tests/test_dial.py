"""Dial tests (simulator/engine/dial.py), their history (store/dial.py), the countdown in
``serve`` (server/dial.py: the timer and /api/dial) and ``koosim watch`` (docs/protocol.md §10.3).

Marketplace time is a frozen clock advanced by the test (or by watch's own --at clock, whose
waits jump): nothing sleeps through a marketplace day."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask, jsonify, request
from flask.testing import FlaskClient

from simulator.cli import main
from simulator.clock import FrozenClock
from simulator.engine.delisting import MARKETPLACE_TZ, Rule, dial_test_instants, run_verdict
from simulator.engine.dial import NO_INSTANCE_ID, dial_probes, dial_test
from simulator.model import OrderFactory
from simulator.protocol.profiles import Profile
from simulator.server import create_app
from simulator.server import token as server_token
from simulator.server.dial import service
from simulator.store import Store
from simulator.transport import Target

ACCESS_KEY = "dial-test-access-key-31"
SYNC_KEY = "dial-test-sync-key-32"
DAY_ONE = datetime(2026, 11, 2, 8, 0, tzinfo=MARKETPLACE_TZ)
"""A marketplace morning before the first dial test of the day (09:00, U14)."""


def answering(code: str | None, *, instance_id: bool = True) -> Flask:
    """A merchant whose produce interface answers every call with ``code`` (None: not JSON)."""
    app = Flask(__name__)

    @app.post("/produceAPI")
    def produce() -> Any:
        if code is None:
            return "<html>maintenance</html>", 200, {"Content-Type": "text/html"}
        body: dict[str, Any] = {"resultCode": code, "resultMsg": "x"}
        if instance_id and code == "000000":
            body["instanceId"] = "inst-1"
        return jsonify(body)

    return app


class Switchable:
    """A merchant that fails (000005) while ``failing`` is set, and answers success otherwise."""

    def __init__(self) -> None:
        self.failing = True
        self.calls: list[dict[str, Any]] = []
        self.app = Flask(__name__)
        self.app.add_url_rule("/produceAPI", "produce", self.produce, methods=["POST"])

    def produce(self) -> Any:
        self.calls.append(request.get_json(force=True))
        if self.failing:
            return jsonify(resultCode="000005", resultMsg="database down")
        return jsonify(resultCode="000000", resultMsg="ok", instanceId="inst-1")


def koosim(*args: str, db: Path, url: str) -> Result:
    env = {"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_DB": str(db)}
    return CliRunner().invoke(main, ["watch", "--url", url, *args], env=env)


# --- the dial test ---------------------------------------------------------------------------


def test_a_dial_test_of_a_correct_merchant_passes(reference_merchant: Any) -> None:
    clock = FrozenClock(DAY_ONE)
    test = dial_test(reference_merchant.target(), clock)
    assert test.passed
    (outcome,) = test.outcomes
    assert (outcome.interface, outcome.activity, outcome.failure) == (
        "produce interface",
        "newInstance",
        None,
    )
    assert outcome.exchange.fields["testFlag"] == "1"  # a test order (U14)
    assert test.market_at == DAY_ONE
    assert "2026-11-02T08:00+08:00" in test.summary() and "passed" in test.summary()


@pytest.mark.parametrize(
    ("protocol", "product", "billing"),
    [
        ("v2", "saas", "period"),
        ("v1", "saas", "one-time"),
        ("v2", "saas-kit", "on-demand"),
        ("v2", "license", "period"),
    ],
)
def test_the_reference_merchant_passes_every_profiles_dial_test(
    reference_merchant: Any, protocol: str, product: str, billing: str
) -> None:
    """No false alarm: a merchant that follows the pages passes, whatever it sells."""
    target = reference_merchant.target(protocol=protocol, profile=Profile(product=product, billing=billing))
    test = dial_test(target, FrozenClock(DAY_ONE))
    assert test.passed, test.summary()


@pytest.mark.parametrize(
    ("app", "words"),
    [
        (answering("000005"), "Call interface failed. The production interface returns an error result code"),
        (answering(None), "Debugging failed. Parse response body failed"),
        (answering("000000", instance_id=False), NO_INSTANCE_ID),
    ],
)
def test_a_failed_probe_says_why_in_the_faqs_words(
    serve: Callable[[Any], str], app: Flask, words: str
) -> None:
    test = dial_test(Target(serve(app), ACCESS_KEY), FrozenClock(DAY_ONE))
    assert not test.passed
    assert test.outcomes[0].failure is not None and test.outcomes[0].failure.startswith(words)
    assert "FAILED" in test.summary() and words in test.summary()


def test_the_gallery_merchant_that_skips_test_orders_fails_its_dial_test(serve: Callable[[Any], str]) -> None:
    """tests/mutants/debug_order_without_instance.py answers a testFlag=1 order 000000 with no
    instance: exactly the order a dial test places (U14), so its dial tests fail (§10.4 D4)."""
    from mutants import debug_order_without_instance

    from simulator.reference import MerchantConfig

    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    url = serve(debug_order_without_instance.build(config))
    test = dial_test(Target(url, ACCESS_KEY), FrozenClock(DAY_ONE))
    assert [outcome.failure for outcome in test.outcomes] == [NO_INSTANCE_ID]


def test_an_unreachable_merchant_fails_its_dial_test() -> None:
    test = dial_test(Target("http://127.0.0.1:9/produceAPI", ACCESS_KEY, timeout=1), FrozenClock(DAY_ONE))
    assert not test.passed
    assert test.outcomes[0].failure is not None
    assert test.outcomes[0].failure.startswith("Call interface failed")


def test_a_license_product_is_probed_on_its_license_interface() -> None:
    target = Target("http://127.0.0.1:9/produceAPI", ACCESS_KEY, profile=Profile(product="license"))
    ((interface, fields),) = dial_probes(target, OrderFactory(1))
    assert interface == "License interface"
    assert fields["activity"] == "getLicense" and fields["testFlag"] == "1"
    ((interface, fields),) = dial_probes(Target("http://x/p", ACCESS_KEY), OrderFactory(1))
    assert (interface, fields["activity"], fields["testFlag"]) == ("produce interface", "newInstance", "1")


def test_the_dial_record_never_holds_the_key(serve: Callable[[Any], str]) -> None:
    url = serve(answering("000005")) + "?key=" + ACCESS_KEY
    test = dial_test(Target(url, ACCESS_KEY), FrozenClock(DAY_ONE))
    assert ACCESS_KEY not in json.dumps(test.as_dict((ACCESS_KEY,)), ensure_ascii=False)


# --- which consequence a failed check leads to ----------------------------------------------


def _exchange(
    exchange_id: str, activity: str, body: dict[str, Any], interface: str = "produce"
) -> dict[str, Any]:
    return {
        "id": exchange_id,
        "activity": activity,
        "interface": interface,
        "request": {"body": json.dumps(body)},
    }


def _failed(check_id: str, *exchange_ids: str) -> dict[str, Any]:
    return {
        "id": check_id,
        "verdict": "failed",
        "findings": [{"message": "m", "exchanges": list(exchange_ids)}],
    }


def test_each_failed_check_names_its_published_consequence() -> None:
    exchanges = [
        _exchange("t", "newInstance", {"orderId": "O1", "testFlag": "1"}),
        _exchange("n", "newInstance", {"orderId": "O2"}),
        _exchange("r", "refreshInstance", {"instanceId": "i"}),
        _exchange("s", "tenantSync", {}, interface="sync"),
    ]
    checks = [
        _failed("lifecycle.test-order", "t"),
        _failed("lifecycle.full", "n"),
        _failed("lifecycle.renewal", "r"),
        _failed("sync.tenant", "s"),
        {"id": "timing.slow", "verdict": "warned", "findings": [{"message": "m", "exchanges": ["n"]}]},
    ]
    verdict = run_verdict(checks, exchanges, "v2")
    rules = {item.check: item.rule for item in verdict.consequences}
    assert rules == {
        "lifecycle.test-order": Rule.DIAL_TEST,
        "lifecycle.full": Rule.FREQUENT_FAILURES,
        "lifecycle.renewal": Rule.FREQUENT_FAILURES,
        "sync.tenant": Rule.FREQUENT_FAILURES,
    }  # a warned check leads to nothing: severities stay as they are
    texts = [item.text for item in verdict.verdicts]
    assert any("4 more failing days and the product is frozen and hidden" in text for text in texts)
    assert not verdict.reached
    assert verdict.headline.startswith("Delisting verdict: 4 failed checks count")


def test_v1_failed_orders_count_toward_the_monthly_limit() -> None:
    exchanges = [_exchange(f"e{n}", "newInstance", {"orderId": f"O{n % 3}"}) for n in range(5)]
    checks = [_failed("lifecycle.full", "e0", "e1", "e2"), _failed("idempotency.new", "e3", "e4")]
    verdict = run_verdict(checks, exchanges, "v1")
    assert {item.rule for item in verdict.consequences} == {Rule.V1_ORDERS}
    (v1,) = [item for item in verdict.verdicts if item.rule is Rule.V1_ORDERS]
    assert v1.text == "3 failed orders in this run, the v1 limit is 5 a month"  # three distinct orders
    assert not v1.reached


def test_no_failed_check_no_consequence() -> None:
    verdict = run_verdict([{"id": "a", "verdict": "passed", "findings": []}], [], "v2")
    assert verdict.verdicts == () and verdict.consequences == () and not verdict.counting
    assert "no failure here leads to a published delisting consequence" in verdict.headline


# --- koosim watch ----------------------------------------------------------------------------


def _morning(day: int) -> str:
    return dial_test_instants((DAY_ONE + timedelta(days=day - 1)).date())[0].isoformat()


def test_watch_reaches_frozen_and_hidden_on_the_fifth_failing_day_not_before(
    serve: Callable[[Any], str], tmp_path: Path
) -> None:
    url = serve(answering("000005"))
    db = tmp_path / "koosim.db"
    for day in range(1, 5):
        result = koosim("--once", "--at", _morning(day), db=db, url=url)
        assert result.exit_code == 0, result.output + result.stderr  # the countdown runs
        more = 5 - day
        assert f"a dial test failed: {more} more failing {'day' if more == 1 else 'days'}" in result.output
        assert "frozen and hidden" in result.output and "Delisting verdict: the failing" in result.output
    fifth = koosim("--once", "--at", _morning(5), db=db, url=url)
    assert fifth.exit_code == 5, fifth.output
    assert (
        "a dial test failed 5 days in a row (to 2026-11-06): the product is frozen and hidden" in fifth.output
    )


def test_watch_every_12h_on_a_frozen_clock_stops_at_the_threshold(
    serve: Callable[[Any], str], tmp_path: Path
) -> None:
    """Two dial tests a marketplace day, played without sleeping: the ninth (day five, 09:00)
    reaches the threshold and watch stops there with exit 5."""
    url = serve(answering("000005"))
    result = koosim(
        "--every", "12h", "--count", "40", "--at", _morning(1), "--json", db=tmp_path / "k.db", url=url
    )
    assert result.exit_code == 5, result.output + result.stderr
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rounds) == 9
    assert [r["delisting"]["reached"] for r in rounds] == [False] * 8 + [True]
    assert [r["exit_code"] for r in rounds] == [0] * 8 + [5]
    assert rounds[-1]["at"]["market"] == "2026-11-06T01:00:00.000Z"  # day five, 09:00 UTC+08:00
    assert ACCESS_KEY not in result.output


def test_watch_a_passing_day_resets_the_countdown(tmp_path: Path, serve: Callable[[Any], str]) -> None:
    merchant = Switchable()
    url = serve(merchant.app)
    db = tmp_path / "k.db"
    for day in range(1, 4):
        assert koosim("--once", "--at", _morning(day), db=db, url=url).exit_code == 0
    merchant.failing = False
    passed = koosim("--once", "--at", _morning(4), db=db, url=url)
    assert passed.exit_code == 0 and "the last dial-test day passed" in passed.output
    merchant.failing = True
    again = koosim("--once", "--at", _morning(5), "--strict", db=db, url=url)
    assert again.exit_code == 4  # --strict: a failed dial test fails the job at once
    assert "4 more failing days" in again.output
    assert all(call["testFlag"] == "1" for call in merchant.calls)


def test_watch_runs_a_check_selection_and_records_it(tmp_path: Path, serve: Callable[[Any], str]) -> None:
    url = serve(answering("000005"))
    result = koosim(
        "--once",
        "--at",
        _morning(1),
        "--checks",
        "lifecycle.test-order",
        "--json",
        db=tmp_path / "k.db",
        url=url,
    )
    assert result.exit_code == 1, result.output + result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["failed_checks"] == ["lifecycle.test-order"]
    assert [c["rule"] for c in report["delisting"]["consequences"]] == ["dial test"]
    shown = CliRunner().invoke(main, ["show", report["run_id"], "--db", str(tmp_path / "k.db")])
    assert "Delisting verdict" in shown.output


def test_watch_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args, said in [
        (["--every", "12h", "--once"], "contradict"),
        (["--count", "3"], "--count needs --every"),
        (["--every", "soon"], "is not a duration"),
        (["--at", "2026-11-02T09:00:00"], "no time zone"),
        (["--alert-url", "ftp://x"], "not an http(s) URL"),
        (["--checks", "nope.*"], "no check matches"),
        (["--every", "999999d"], "too long"),
        (["--at", "2026-11-05T09:00:00+08:00", "--every", "400d", "--count", "999999999"], "runs past 8999"),
        (["--at", "9999-12-31T23:00:00+00:00", "--once"], "out of range"),
        (["--at", "0001-01-01T00:00:00+08:00", "--once"], "out of range"),
        (["--at", "8999-12-31T23:00:00Z", "--every", "12h"], "runs past 8999"),
    ]:
        result = koosim(*args, db=tmp_path / "k.db", url="http://127.0.0.1:9/produceAPI")
        assert result.exit_code == 2, (args, result.output, result.stderr)
        assert said in result.output + result.stderr
        assert "Traceback" not in result.output + result.stderr


@pytest.fixture
def alerts(serve: Callable[[Any], str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    app = Flask(__name__)

    @app.post("/produceAPI")  # serve() hands out the produce path; any path does for a hook
    def hook() -> Any:
        received.append(request.get_json(force=True))
        return jsonify(ok=True)

    yield serve(app), received


def test_watch_posts_an_alert_without_secrets(
    serve: Callable[[Any], str], tmp_path: Path, alerts: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, received = alerts
    url = serve(answering("000005"))
    result = koosim("--once", "--at", _morning(1), "--alert-url", hook, db=tmp_path / "k.db", url=url)
    assert result.exit_code == 0, result.stderr
    (alert,) = received
    assert alert["event"] == "dial-test-failed"
    assert alert["delisting"]["rules"][0]["remaining"] == 4
    assert ACCESS_KEY not in json.dumps(alert, ensure_ascii=False)


MARKET_AK = "watch-market-ak-41"
MARKET_SK = "watch-market-sk-42"


def test_watch_answers_a_merchant_that_reads_its_order(serve: Callable[[Any], str], tmp_path: Path) -> None:
    """The reference merchant configured as docs/merchant-side.md says (``koosim merchant
    --market-url``) asks Querying an Order before each V2 newInstance: watch runs the open API."""
    import socket

    from simulator.reference import MerchantConfig
    from simulator.reference import create_app as create_merchant

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = MerchantConfig(
        access_key=ACCESS_KEY,
        market_url=f"http://127.0.0.1:{port}",
        market_ak=MARKET_AK,
        market_sk=MARKET_SK,
    )
    url = serve(create_merchant(config))
    result = CliRunner().invoke(
        main,
        ["watch", "--url", url, "--once", "--at", _morning(1), "--market-port", str(port)],
        env={
            "KOOSIM_ACCESS_KEY": ACCESS_KEY,
            "KOOSIM_DB": str(tmp_path / "k.db"),
            "KOOSIM_MARKET_AK": MARKET_AK,
            "KOOSIM_MARKET_SK": MARKET_SK,
        },
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert f"marketplace open API: http://127.0.0.1:{port}" in result.output
    assert "PASSED" in result.output or "passed" in result.output, result.output
    assert "FAILED" not in result.output, result.output
    assert MARKET_SK not in result.output and MARKET_AK not in result.output
    [stored] = Store(tmp_path / "k.db").dial.recent()
    assert stored["passed"]


PLAINTEXT_PASSWORD = "decrypted-appinfo-password-77"


def echoing_password() -> Flask:
    """A merchant that fails its newInstance, hands back an encrypted appInfo password and
    echoes the password's plaintext in its resultMsg."""
    from simulator.protocol.crypto import encrypt

    app = Flask(__name__)

    @app.post("/produceAPI")
    def produce() -> Any:
        return jsonify(
            resultCode="000005",
            resultMsg=f"could not provision, password {PLAINTEXT_PASSWORD}",
            encryptType="1",
            appInfo={"userName": "admin", "password": encrypt(PLAINTEXT_PASSWORD, ACCESS_KEY, "1")},
        )

    return app


def test_watch_redacts_a_password_decrypted_during_the_dial_test(
    serve: Callable[[Any], str], tmp_path: Path, alerts: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, received = alerts
    url = serve(echoing_password())
    for args in (["--alert-url", hook], ["--json"]):
        result = koosim("--once", "--at", _morning(1), *args, db=tmp_path / "k.db", url=url)
        assert result.exit_code == 0, result.output + result.stderr
        assert PLAINTEXT_PASSWORD not in result.output + result.stderr
    (alert,) = received
    assert alert["event"] == "dial-test-failed"
    assert PLAINTEXT_PASSWORD not in json.dumps(alert, ensure_ascii=False)
    stored = Store(tmp_path / "k.db").dial.recent()
    assert len(stored) == 2 and "could not provision, password" in json.dumps(stored, default=str)
    assert PLAINTEXT_PASSWORD not in json.dumps(stored, ensure_ascii=False, default=str)


def test_a_failed_alert_is_reported_not_fatal(serve: Callable[[Any], str], tmp_path: Path) -> None:
    url = serve(answering("000005"))
    result = koosim(
        "--once", "--at", _morning(1), "--alert-url", "http://127.0.0.1:9/hook", db=tmp_path / "k.db", url=url
    )
    assert result.exit_code == 0
    assert result.stderr.startswith("koosim: the alert was not sent:")
    assert "Traceback" not in result.stderr


# --- serve: the timer and the API -------------------------------------------------------------


@pytest.fixture
def market(tmp_path: Path, serve: Callable[[Any], str]) -> Iterator[tuple[Flask, FrozenClock, Switchable]]:
    merchant = Switchable()
    clock = FrozenClock(DAY_ONE, waits="block")
    app = create_app(Store(tmp_path / "koosim.db"), clock=clock)
    client = _client(app)
    assert (
        client.put("/api/target", json={"url": serve(merchant.app), "access_key": ACCESS_KEY}).status_code
        == 200
    )
    yield app, clock, merchant
    service(app).stop()


def _client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {server_token(app)}"
    return client


def test_the_serve_timer_freezes_on_day_five_not_before(
    market: tuple[Flask, FrozenClock, Switchable],
) -> None:
    app, clock, merchant = market
    dial = service(app)
    dial.start()
    done = 0
    for day in range(1, 6):
        for instant in dial_test_instants((DAY_ONE + timedelta(days=day - 1)).date()):
            clock.advance_to(instant)
            done += 1
            assert dial.wait_for(done, timeout=20), f"the timer did not run the dial test of {instant}"
            reached = dial.verdict().reached
            assert reached is (day == 5), (day, instant, dial.verdict().headline)
    assert len(merchant.calls) == 10  # twice a day, five days: every due instant played once
    status = _client(app).get("/api/dial").json
    assert status["delisting"]["reached"] is True
    assert "frozen and hidden" in status["delisting"]["headline"]
    assert [test["market_at"] for test in status["history"]][:2] == [
        "2026-11-06T07:00:00.000Z",
        "2026-11-06T01:00:00.000Z",
    ]


def test_a_clock_advanced_past_several_instants_plays_each(
    market: tuple[Flask, FrozenClock, Switchable],
) -> None:
    app, clock, merchant = market
    dial = service(app)
    dial.start()
    clock.advance(timedelta(days=2))  # 08:00 day one → 08:00 day three: four dial tests were due
    assert dial.wait_for(4, timeout=20)
    assert len(merchant.calls) == 4
    assert "3 more failing days" in dial.verdict().headline + " ".join(dial.verdict().lines())


def test_post_api_dial_runs_one_now(market: tuple[Flask, FrozenClock, Switchable]) -> None:
    app, clock, merchant = market
    client = _client(app)
    for day in range(1, 6):
        answer = client.post("/api/dial")
        assert answer.status_code == 200, answer.json
        assert answer.json["dial_test"]["passed"] is False
        assert answer.json["delisting"]["reached"] is (day == 5)
        clock.advance(timedelta(days=1))
    assert "frozen and hidden" in answer.json["delisting"]["headline"]
    assert ACCESS_KEY not in answer.get_data(as_text=True)
    merchant.failing = False
    assert client.post("/api/dial").json["dial_test"]["passed"] is True
    assert client.get("/api/dial").json["delisting"]["reached"] is True  # no page says how it comes back


def test_the_console_page_and_button(market: tuple[Flask, FrozenClock, Switchable]) -> None:
    app, _clock, _merchant = market
    client = _client(app)
    page = client.get("/dial").get_data(as_text=True)
    assert 'id="dial-now"' in page and "No dial test of this target yet" in page
    answer = client.post("/dial", headers={"Origin": "http://localhost"}, follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "FAILED" in page and "4 more failing days" in page


def test_no_target_is_a_409(tmp_path: Path) -> None:
    app = create_app(Store(tmp_path / "k.db"), clock=FrozenClock(DAY_ONE, waits="block"))
    answer = _client(app).post("/api/dial")
    assert answer.status_code == 409 and "no target configured" in answer.json["error"]


def test_the_timer_logs_a_failure_without_secrets(
    market: tuple[Flask, FrozenClock, Switchable], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import simulator.server.dial as server_dial

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"history damaged near key={ACCESS_KEY}")

    app, clock, _merchant = market
    monkeypatch.setattr(server_dial, "dial_test", broken)
    dial = service(app)
    dial.start()
    clock.advance(timedelta(hours=2))  # 08:00 → 10:00: the 09:00 dial test was due
    assert dial.wait_for(1, timeout=20)
    assert dial.last_problem is not None and "RuntimeError: history damaged" in dial.last_problem
    assert ACCESS_KEY not in dial.last_problem
    assert "history damaged" in caplog.text and ACCESS_KEY not in caplog.text


def test_closing_the_app_stops_its_timer(tmp_path: Path) -> None:
    from simulator.server import market_state

    app = create_app(Store(tmp_path / "k.db"), clock=FrozenClock(DAY_ONE, waits="block"))
    dial = service(app)
    dial.start()
    assert dial.running
    market_state(app).close()  # an app built by a test or the pytest plugin: no serve finally
    assert not dial.running


def test_the_timer_refuses_a_clock_that_jumps(tmp_path: Path) -> None:
    app = create_app(Store(tmp_path / "k.db"), clock=FrozenClock(DAY_ONE, waits="jump"))
    with pytest.raises(ValueError, match="waits='block'"):
        service(app).start()
    assert not service(app).running


def _answered(
    exchange_id: str, activity: str, body: dict[str, Any], answer: dict[str, Any]
) -> dict[str, Any]:
    return _exchange(exchange_id, activity, body) | {
        "response": {"status": 200, "result_code": answer.get("resultCode"), "body": json.dumps(answer)}
    }


def test_a_rule_broken_on_answered_calls_leads_to_no_published_consequence() -> None:
    """A duplicate instance (each copy answered 000000) or a forged call accepted is an error of
    its own, but the marketplace sees no failed call: no delisting rule is claimed for it."""
    ok = {"resultCode": "000000", "instanceId": "i-1"}
    exchanges = [
        _answered("a", "newInstance", {"orderId": "O1"}, ok),
        _answered("b", "newInstance", {"orderId": "O1"}, ok | {"instanceId": "i-2"}),
        _answered("c", "newInstance", {"orderId": "O2"}, {"resultCode": "000005"}),
        _answered("d", "newInstance", {"orderId": "O3"}, {"resultCode": "000000"}),  # no instanceId
    ]
    checks = [
        _failed("idempotency.new-instance-resend", "a", "b"),
        _failed("security.v2-signature-wrong", "c"),
        _failed("lifecycle.full", "d"),
    ]
    verdict = run_verdict(checks, exchanges, "v2")
    rules = {item.check: item.rule for item in verdict.consequences}
    assert rules == {
        "idempotency.new-instance-resend": Rule.NONE,
        "security.v2-signature-wrong": Rule.NONE,
        "lifecycle.full": Rule.FREQUENT_FAILURES,  # a success without instanceId fails the call (D4)
    }
    assert verdict.headline.startswith("Delisting verdict: 1 failed check counts")
    only_answered = run_verdict(checks[:2], exchanges, "v2")
    assert "no failure here leads to a published delisting consequence" in only_answered.headline
    assert len(only_answered.lines()) == 2  # each failed check still says why it leads to none


def test_watch_on_a_scaled_clock_keeps_its_timetable(serve: Callable[[Any], str], tmp_path: Path) -> None:
    """--time-scale 43200: 12 h of marketplace time pass in 1 s of wall time; round n starts no
    earlier than the first + n × 12 h (a timetable, however long each dial test took)."""
    url = serve(answering("000005"))
    args = ("--every", "12h", "--count", "3", "--time-scale", "43200", "--at", _morning(1), "--json")
    result = koosim(*args, db=tmp_path / "k.db", url=url)
    assert result.exit_code == 0, result.output + result.stderr
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    markets = [datetime.fromisoformat(r["at"]["market"].replace("Z", "+00:00")) for r in rounds]
    first = datetime.fromisoformat(_morning(1))
    assert markets[0] >= first
    assert all(market >= first + timedelta(hours=12 * n) for n, market in enumerate(markets))
    days = {market.astimezone(MARKETPLACE_TZ).date() for market in markets}
    assert rounds[-1]["delisting"]["rules"][0]["remaining"] == 5 - len(days)  # every day failed


def test_advancing_the_servers_clock_through_its_api_drives_the_timer(
    market: tuple[Flask, FrozenClock, Switchable],
) -> None:
    """The console/API's clock (/api/clock/advance) and the dial-test timer are one clock: five
    marketplace days advanced by a script reach "frozen and hidden", four do not."""
    app, _clock, merchant = market
    dial = service(app)
    dial.start()
    client = _client(app)
    for day in range(1, 6):
        assert client.post("/api/clock/advance", json={"by": "1d"}).status_code == 200
        assert dial.wait_for(2 * day, timeout=20)
        assert client.get("/api/dial").json["delisting"]["reached"] is (day == 5)
    assert len(merchant.calls) == 10


def test_only_what_the_dial_test_judges_counts_as_a_dial_test_failure() -> None:
    """An over-long field in the test order's answer fails a call (§3.4, a contract check), but the
    dial test judges only the envelope and the instanceId (U14): "frequent", not the dial test."""
    answer = {"resultCode": "000000", "instanceId": "i-1"}
    exchanges = [_answered("t", "newInstance", {"orderId": "O1", "testFlag": "1"}, answer)]
    verdict = run_verdict([_failed("contract.new-instance-answer", "t")], exchanges, "v2")
    assert [item.rule for item in verdict.consequences] == [Rule.FREQUENT_FAILURES]
    assert all(item.rule is not Rule.DIAL_TEST for item in verdict.verdicts)


def test_sigterm_ends_watch_with_one_line_and_keeps_the_dial_tests(
    serve: Callable[[Any], str], tmp_path: Path
) -> None:
    """watch --every on real time waits 12 h for its second dial test: SIGTERM ends it (143)."""
    import os
    import signal
    import subprocess
    import sys

    url = serve(answering("000005"))
    db = tmp_path / "k.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("KOOSIM_")}
    env |= {"KOOSIM_ACCESS_KEY": ACCESS_KEY}
    command = [sys.executable, "-m", "simulator", "watch", "--url", url, "--every", "12h", "--db", str(db)]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as watch:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("marketplace open API: http://127.0.0.1:")
        first = watch.stdout.readline()  # the first dial test's line: then it waits
        assert "FAILED" in first
        watch.send_signal(signal.SIGTERM)
        _out, err = watch.communicate(timeout=30)
    assert watch.returncode == 143
    assert err.strip() == "koosim: interrupted by SIGTERM after 1 dial test(s); each one is kept"
    assert len(Store(db).dial.results(url)) == 1


def test_six_failed_v1_orders_in_one_run_remove_the_product() -> None:
    exchanges = [_exchange(f"e{n}", "newInstance", {"orderId": f"O{n}"}) for n in range(6)]
    verdict = run_verdict([_failed("lifecycle.full", *(f"e{n}" for n in range(6)))], exchanges, "v1")
    assert verdict.reached
    assert verdict.headline == (
        "Delisting verdict: 6 failed orders in this run, more than the v1 limit of 5 a month: "
        "the product is removed"
    )
