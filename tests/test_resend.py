"""The marketplace's resend policy (simulator/resend.py) and ``idempotency.converges-after-failures``.

The policy is driven against tiny servers on 127.0.0.1 that fail a given number of times, each
in its own way, then answer success; waits are recorded instead of slept. The check runs
against the reference merchant and against merchants that check, provision, then insert.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from simulator.checks import Verdict, select
from simulator.checks.base import REGISTRY
from simulator.engine.run import RESEND_SCHEDULE, Run, run_checks
from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.report import console as console_report
from simulator.resend import DEFAULT_POLICY, ResendPolicy, resend_reason
from simulator.serving import BackgroundServer
from simulator.settings import ConfigError, load_settings
from simulator.transport import Target, Transport

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


def deliver(failures: list[str], policy: ResendPolicy = DEFAULT_POLICY) -> tuple[list[Any], list[float], int]:
    """Deliver one newInstance through ``policy`` to a FlakyServer: exchanges, waits, requests seen."""
    waits: list[float] = []
    with FlakyServer(failures) as server:
        transport = Transport(server.target)
        try:
            exchanges = policy.deliver(
                lambda attempt: transport.send({"activity": "newInstance"}, attempt=attempt),
                sleep=waits.append,
            )
        finally:
            transport.close()
        return exchanges, waits, server.requests


RESENT = ["000004", "000005", "http503", "slow", "close", "reset"]
NOT_RESENT = ["000001", "000002", "000003", "000100", "000101", "http404", "html"]


@pytest.mark.parametrize("failure", RESENT)
def test_a_retryable_failure_is_resent_until_success(failure: str) -> None:
    exchanges, waits, requests = deliver([failure, failure])
    assert [e.attempt for e in exchanges] == [1, 2, 3]
    assert all(resend_reason(e) is not None for e in exchanges[:2])
    assert exchanges[-1].result_code == "000000"
    assert waits == [1.0, 2.0]
    assert requests == 3


@pytest.mark.parametrize("failure", NOT_RESENT)
def test_a_considered_answer_is_not_resent(failure: str) -> None:
    exchanges, waits, requests = deliver([failure])
    assert len(exchanges) == 1 and requests == 1 and waits == []
    assert resend_reason(exchanges[0]) is None


def test_the_resends_stop_at_the_cap() -> None:
    exchanges, waits, requests = deliver(["000005"] * 10)
    assert [e.attempt for e in exchanges] == [1, 2, 3, 4]
    assert exchanges[-1].result_code == "000005"
    assert waits == [1.0, 2.0, 4.0]
    assert requests == 4


def test_a_configured_policy_is_followed() -> None:
    exchanges, waits, _ = deliver(["close"] * 10, ResendPolicy(resends=1, backoff=0.5))
    assert len(exchanges) == 2 and waits == [0.5]
    exchanges, waits, _ = deliver(["close"], ResendPolicy(resends=0))
    assert len(exchanges) == 1 and waits == []


def test_the_schedule() -> None:
    assert DEFAULT_POLICY.delays == RESEND_SCHEDULE == (1.0, 2.0, 4.0)
    assert DEFAULT_POLICY.describe() == "3 resend(s) after 1 s, 2 s, 4 s"
    assert DEFAULT_POLICY.scaled(0.05).delays == pytest.approx((0.05, 0.1, 0.2))
    assert ResendPolicy(resends=0).describe() == "no resends"
    with pytest.raises(ValueError):
        ResendPolicy(resends=11)


def test_real_waits_follow_the_scaled_schedule() -> None:
    started = time.perf_counter()
    exchanges = ResendPolicy(resends=2).scaled(0.05).deliver(_refused)
    assert [e.attempt for e in exchanges] == [1, 2, 3]
    assert all(e.error and e.error.startswith("connection failed") for e in exchanges)
    assert time.perf_counter() - started >= 0.15


def _refused(attempt: int) -> Any:
    """A delivery to a port nothing listens on: a connection error, resent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = Transport(Target(url=f"http://127.0.0.1:{port}/produceAPI", access_key=KEY, timeout=DEADLINE))
    try:
        return transport.send({"activity": "newInstance"}, attempt=attempt)
    finally:
        transport.close()


