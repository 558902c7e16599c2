"""Delivery policies (simulator/delivery.py) wired to the transport and the settings, and
``idempotency.converges-after-failures`` (which replaced resend.py's ResendPolicy, issue 15).

The policies are driven against tiny servers on 127.0.0.1 that fail a given number of times, each
in its own way, then answer success, on a frozen clock: nothing sleeps through marketplace time.
The check runs against the reference merchant and against merchants that check, provision, then
insert.
"""

from __future__ import annotations

import io
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from simulator.checks import Verdict, select
from simulator.checks.base import REGISTRY
from simulator.clock import FrozenClock, ScaledClock
from simulator.delivery import (
    Delivery,
    DeliveryOverride,
    DeliveryState,
    delivery_failure,
    policy_for,
)
from simulator.delivery import deliver as run_delivery
from simulator.engine.run import Run, run_checks
from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.report import console as console_report
from simulator.serving import BackgroundServer
from simulator.settings import ConfigError, load_settings
from simulator.transport import PRODUCE, Target, Transport

CHECK_ID = "idempotency.converges-after-failures"
KEY = "koosim-resend-test-key"
DEADLINE = 0.3
"""The per-call deadline of the policy tests: a 'slow' failure answers after twice that."""


# --- a server that fails N times, then succeeds ------------------------------------------------


def _json(code: str, **fields: Any) -> bytes:
    return json.dumps({"resultCode": code, "resultMsg": "test", **fields}).encode()


class FlakyServer:
    """Answers the i-th request with ``failures[i]`` while there is one, then with success.

    A failure is a resultCode (``"000005"``), ``"http503"``/``"http404"``, ``"html"`` (HTTP 200
    text/html), ``"slow"`` (success after 2 × DEADLINE), ``"close"`` (no answer, connection
    closed) or ``"reset"`` (connection reset).
    """

    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        self.requests = 0
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    kind = flaky.failures[flaky.requests] if flaky.requests < len(flaky.failures) else "ok"
                    flaky.requests += 1
                if kind == "close":
                    self.close_connection = True
                    return
                if kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if kind == "slow":
                    time.sleep(2 * DEADLINE)
                status, content_type, body = 200, "application/json", _json("000000", instanceId="inst-1")
                if kind.startswith("http"):
                    status, body = int(kind[4:]), b"{}"
                elif kind == "html":
                    content_type, body = "text/html", b"<html>bad gateway</html>"
                elif kind.isdigit():
                    body = _json(kind)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST  # V1 calls are GETs

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def target(self) -> Target:
        host, port = self._server.server_address[:2]
        return Target(url=f"http://{host}:{port}/produceAPI", access_key=KEY, timeout=DEADLINE)

    def __enter__(self) -> FlakyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


START = datetime(2026, 11, 30, tzinfo=UTC)


def deliver(
    failures: list[str], protocol: str = "v2", override: DeliveryOverride | None = None
) -> tuple[list[Any], list[timedelta], int]:
    """Deliver one newInstance to a FlakyServer per its delivery policy, on a frozen clock that
    each wait advances: exchanges, the marketplace offsets of the attempts, requests seen."""
    clock = FrozenClock(START, waits="jump")
    with FlakyServer(failures) as server:
        target = replace(server.target, protocol=protocol, clock=clock)
        transport = Transport(target)
        delivery = Delivery(policy_for(PRODUCE, protocol, "newInstance", override), clock)
        try:
            exchanges = run_delivery(
                delivery,
                lambda attempt: transport.send({"activity": "newInstance"}, attempt=attempt),
                lambda exchange: delivery_failure(exchange, deadline=DEADLINE),
            )
        finally:
            transport.close()
        offsets = [exchange.market_at - START for exchange in exchanges]
        return exchanges, offsets, server.requests


