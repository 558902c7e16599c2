"""The marketplace clock in every command and the published delivery policies (issue 15 items 1
and 2, docs/protocol.md §10, §10.1).

Done when (issue 15): a merchant that answers newInstance 000005 twice and 000000 the third time
gets exactly the published number of deliveries at the published marketplace times, one
instance, and a report that shows the timeline; one that never succeeds ends in automatic
cancellation (V1, [S38]) or is parked (V2, whose schedule is ASSUMPTION U11: no V2 page publishes
one, §10.1/U12). Nothing here sleeps through marketplace time: a frozen clock jumps, or a scaled
one plays three hours in three seconds.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from click.testing import CliRunner
from conftest import no_server_errors
from flask import Flask
from flask.testing import FlaskClient
from rich.console import Console

from simulator.checks import REGISTRY, Verdict
from simulator.cli import main as cli_main
from simulator.clock import FrozenClock, RealClock, ScaledClock
from simulator.engine.player import Player
from simulator.engine.record import run_record
from simulator.engine.run import run_checks
from simulator.engine.scenario import ScenarioError
from simulator.engine.scenario import parse as parse_data
from simulator.report import console as console_report
from simulator.report import html as html_report
from simulator.report import junit as junit_report
from simulator.serving import BackgroundServer
from simulator.settings import ConfigError, load_settings
from simulator.store import Store
from simulator.transport import Target

CHECK_ID = "lifecycle.delivered-on-schedule"
KEY = "koosim-clock-test-key"
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class FailingMerchant:
    """Answers newInstance ``000005`` ``failures`` times (every time for None), then success; lists
    the instances it created in queryInstance. Checks no signature: delivery is under test."""

    def __init__(self, failures: int | None) -> None:
        self.failures = failures
        self.new_instances = 0
        self.created: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "GET":  # V1: the fields are the query
            fields = {name: values[0] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        else:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            fields = json.loads(environ["wsgi.input"].read(size) or b"{}")
        activity = fields.get("activity")
        body: dict[str, Any] = {"resultCode": "000000", "resultMsg": "ok"}
        with self._lock:
            if activity == "newInstance":
                self.new_instances += 1
                if self.failures is None or self.new_instances <= self.failures:
                    body = {"resultCode": "000005", "resultMsg": "busy"}
                else:
                    instance_id = f"inst-{len(self.created) + 1}"
                    self.created.append(instance_id)
                    body.update(instanceId=instance_id, frontEndUrl="https://example.test/app")
            elif activity == "queryInstance":
                wanted = str(fields.get("instanceId", "")).split(",")
                body["info"] = [{"instanceId": i} for i in self.created if i in wanted]
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


@pytest.fixture
def merchant_at() -> Iterator[Any]:
    servers: list[BackgroundServer] = []

    def start(merchant: FailingMerchant) -> str:
        server = BackgroundServer(merchant).start()
        servers.append(server)
        return server.base_url + "/produceAPI"

    yield start
    for server in servers:
        server.close()


def new_instance_times(run: Any) -> list[timedelta]:
    """The marketplace offsets from the first newInstance delivery of every newInstance sent."""
    sent = [e.market_at for e in run.exchanges if e.activity == "newInstance"]
    return [instant - sent[0] for instant in sent]


# --- done when: the published schedule (V1 newInstance, [S38]) -----------------------------------


def test_v1_new_instance_twice_000005_is_delivered_three_times_three_minutes_apart(merchant_at: Any) -> None:
    merchant = FailingMerchant(failures=2)
    clock = FrozenClock(START, waits="jump")
    target = Target(url=merchant_at(merchant), access_key=KEY, protocol="v1", clock=clock)
    run = run_checks(target, [REGISTRY[CHECK_ID]])
    (result,) = run.results
    assert merchant.new_instances == 3  # exactly three deliveries
    assert new_instance_times(run) == [timedelta(0), 3 * MINUTE, 6 * MINUTE]  # published: every 3 min
    assert merchant.created == ["inst-1"]  # one instance
    assert [e.attempt for e in run.exchanges if e.activity == "newInstance"] == [1, 2, 3]
    # accepted in the end: a warning that shows the timeline, not a failure
    assert result.verdict is Verdict.WARNED, result.evidence
    (finding,) = result.findings
    assert "accepted on delivery 3 after 2 failed call(s)" in finding.message
    assert "attempt 2: market 2026-11-30T08:03:00.000Z (+3m)" in finding.message
    assert "attempt 3: market 2026-11-30T08:06:00.000Z (+6m)" in finding.message

    # the reports show the timeline on both clocks
    record = run_record(run)
    times = [e["market_at"] for e in record["exchanges"] if e["activity"] == "newInstance"]
    assert times == ["2026-11-30T08:00:00.000Z", "2026-11-30T08:03:00.000Z", "2026-11-30T08:06:00.000Z"]
    assert record["clock"].startswith("marketplace time: frozen at")
    output = io.StringIO()
    console_report.print_run(Console(file=output, width=400), run, {})
    text = output.getvalue()
    assert "attempt 3: market 2026-11-30T08:06:00.000Z (+6m)" in text
    assert "marketplace 2026-11-30T08:03:00.000Z" in text  # an exchange's sent line: wall and marketplace
    assert "marketplace clock: marketplace time: frozen at" in text
    assert "marketplace 2026-11-30T08:06:00.000Z" in html_report.render(record)
    xml = junit_report.render(record)
    assert "marketplace 2026-11-30T08:06:00.000Z" in xml


def test_v1_scaled_clock_plays_the_published_times_in_scaled_wall_time(merchant_at: Any) -> None:
    """×3600 (verify's default): 3 minutes of marketplace time pass in 50 ms of wall time."""
    merchant = FailingMerchant(failures=2)
    target = Target(url=merchant_at(merchant), access_key=KEY, protocol="v1", clock=ScaledClock(3600))
    started = time.perf_counter()
    run = run_checks(target, [REGISTRY[CHECK_ID]])
    wall = time.perf_counter() - started
    assert merchant.new_instances == 3 and merchant.created == ["inst-1"]
    offsets = new_instance_times(run)
    assert offsets[1] >= 3 * MINUTE and offsets[2] >= 6 * MINUTE  # a timetable: never early
    assert offsets[2] < 6 * MINUTE + 30 * 3600 * timedelta(milliseconds=1)  # and late by little
    assert 0.1 <= wall < 5


def test_v1_never_accepted_ends_in_automatic_cancellation_after_61_deliveries(merchant_at: Any) -> None:
    merchant = FailingMerchant(failures=None)
    target = Target(
        url=merchant_at(merchant), access_key=KEY, protocol="v1", clock=FrozenClock(START, waits="jump")
    )
    run = run_checks(target, [REGISTRY[CHECK_ID]])
    (result,) = run.results
    assert merchant.new_instances == 61  # the first call and 60 resends [S38]
    offsets = new_instance_times(run)
    assert offsets == [n * 3 * MINUTE for n in range(61)]  # every 3 minutes, 3 hours in all
    assert result.verdict is Verdict.FAILED
    message = result.findings[0].message
    assert "61 deliveries over 3h of marketplace time" in message
    assert "the order is judged failed and cancelled automatically" in message
    assert "U42: koosim sends nothing more" in message
    assert merchant.created == []


# --- V2: no published schedule, ASSUMPTION U11 ---------------------------------------------------


def test_v2_new_instance_twice_000005_follows_the_u11_assumption(merchant_at: Any) -> None:
    merchant = FailingMerchant(failures=2)
    target = Target(url=merchant_at(merchant), access_key=KEY, clock=FrozenClock(START, waits="jump"))
    run = run_checks(target, [REGISTRY[CHECK_ID]])
    (result,) = run.results
    assert merchant.new_instances == 3 and merchant.created == ["inst-1"]
    # U11: after 1 s, then 2 s more (a backoff from each answer; the frozen clock answers at once)
    assert new_instance_times(run) == [timedelta(0), timedelta(seconds=1), timedelta(seconds=3)]
    assert result.verdict is Verdict.WARNED
    assert "v2 newInstance: 3 resend(s) after 1s, 2s, 4s" in result.findings[0].message


def test_v2_never_accepted_is_parked_after_four_deliveries(merchant_at: Any) -> None:
    merchant = FailingMerchant(failures=None)
    target = Target(url=merchant_at(merchant), access_key=KEY, clock=FrozenClock(START, waits="jump"))
    (result,) = run_checks(target, [REGISTRY[CHECK_ID]]).results
    assert merchant.new_instances == 4
    assert result.verdict is Verdict.FAILED
    assert "parked as a production-interface message" in result.findings[0].message


def test_the_reference_merchant_is_delivered_at_once(merchant_at: Any) -> None:
    merchant = FailingMerchant(failures=0)
    target = Target(url=merchant_at(merchant), access_key=KEY)
    (result,) = run_checks(target, [REGISTRY[CHECK_ID]]).results
    assert result.verdict is Verdict.PASSED, result.evidence
    assert merchant.new_instances == 1


# --- the settings: one way to build the clock ------------------------------------------------------


def test_the_settings_build_the_clock(tmp_path: Path) -> None:
    default = load_settings({}, environ={}, cwd=tmp_path)
    clock = default.clock()
    assert isinstance(clock, ScaledClock) and clock.scale == 3600
    assert isinstance(default.clock(live=True), RealClock)  # serve: real time
    frozen = load_settings({"time_scale": "frozen"}, environ={}, cwd=tmp_path)
    assert isinstance(frozen.clock(), FrozenClock) and frozen.clock().waits == "jump"
    assert frozen.clock(live=True).waits == "block"  # type: ignore[attr-defined]
    env = load_settings({}, environ={"KOOSIM_TIME_SCALE": "60"}, cwd=tmp_path).clock(live=True)
    assert isinstance(env, ScaledClock) and env.scale == 60
    (tmp_path / "koosim.toml").write_text("time_scale = 1\n", encoding="utf-8")
    assert isinstance(load_settings({}, environ={}, cwd=tmp_path).clock(), RealClock)
    for bad in ("0", "-5", "fast", "nan", "1e9"):
        with pytest.raises(ConfigError, match="KOOSIM_TIME_SCALE"):
            load_settings({}, environ={"KOOSIM_TIME_SCALE": bad}, cwd=tmp_path)


def test_the_cli_names_the_clock_and_rejects_a_bad_scale(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli_main, ["verify", "--time-scale", "soon", "--checks", CHECK_ID])
    assert bad.exit_code == 2
    assert "time_scale must be a number > 0" in bad.output and "Traceback" not in bad.output
    result = runner.invoke(cli_main, ["verify", "--time-scale", "frozen", "--checks", CHECK_ID])
    assert result.exit_code == 0, result.output
    assert "marketplace time: frozen at" in result.output


# --- scenario steps `advance: 1h` --------------------------------------------------------------------


SCENARIO = """
name: advance-demo
steps:
  - id: new
    activity: newInstance
  - id: later
    advance: 1h
  - id: query
    activity: queryInstance
    of: new
    advance: 30m
"""


def parse_scenario(text: str) -> Any:
    return parse_data(yaml.safe_load(text), "advance-demo.yaml")


def test_a_scenario_advances_the_marketplace_clock(merchant_at: Any) -> None:
    scenario = parse_scenario(SCENARIO)
    assert scenario.steps[1].advance == timedelta(hours=1)
    assert scenario.steps[1].to_data() == {"id": "later", "advance": "1h"}
    merchant = FailingMerchant(failures=0)
    clock = FrozenClock(START)  # blocks if anything waited on it: the steps advance it themselves
    target = Target(url=merchant_at(merchant), access_key=KEY, clock=clock)
    player = Player(scenario, target)
    try:
        outcome = player.play()
    finally:
        player.close()
    sent = [exchange.market_at for step in outcome.steps for exchange in step.exchanges]
    assert sent == [START, START + timedelta(hours=1, minutes=30)]
    assert clock.now() == START + timedelta(hours=1, minutes=30)


@pytest.mark.parametrize("bad", ["0s", "1x", "soon", "1.5h", "-1h"])
def test_a_bad_advance_is_a_one_line_error(bad: str) -> None:
    with pytest.raises(ScenarioError, match=r"advance|duration") as error:
        parse_scenario(SCENARIO.replace("advance: 1h", f"advance: {bad!r}"))
    assert "\n" not in str(error.value).strip()


# --- serve: GET /api/clock, POST /api/clock/advance, the console page --------------------------------


def _client(app: Flask) -> FlaskClient:
    from simulator.server import token

    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token(app)}"
    return client