def policy_from_env(environ: dict[str, str], tmp_path: Path) -> ResendPolicy:
    """The policy as the settings read it, once, from the environment (and koosim.toml, flags)."""
    return load_settings({}, environ=environ, cwd=tmp_path).resend_policy


def test_policy_from_the_environment(tmp_path: Path) -> None:
    assert policy_from_env({}, tmp_path) == DEFAULT_POLICY
    policy = policy_from_env({"KOOSIM_RESENDS": "5", "KOOSIM_BACKOFF": "0.5"}, tmp_path)
    assert policy.delays == (0.5, 1.0, 2.0, 4.0, 8.0)
    for environ, variable in (
        ({"KOOSIM_RESENDS": "three"}, "KOOSIM_RESENDS"),
        ({"KOOSIM_BACKOFF": "soon"}, "KOOSIM_BACKOFF"),
        ({"KOOSIM_RESENDS": "99"}, "KOOSIM_RESENDS"),
        ({"KOOSIM_BACKOFF": "-1"}, "KOOSIM_BACKOFF"),
        ({"KOOSIM_BACKOFF": "nan"}, "KOOSIM_BACKOFF"),
    ):
        with pytest.raises(ConfigError, match=variable):
            policy_from_env(environ, tmp_path)


def test_the_policy_may_come_from_koosim_toml(tmp_path: Path) -> None:
    (tmp_path / "koosim.toml").write_text("resends = 1\nbackoff = 0.25\n", encoding="utf-8")
    assert policy_from_env({}, tmp_path) == ResendPolicy(resends=1, backoff=0.25)
    assert policy_from_env({"KOOSIM_RESENDS": "2"}, tmp_path).resends == 2  # env wins over the file


def test_the_run_reports_the_configured_schedule(tmp_path: Path) -> None:
    target = Target(url="http://127.0.0.1:9/produceAPI", access_key=KEY)
    assert Run(target=target, seed=0).assumptions["resend schedule"] == (
        "3 resend(s) after 1 s, 2 s, 4 s (ASSUMPTION)"
    )
    policy = policy_from_env({"KOOSIM_RESENDS": "2", "KOOSIM_BACKOFF": "3"}, tmp_path)
    assert (
        Run(target=target, seed=0, resend_policy=policy).assumptions["resend schedule"]
        == "2 resend(s) after 3 s, 6 s (ASSUMPTION)"
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
    assert "queryInstance lists" in result.findings[0].message

    output = io.StringIO()
    console_report.print_run(
        Console(file=output, width=200), run, {CHECK_ID: f"koosim verify --checks {CHECK_ID}"}
    )
    assert "(attempt 2)" in output.getvalue() or "(attempt 3)" in output.getvalue()
    assert "resend schedule: 3 resend(s) after 1 s, 2 s, 4 s" in output.getvalue()


def test_the_check_is_skipped_when_no_resend_is_allowed(reference: Target) -> None:
    policy = ResendPolicy(resends=0)  # KOOSIM_RESENDS=0, as the run hands it to the check
    (result,) = run_checks(reference, [REGISTRY[CHECK_ID]], resend_policy=policy).results
    assert result.verdict is Verdict.SKIPPED


def test_the_check_fails_when_no_delivery_is_accepted() -> None:
    with FlakyServer(["000005"] * 5) as server:
        (result,) = run_checks(
            server.target, [REGISTRY[CHECK_ID]], resend_policy=ResendPolicy(resends=1)
        ).results
    assert result.verdict is Verdict.FAILED
    assert "was not accepted after 2 deliveries" in result.findings[0].message
