"""Durable deliveries in ``koosim serve`` (issue 15 items 3 and 4, issue 16 item 3), in process:
the schedule on a frozen marketplace clock, the 生产接口消息 page and API, 重新启动, claims that
two servers cannot both win, an attempt lost in flight, and order notifications on their 3 h
policy. The subprocess tests (SIGKILL, two servers) are in test_serve_durable.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Serve, no_server_errors
from flask import Flask, request
from flask.testing import FlaskClient

from simulator.clock import FrozenClock
from simulator.delivery import ORDER_NOTIFICATION, V1_NEW_INSTANCE
from simulator.server import create_app, market_state
from simulator.server import token as server_token
from simulator.server.deliveries import durable_clock, run_due
from simulator.store import Store

ACCESS_KEY = "messages-test-access-key-1"
NOTIFY_TOKEN = "messages-test-notify-token-2"
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class Scripted:
    """A merchant answering each call with the next result code of a script (the last repeats)."""

    def __init__(self, *codes: str) -> None:
        self.codes = list(codes)
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = Flask("scripted-merchant")

        @self.app.route("/produceAPI", methods=["GET", "POST"])
        @self.app.post("/notify")
        def answer() -> dict[str, Any]:
            with self.lock:
                code = self.codes[min(len(self.received), len(self.codes) - 1)]
                body = request.get_json(silent=True) or dict(request.args)
                self.received.append({"body": body, "at": time.time()})
            answer: dict[str, Any] = {"resultCode": code, "resultMsg": "scripted"}
            if code == "000000":
                answer |= {"instanceId": "inst-1", "appInfo": {"frontEndUrl": "https://m.example/x"}}
            return answer


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START, waits="block")


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Iterator[Flask]:
    with no_server_errors(create_app(Store(tmp_path / "koosim.db"), clock=clock)) as app:
        yield app
        market_state(app).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {server_token(app)}"
    return client


def _target(client: FlaskClient, url: str, protocol: str = "v2") -> None:
    response = client.put("/api/target", json={"url": url, "access_key": ACCESS_KEY, "protocol": protocol})
    assert response.status_code == 200, response.json


def _new_instance(client: FlaskClient) -> dict[str, Any]:
    fields = client.get("/api/activities/newInstance/template").json["fields"]
    response = client.post("/api/calls", json={"activity": "newInstance", "fields": fields})
    assert response.status_code == 200, response.json
    return response.json


def test_a_failed_call_is_resent_on_its_schedule_and_shown_until_delivered(
    client: FlaskClient, app: Flask, clock: FrozenClock, serve: Serve
) -> None:
    merchant = Scripted("000005", "000005", "000000")
    _target(client, serve(merchant.app))
    outcome = _new_instance(client)
    assert outcome["delivery_id"] == 1 and "pending after 1 attempt(s)" in outcome["delivery"]
    [message] = client.get("/api/messages").json["messages"]
    assert message["state"] == "pending" and message["attempts_made"] == 1
    assert message["error"].startswith("Call interface failed. The production interface returns an error")
    assert "000005" in message["error"] and message["assumed_policy"] is True  # U11: V2 has no page
    market = market_state(app)
    assert run_due(market) == 0 and len(merchant.received) == 1  # not due: the clock stands still
    clock.advance(timedelta(milliseconds=999))
    assert run_due(market) == 0
    clock.advance(timedelta(milliseconds=1))  # U11: 1 s after the answer (answered on a frozen clock)
    assert run_due(market) == 1 and len(merchant.received) == 2
    assert run_due(market) == 0  # attempt 3 is due 2 s after attempt 2's answer
    clock.advance(timedelta(seconds=2))
    assert run_due(market) == 1 and run_due(market) == 0
    message = client.get("/api/messages/1").json
    assert (
        message["state"] == "delivered" and message["attempts_made"] == 3 and message["next_attempt"] is None
    )
    assert [a["sent"]["market"] for a in message["attempts"]] == [
        "2026-11-30T08:00:00.000Z",
        "2026-11-30T08:00:01.000Z",
        "2026-11-30T08:00:03.000Z",
    ]
    assert [b["body"]["activity"] for b in merchant.received] == ["newInstance"] * 3
    assert len({b["body"]["orderId"] for b in merchant.received}) == 1  # the same order each time
    assert client.post("/api/messages/1/restart").status_code == 409  # delivered: nothing to restart


def test_a_v1_subscription_is_cancelled_automatically_after_its_61st_attempt(
    client: FlaskClient, app: Flask, clock: FrozenClock, serve: Serve
) -> None:
    merchant = Scripted("000005")
    _target(client, serve(merchant.app), protocol="v1")
    _new_instance(client)
    market = market_state(app)
    for _ in range(V1_NEW_INSTANCE.cadence.resends):
        clock.advance(timedelta(minutes=3) - timedelta(seconds=1))
        assert run_due(market) == 0  # never early
        clock.advance(timedelta(seconds=1))
        assert run_due(market) == 1
    assert len(merchant.received) == 61
    message = client.get("/api/messages/1").json
    assert message["state"] == "cancelled" and message["automatic_cancellation"] is True
    assert message["attempts"][-1]["sent"]["market"] == "2026-11-30T11:00:00.000Z"  # 60 × 3 min
    assert message["restartable"] is False
    refused = client.post("/api/messages/1/restart")
    assert refused.status_code == 409 and "cancelled" in refused.json["error"]
    # the V1 rule counts it: more than 5 failed orders in a month remove the product (§10.3)
    assert "1 failed order this month, the v1 limit is 5" in json.dumps(
        client.get("/api/dial").json["delisting"]
    )
    clock.advance(timedelta(hours=5))
    assert run_due(market) == 0 and len(merchant.received) == 61
    page = client.get("/messages").data.decode()
    assert "cancelled automatically" in page and "重新启动 (restart)" not in page
    # 16:00 UTC is 00:00 on 1 December in the marketplace's UTC+8: a new month, nothing counted
    assert "0 failed orders this month" in json.dumps(client.get("/api/dial").json["delisting"])


def test_a_parked_delivery_is_restarted_by_hand(
    client: FlaskClient, app: Flask, clock: FrozenClock, serve: Serve
) -> None:
    merchant = Scripted("000002", "000000")  # U11 does not resend a refusal: parked at once
    _target(client, serve(merchant.app))
    assert "0 delivery(ies) pending after a failure or parked" in client.get("/").data.decode()
    fields = client.get("/api/activities/newInstance/template").json["fields"]
    form = {"activity": "newInstance", "fields": json.dumps(fields)}
    call_page = client.post("/call", data=form).data.decode()  # the console's Send a call
    assert "生产接口消息 #1" in call_page and "parked" in call_page
    assert "1 delivery(ies) pending after a failure or parked" in client.get("/").data.decode()
    [message] = client.get("/api/messages?state=parked").json["messages"]
    assert message["restartable"] and message["next_attempt"] is None
    assert client.get("/api/messages?state=pending").json["messages"] == []
    page = client.get("/messages").data.decode()
    assert "重新启动 (restart)" in page and "parked" in page
    restarted = client.post("/messages/1/restart")  # the console's button
    assert restarted.status_code == 302
    message = client.get("/api/messages/1").json
    assert message["state"] == "delivered" and message["attempts"][-1]["manual"] is True
    assert len(merchant.received) == 2
    assert client.post("/api/messages/1/restart").status_code == 409  # delivered: nothing to restart
    assert client.post("/api/messages/99/restart").status_code == 404
    assert client.get("/api/messages?state=sideways").status_code == 400


def test_the_restart_button_needs_the_token_and_a_same_site_post(app: Flask, client: FlaskClient) -> None:
    anonymous = app.test_client()
    assert anonymous.post("/api/messages/1/restart").status_code == 401
    assert anonymous.get("/api/messages").status_code == 401
    cross_site = client.post("/messages/1/restart", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403


def test_order_notifications_carry_the_order_number_and_are_retried_for_3_hours(
    client: FlaskClient, app: Flask, clock: FrozenClock, serve: Serve
) -> None:
    merchant = Scripted("000005")
    url = serve(merchant.app).replace("/produceAPI", "/notify")
    client.put("/api/target", json={"notification_url": url, "notification_token": NOTIFY_TOKEN})
    assert client.get("/api/notifications/template").json["fields"] == {"orderId": "MOCKPERIODYEARNEW"}
    sent = client.post(
        "/api/notifications", json={"fields": {"orderId": "CS2611300800001"}, "check_token": False}
    )
    assert sent.status_code == 200 and sent.json["kind"] == "notification"
    verdicts = {check["id"]: check["verdict"] for check in sent.json["checks"]}
    assert verdicts == {"notification.accepted": "warned", "notification.repeat": "skipped"}
    assert merchant.received[0]["body"] == {"orderId": "CS2611300800001"}
    market = market_state(app)
    for _ in range(ORDER_NOTIFICATION.cadence.resends):
        clock.advance(timedelta(minutes=3))
        assert run_due(market) == 1
    clock.advance(timedelta(hours=1))
    assert run_due(market) == 0
    [message] = client.get("/api/messages?state=parked").json["messages"]
    assert message["kind"] == "notification" and message["attempts_made"] == 61
    first, last = message["attempts"][0]["sent"]["market"], message["attempts"][-1]["sent"]["market"]
    assert (first, last) == ("2026-11-30T08:00:00.000Z", "2026-11-30T11:00:00.000Z")  # 3 hours, then stop
    assert "§9" in message["policy"] and NOTIFY_TOKEN not in str(message)
    merchant.codes = ["000000"]
    assert client.post(f"/api/messages/{message['id']}/restart").json["state"] == "delivered"
    assert len(merchant.received) == 62


def test_two_servers_on_one_file_never_claim_the_same_attempt(tmp_path: Path, clock: FrozenClock) -> None:
    store = Store(tmp_path / "koosim.db")
    first = market_state(create_app(store, clock=clock))
    second = market_state(create_app(Store(tmp_path / "koosim.db"), clock=clock))
    delivery_id = store.deliveries.add_claimed(
        owner=first.owner,
        kind="call",
        interface="produce",
        protocol="v2",
        activity="newInstance",
        label="newInstance",
        target_url="http://127.0.0.1:9/produceAPI",
        body={"activity": "newInstance"},
        policy="v2 newInstance",
        first_due=START.timestamp(),
        secrets=(),
    )
    now = START.timestamp()
    # attempt 1 is in flight for `first`: nobody else may claim the delivery
    assert second.store.deliveries.claim(delivery_id, second.owner, market_now=now) is None
    assert first.store.deliveries.claim(delivery_id, first.owner, market_now=now) is None
    assert store.deliveries.release(delivery_id, first.owner) is None
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def race(market: Any) -> None:
        barrier.wait()
        if market.store.deliveries.claim(delivery_id, market.owner, market_now=now) is not None:
            winners.append(market.owner)

    threads = [threading.Thread(target=race, args=(m,)) for m in [first, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1
    row = store.deliveries.get(delivery_id)
    assert row is not None and row["in_flight"] == 1 and row["claimed_by"] == winners[0]


def test_an_attempt_lost_in_flight_is_recorded_once_and_the_schedule_goes_on(
    tmp_path: Path, clock: FrozenClock, serve: Serve
) -> None:
    store = Store(tmp_path / "koosim.db")
    merchant = Scripted("000000")
    url = serve(merchant.app)
    market = market_state(create_app(store, clock=clock))
    market.configure({"url": url, "access_key": ACCESS_KEY})
    # a server that died after claiming attempt 1 and before recording it: its lease has run out
    delivery_id = store.deliveries.add_claimed(
        owner="dead-host:1:0",
        kind="call",
        interface="produce",
        protocol="v2",
        activity="newInstance",
        label="newInstance",
        target_url=url,
        body={"activity": "newInstance", "orderId": "o-1"},
        policy="v2 newInstance",
        first_due=START.timestamp(),
        secrets=(),
        lease=-1,
    )
    assert run_due(market) == 0  # the lost attempt is recorded, not sent again
    row = store.deliveries.get(delivery_id)
    assert row is not None and row["in_flight"] is None and len(row["attempts"]) == 1
    assert "koosim stopped while this attempt was in flight" in row["attempts"][0]["failure"]["message"]
    assert merchant.received == []
    clock.advance(timedelta(seconds=1))  # U11 resends a lost answer (no answer) after 1 s
    assert run_due(market) == 1 and run_due(market) == 0
    row = store.deliveries.get(delivery_id)
    assert (
        row is not None and row["state"] == "delivered" and [a["number"] for a in row["attempts"]] == [1, 2]
    )
    assert [r["body"]["orderId"] for r in merchant.received] == ["o-1"]


def test_a_scaled_marketplace_clock_continues_its_timeline_across_restarts(tmp_path: Path) -> None:
    store = Store(tmp_path / "koosim.db")
    assert durable_clock(store, None).describe() == "marketplace time: real time"
    first = durable_clock(store, 3600)
    time.sleep(1)  # an hour of marketplace time
    second = durable_clock(Store(tmp_path / "koosim.db"), 3600)
    # the second process continues the first's timeline, not a fresh start at wall time
    assert second.now() - datetime.now(UTC) >= timedelta(minutes=50)
    assert abs(second.now() - first.now()) < timedelta(minutes=10)
    slower = durable_clock(store, 60)  # another scale goes on from where the timeline is
    assert slower.now() - datetime.now(UTC) >= timedelta(minutes=50)


def test_a_delivery_is_not_resent_to_a_target_that_changed(
    client: FlaskClient, app: Flask, clock: FrozenClock, serve: Serve
) -> None:
    merchant = Scripted("000005", "000000")
    url = serve(merchant.app)
    _target(client, url)
    _new_instance(client)
    market = market_state(app)
    client.put("/api/target", json={"protocol": "v1"})  # same URL, another generation: not this body's
    clock.advance(timedelta(seconds=5))
    assert run_due(market) == 0 and run_due(market) == 0 and len(merchant.received) == 1
    assert list(market.held_deliveries) == [1]  # left alone for a while, not retried every pass
    other = serve(Scripted("000000").app)
    client.put("/api/target", json={"url": other, "protocol": "v2", "access_key": ACCESS_KEY})
    market.held_deliveries.clear()
    assert run_due(market) == 0  # keys are for the new URL only: the old delivery waits
    assert "another URL" in client.get("/api/messages/1").json["waiting"]
    _target(client, url)
    assert run_due(market) == 1 and client.get("/api/messages/1").json["state"] == "delivered"
    assert len(merchant.received) == 2


def test_a_merchant_refusing_a_repeated_notice_is_warned(client: FlaskClient, serve: Serve) -> None:
    seen: set[str] = set()
    merchant = Flask("forgetful-merchant")

    @merchant.post("/notify")
    def notify() -> dict[str, str]:
        order = request.get_json()["orderId"]
        if order in seen:  # "already processed": a failed call to the marketplace (§3.4)
            return {"resultCode": "000005", "resultMsg": "duplicate order"}
        seen.add(order)
        return {"resultCode": "000000", "resultMsg": "ok"}

    url = serve(merchant).replace("/produceAPI", "/notify")
    client.put("/api/target", json={"notification_url": url, "notification_token": NOTIFY_TOKEN})
    record = client.post("/api/notifications", json={"fields": {"orderId": "CS1"}, "check_token": False}).json
    verdicts = {check["id"]: check["verdict"] for check in record["checks"]}
    assert verdicts == {"notification.accepted": "passed", "notification.repeat": "warned"}
    assert client.get("/api/messages").json["messages"] == []  # the delivery itself succeeded