def test_serve_advances_a_frozen_clock(tmp_path: Path) -> None:
    from simulator.server import create_app, market_state

    clock = FrozenClock(START)
    with no_server_errors(create_app(Store(tmp_path / "koosim.db"), clock=clock)) as app:
        assert market_state(app).clock is clock
        client = _client(app)
        shown = client.get("/api/clock").json
        assert (
            shown["kind"] == "frozen" and shown["now"] == "2026-11-30T08:00:00.000Z" and shown["advanceable"]
        )
        moved = client.post("/api/clock/advance", json={"by": "1h30m"})
        assert moved.status_code == 200 and moved.json["now"] == "2026-11-30T09:30:00.000Z"
        assert clock.now() == START + timedelta(hours=1, minutes=30)
        for body, status in (
            ({"by": "soon"}, 400),
            ({"by": 5}, 400),
            ({}, 400),
            ([1], 400),
            ({"by": "999d"}, 400),
        ):
            answer = client.post("/api/clock/advance", json=body)
            assert answer.status_code == status and "error" in answer.json
        assert clock.now() == START + timedelta(hours=1, minutes=30)
        page = client.get("/clock")
        assert page.status_code == 200 and b"2026-11-30T09:30:00.000Z" in page.data
        posted = client.post("/clock", data={"by": "2h"}, follow_redirects=True)
        assert posted.status_code == 200 and b"2026-11-30T11:30:00.000Z" in posted.data
        assert client.post("/clock", data={"by": "never"}).status_code == 400