RESENT = ["000004", "000005", "http503", "slow", "close", "reset"]
NOT_RESENT = ["000001", "000002", "000003", "000100", "000101", "http404", "html"]
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize("failure", RESENT)
def test_a_transient_failure_is_resent_until_success(failure: str) -> None:
    exchanges, offsets, requests = deliver([failure, failure])
    assert [e.attempt for e in exchanges] == [1, 2, 3]
    assert all(delivery_failure(e, deadline=DEADLINE) is not None for e in exchanges[:2])
    assert exchanges[-1].result_code == "000000"
    assert offsets == [timedelta(0), SECOND, 3 * SECOND]  # U11: after 1 s, then 2 s more
    assert requests == 3


@pytest.mark.parametrize("failure", NOT_RESENT)
def test_a_considered_answer_is_a_failure_v2_does_not_resend(failure: str) -> None:
    """§3.4: every one is a failed call; ASSUMPTION U11 resends only the transient ones."""
    exchanges, offsets, requests = deliver([failure])
    assert len(exchanges) == 1 and requests == 1 and offsets == [timedelta(0)]
    assert delivery_failure(exchanges[0], deadline=DEADLINE) is not None


@pytest.mark.parametrize("failure", NOT_RESENT)
def test_v1_resends_after_any_failure(failure: str) -> None:
    """V1 newInstance is resent after any failed call, every 3 minutes ([S38], §10.1)."""
    exchanges, offsets, requests = deliver([failure], protocol="v1")
    assert len(exchanges) == 2 and requests == 2
    assert offsets == [timedelta(0), timedelta(minutes=3)]
    assert exchanges[-1].result_code == "000000"


def test_the_resends_stop_at_the_cap() -> None:
    exchanges, offsets, requests = deliver(["000005"] * 10)
    assert [e.attempt for e in exchanges] == [1, 2, 3, 4]
    assert exchanges[-1].result_code == "000005"
    assert offsets == [timedelta(0), SECOND, 3 * SECOND, 7 * SECOND]
    assert requests == 4


def test_an_override_is_followed() -> None:
    override = DeliveryOverride(resends=1, first_gap=timedelta(milliseconds=500))
    exchanges, offsets, _ = deliver(["close"] * 10, override=override)
    assert len(exchanges) == 2 and offsets == [timedelta(0), timedelta(milliseconds=500)]
    exchanges, offsets, _ = deliver(["close"], override=DeliveryOverride(resends=0))
    assert len(exchanges) == 1


def test_a_scaled_clock_plays_the_schedule_in_scaled_wall_time() -> None:
    """×3600: U11's 1 s + 2 s of marketplace time take under a millisecond of wall time each,
    and the exchanges carry the marketplace instants they were sent at."""
    target = replace(_refused_target(), clock=ScaledClock(3600))
    transport = Transport(target)
    delivery = Delivery(policy_for(PRODUCE, "v2", "newInstance", DeliveryOverride(resends=2)), target.clock)
    started = time.perf_counter()
    try:
        exchanges = run_delivery(delivery, lambda n: transport.send({"activity": "newInstance"}, attempt=n))
    finally:
        transport.close()
    assert [e.attempt for e in exchanges] == [1, 2, 3]
    assert all(e.error and e.error.startswith("connection failed") for e in exchanges)
    assert delivery.state is DeliveryState.PARKED
    gaps = [b.market_at - a.market_at for a, b in itertools.pairwise(exchanges)]
    assert gaps[0] >= SECOND and gaps[1] >= 2 * SECOND
    assert time.perf_counter() - started < 2  # connection refusals, and 3 s / 3600 of waiting


