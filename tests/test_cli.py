"""The ``koosim`` command line: help, catalog, verify's exit codes, and ``koosim merchant``."""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import independent
import pytest
import requests
from click.testing import CliRunner, Result

from simulator import __version__
from simulator.cli import main
from simulator.reference import DEMO_ACCESS_KEY


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No koosim.toml but the test's own, a fixed width (conftest.py has unset every KOOSIM_*)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


def koosim(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_usage_error(result: Result) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip(), "the cause goes to stderr"


# --- help, version, catalog --------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = koosim("--help")
    assert result.exit_code == 0
    for command in ("verify", "checks", "merchant"):
        assert command in result.output
    assert koosim("-h").output == result.output


def test_version() -> None:
    result = koosim("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"koosim, version {__version__}"


def test_checks_lists_the_catalog_ids() -> None:
    result = koosim("checks")
    assert result.exit_code == 0
    for check_id in (
        "security.v2-signature-wrong",
        "security.v1-authtoken-wrong",
        "idempotency.new-instance-resend",
        "lifecycle.full",
        "contract.response-schema",
    ):
        assert check_id in result.output


def test_checks_lists_whole_ids_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = koosim("checks")
    assert "security.v2-signature-wrong" in result.output
    assert "…" not in result.output


# --- verify ------------------------------------------------------------------------------------


def test_verify_without_url_passes_against_the_bundled_merchant() -> None:
    result = koosim("verify")
    assert result.exit_code == 0, result.output
    assert "no failure here leads to a published delisting consequence" in result.output


def test_verify_v1_without_url_passes_against_the_bundled_merchant() -> None:
    result = koosim("verify", "--protocol", "v1")
    assert result.exit_code == 0, result.output
    assert "no failure here leads to a published delisting consequence" in result.output


def test_verify_selected_checks_write_a_json_report(tmp_path: Path) -> None:
    report = tmp_path / "out" / "run.json"
    result = koosim("verify", "--checks", "security.v2-*", "--json", str(report))
    assert result.exit_code == 0, result.output
    record = json.loads(report.read_text(encoding="utf-8"))
    assert record  # the report's shape belongs to test_report; here: it was written and parses


def test_verify_with_a_pattern_matching_nothing_is_a_one_line_usage_error() -> None:
    result = koosim("verify", "--checks", "nope.*")
    assert_usage_error(result)
    assert "nope.*" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_verify_against_a_port_where_nothing_listens_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}/produceAPI"
    result = koosim("verify", "--url", url, env={"KOOSIM_ACCESS_KEY": "some-key"})
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert "reached" in result.stderr


def test_verify_with_url_but_no_access_key_exits_2_naming_the_variable() -> None:
    result = koosim("verify", "--url", f"http://127.0.0.1:{free_port()}/produceAPI")
    assert_usage_error(result)
    assert "KOOSIM_ACCESS_KEY" in result.stderr


def test_verify_with_a_malformed_koosim_toml_exits_2_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "koosim.toml").write_text('url = "unterminated\n', encoding="utf-8")
    result = koosim("verify")
    assert_usage_error(result)
    assert "koosim.toml" in result.stderr


def test_verify_with_an_unknown_key_in_koosim_toml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "koosim.toml").write_text('acces_key = "typo"\n', encoding="utf-8")
    result = koosim("verify")
    assert_usage_error(result)
    assert "acces_key" in result.stderr


def test_verify_with_a_bad_protocol_in_the_environment_exits_2() -> None:
    result = koosim("verify", env={"KOOSIM_PROTOCOL": "v3"})
    assert_usage_error(result)
    assert "KOOSIM_PROTOCOL" in result.stderr


def test_error_messages_carry_no_literal_markup() -> None:
    result = koosim("verify", "--checks", "nope.*")
    assert result.stderr.startswith("koosim: ")
    assert "[/]" not in result.stderr


def test_a_long_error_message_stays_on_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    (tmp_path / "koosim.toml").write_text('url = "unterminated\n', encoding="utf-8")
    result = koosim("verify")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- koosim merchant, for real ------------------------------------------------------------------


def _first_line(stream: object, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()  # type: ignore[attr-defined]
    return lines.get(timeout=timeout)


def test_merchant_command_serves_a_v2_call_signed_with_the_demo_key(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "merchant", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = _first_line(process.stdout, timeout=30)
        found = re.search(r"http://127\.0\.0\.1:(\d+)/produceAPI", line)
        assert found, line
        assert int(found.group(1)) != 0
        body = independent.new_order()
        response = requests.post(
            found.group(0),
            params=independent.v2_query(body, DEMO_ACCESS_KEY),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200
        answer = response.json()
        assert answer["resultCode"] == "000000", answer
        assert answer["instanceId"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_python_dash_m_simulator_is_koosim() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "simulator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "Usage: koosim" in completed.stdout