def test_serve_refuses_to_advance_past_the_last_marketplace_instant(tmp_path: Path) -> None:
    from simulator.clock import LATEST_MARKET_TIME
    from simulator.server import create_app

    clock = FrozenClock(LATEST_MARKET_TIME - timedelta(days=10))
    with no_server_errors(create_app(Store(tmp_path / "koosim.db"), clock=clock)) as app:
        client = _client(app)
        assert client.post("/api/clock/advance", json={"by": "3d"}).status_code == 200
        refused = client.post("/api/clock/advance", json={"by": "400d"})
        assert refused.status_code == 400 and "marketplace time stops at 9000-01-01" in refused.json["error"]
        assert clock.now() == LATEST_MARKET_TIME - timedelta(days=7)
        assert client.post("/clock", data={"by": "8d"}).status_code == 400
        assert client.get("/api/dial").status_code == 200


def test_serve_in_real_time_refuses_to_advance(tmp_path: Path) -> None:
    from simulator.server import create_app, market_state

    with no_server_errors(create_app(Store(tmp_path / "koosim.db"))) as app:
        assert isinstance(market_state(app).clock, RealClock)
        client = _client(app)
        assert client.get("/api/clock").json["kind"] == "real"
        refused = client.post("/api/clock/advance", json={"by": "1h"})
        assert refused.status_code == 409 and "--time-scale frozen" in refused.json["error"]