def _refused_target() -> Target:
    """A port nothing listens on: every delivery is a connection error, resent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Target(url=f"http://127.0.0.1:{port}/produceAPI", access_key=KEY, timeout=DEADLINE)


def override_from_env(environ: dict[str, str], tmp_path: Path) -> DeliveryOverride | None:
    """The override as the settings read it, once, from the environment (and koosim.toml, flags)."""
    return load_settings({}, environ=environ, cwd=tmp_path).delivery


def test_the_override_from_the_environment(tmp_path: Path) -> None:
    assert override_from_env({}, tmp_path) is None
    override = override_from_env(
        {"KOOSIM_DELIVERY_RESENDS": "5", "KOOSIM_DELIVERY_INTERVAL": "30s"}, tmp_path
    )
    assert override == DeliveryOverride(resends=5, first_gap=30 * SECOND)
    assert override is not None
    assert override.apply(policy_for(PRODUCE, "v2", "newInstance")).cadence.gaps == (
        30 * SECOND,
        60 * SECOND,
        120 * SECOND,
        240 * SECOND,
        480 * SECOND,
    )
    for environ, variable in (
        ({"KOOSIM_DELIVERY_RESENDS": "three"}, "KOOSIM_DELIVERY_RESENDS"),
        ({"KOOSIM_DELIVERY_INTERVAL": "soon"}, "KOOSIM_DELIVERY_INTERVAL"),
        ({"KOOSIM_DELIVERY_RESENDS": "99"}, "KOOSIM_DELIVERY_RESENDS"),
        ({"KOOSIM_DELIVERY_INTERVAL": "-1s"}, "KOOSIM_DELIVERY_INTERVAL"),
        ({"KOOSIM_BACKOFF": "nan"}, "KOOSIM_BACKOFF"),
    ):
        with pytest.raises(ConfigError, match=variable):
            override_from_env(environ, tmp_path)


def test_the_old_names_still_work_with_a_deprecation(tmp_path: Path) -> None:
    settings = load_settings({}, environ={"KOOSIM_RESENDS": "2", "KOOSIM_BACKOFF": "0.5"}, cwd=tmp_path)
    assert settings.delivery == DeliveryOverride(resends=2, first_gap=timedelta(milliseconds=500))
    assert len(settings.deprecations) == 2
    assert (
        "KOOSIM_RESENDS" in settings.deprecations[0] and "KOOSIM_DELIVERY_RESENDS" in settings.deprecations[0]
    )
    assert "KOOSIM_DELIVERY_INTERVAL" in settings.deprecations[1]
    # the new name wins over the old one
    both = load_settings({}, environ={"KOOSIM_RESENDS": "2", "KOOSIM_DELIVERY_RESENDS": "4"}, cwd=tmp_path)
    assert both.delivery == DeliveryOverride(resends=4)


def test_the_override_may_come_from_koosim_toml(tmp_path: Path) -> None:
    (tmp_path / "koosim.toml").write_text(
        'delivery_resends = 1\ndelivery_interval = "2m"\n', encoding="utf-8"
    )
    assert override_from_env({}, tmp_path) == DeliveryOverride(resends=1, first_gap=timedelta(minutes=2))
    env = override_from_env({"KOOSIM_DELIVERY_RESENDS": "2"}, tmp_path)
    assert env is not None and env.resends == 2  # env wins over the file


def test_the_run_reports_the_delivery_policies_and_the_clock(tmp_path: Path) -> None:
    target = Target(url="http://127.0.0.1:9/produceAPI", access_key=KEY, clock=FrozenClock(START))
    assumptions = Run(target=target, seed=0).assumptions
    assert "V1 newInstance 60 × 3 min then automatic cancellation" in assumptions["resend schedule"]
    assert "ASSUMPTION U11" in assumptions["resend schedule"]
    assert assumptions["marketplace clock"].startswith("marketplace time: frozen at 2026-11-30T00:00:00.000Z")
    override = override_from_env({"KOOSIM_DELIVERY_RESENDS": "2", "KOOSIM_DELIVERY_INTERVAL": "3s"}, tmp_path)
    assert (
        "overridden: resends 2, first gap 3s"
        in Run(target=target, seed=0, delivery=override).assumptions["resend schedule"]
    )


# --- idempotency.converges-after-failures -------------------------------------------------------


class CheckThenInsertMerchant:
    """A produce interface whose newInstance looks the order line up, provisions, then inserts.

    Nothing stops a second instance for a line whose first delivery is still provisioning:
    the marketplace's resend after its deadline creates another. ``latest`` picks which one a
    later copy is told about. It checks no signature: only idempotency is under test.
    """

    def __init__(self, provisioning: float = 0.3, latest: bool = False) -> None:
        self.provisioning = provisioning
        self.latest = latest
        self.lines: dict[tuple[str, str], list[str]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        fields = json.loads(environ["wsgi.input"].read(size) or b"{}")
        activity = fields.get("activity")
        if activity == "newInstance":
            line = (fields["orderId"], fields["orderLineId"])
            known = self.lines.get(line)
            if known:
                instance_id = known[-1 if self.latest else 0]
            else:
                time.sleep(self.provisioning)
                instance_id = f"inst-{uuid.uuid4().hex}"
                self.lines.setdefault(line, []).append(instance_id)
            body = _json("000000", instanceId=instance_id)
        elif activity == "queryInstance":
            created = {i for ids in self.lines.values() for i in ids}
            wanted = fields["instanceId"].split(",")
            body = _json("000000", info=[{"instanceId": i} for i in wanted if i in created])
        else:
            body = _json("000000")
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def reference() -> Iterator[Target]:
    config = MerchantConfig(access_key=KEY)
    with BackgroundServer(create_app(config)) as server:
        yield Target(url=server.base_url + PRODUCE_PATH, access_key=KEY, protocol="v2")


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_the_check_passes_against_the_reference_merchant(reference: Target, protocol: str) -> None:
    target = Target(url=reference.url, access_key=KEY, protocol=protocol)
    # with the per-exchange checks: the deliveries abandoned on purpose must not count against it
    run = run_checks(target, select([CHECK_ID, "timing.*", "contract.*"]))
    for result in run.results:
        assert result.verdict is Verdict.PASSED, (result.check.id, result.evidence)
    attempts = [e.attempt for e in run.results[0].exchanges if e.activity == "newInstance"]
    assert attempts[0] == 2 and attempts[-1] >= 3  # the overheard delivery, the resends, the late copy


@pytest.mark.parametrize("latest", [False, True], ids=["first-instance-wins", "latest-instance-wins"])
def test_the_check_fails_a_merchant_that_creates_one_instance_per_delivery(latest: bool) -> None:
    with BackgroundServer(CheckThenInsertMerchant(latest=latest)) as server:
        target = Target(url=server.base_url + PRODUCE_PATH, access_key=KEY)
        run = run_checks(target, [REGISTRY[CHECK_ID]])
    (result,) = run.results
    assert result.verdict is Verdict.FAILED
    assert "different instanceIds" in result.findings[0].message
    # recorded first, so that a failing follow-up query cannot hide it (K34); what the query
    # showed is a finding of its own
    assert any("queryInstance lists" in finding.message for finding in result.findings[1:])

    output = io.StringIO()
    console_report.print_run(
        Console(file=output, width=200), run, {CHECK_ID: f"koosim verify --checks {CHECK_ID}"}
    )
    assert "(attempt 2)" in output.getvalue() or "(attempt 3)" in output.getvalue()
    assert "ASSUMPTION U11 (V2: 3 resends after 1 s, 2 s, 4 s)" in output.getvalue()
    assert "marketplace clock: marketplace time: scaled ×3600" in output.getvalue()


def test_the_check_is_skipped_when_no_resend_is_allowed(reference: Target) -> None:
    override = DeliveryOverride(resends=0)  # KOOSIM_DELIVERY_RESENDS=0, as the run hands it down
    (result,) = run_checks(reference, [REGISTRY[CHECK_ID]], delivery=override).results
    assert result.verdict is Verdict.SKIPPED


def test_the_check_fails_when_no_delivery_is_accepted() -> None:
    with FlakyServer(["000005"] * 5) as server:
        (result,) = run_checks(
            server.target, [REGISTRY[CHECK_ID]], delivery=DeliveryOverride(resends=1)
        ).results
    assert result.verdict is Verdict.FAILED
    assert "was not accepted after 2 deliveries" in result.findings[0].message