def test_every_command_that_talks_to_a_merchant_takes_the_clock_flag() -> None:
    runner = CliRunner()
    for command in ("verify", "play", "explore", "serve", "load"):
        shown = runner.invoke(cli_main, [command, "--help"], terminal_width=200)
        assert shown.exit_code == 0 and "--time-scale" in shown.output, command
    load_help = runner.invoke(cli_main, ["load", "--help"], terminal_width=200).output
    assert "--delivery-resends" in load_help and "--delivery-interval" in load_help
    assert "--backoff" not in load_help  # deprecated: still accepted, no longer advertised


def test_a_run_started_from_serve_has_a_clock_of_its_own(tmp_path: Path) -> None:
    """serve's marketplace runs in real time; a verify run started there plays V1's 3-minute gaps
    at ×3600 from the marketplace's now, and a frozen marketplace clock does not block it."""
    from simulator.server import create_app, market_state

    clock = FrozenClock(START)
    with no_server_errors(create_app(Store(tmp_path / "koosim.db"), clock=clock)) as app:
        market = market_state(app)
        market.configure({"bundled": True})
        run_target = market.run_target()
        assert run_target.clock is not clock and isinstance(run_target.clock, ScaledClock)
        assert run_target.clock.now() >= START
        assert market.target().clock is clock
