"""One rule, one place (issue 12): the error family and its one mapping to exit codes, the one
preamble every target command goes through (``with_target``), and the one settings validator the
command line, the console and the JSON API share."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from simulator import settings as settings_module
from simulator.cli import main
from simulator.cli.common import handle_errors
from simulator.engine.scenario import ScenarioError
from simulator.errors import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ConfigError,
    KoosimError,
    StoreError,
    TargetUnreachable,
    UsageError,
)
from simulator.server import create_app, market_state
from simulator.server.state import SettingsError
from simulator.settings import load_settings, validate
from simulator.store import Store

TARGET_COMMANDS = ("verify", "play", "explore", "serve", "load")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KOOSIM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


def koosim(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def arguments(command: str, *extra: str) -> list[str]:
    """The least a command needs besides its target options."""
    return [command, *(["new-order"] if command == "play" else []), *extra]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the error family and its one mapping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("KOOSIM_TIMEOUT: timeout must be a number of seconds"), EXIT_USAGE, None),
        (SettingsError("url: 'ftp://x' is not an http(s) URL with a host"), EXIT_USAGE, None),
        (ScenarioError("scenarios/x.yaml: steps must be a list"), EXIT_USAGE, None),
        (UsageError("no check matches nothing.*"), EXIT_USAGE, None),
        (
            StoreError("cannot open h.db: file is not a database"),
            EXIT_USAGE,
            "cannot keep the run history: cannot open h.db: file is not a database",
        ),
        (
            TargetUnreachable("cannot connect to 127.0.0.1:9: Connection refused"),
            EXIT_UNREACHABLE,
            "the target could not be reached: cannot connect to 127.0.0.1:9: Connection refused",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_every_user_error_is_a_koosim_error_mapped_once(
    error: KoosimError, code: int, line: str | None
) -> None:
    @click.command()
    def command() -> None:
        with handle_errors():
            raise error

    result = CliRunner().invoke(command, [])
    assert isinstance(error, KoosimError)
    assert result.exit_code == code == error.exit_code
    assert result.stderr == f"koosim: {line or error}\n"
    assert "Traceback" not in result.output


def test_an_error_that_is_not_the_users_is_not_swallowed() -> None:
    @click.command()
    def command() -> None:
        with handle_errors():
            raise RuntimeError("a bug")

    result = CliRunner().invoke(command, [])
    assert isinstance(result.exception, RuntimeError)


def test_the_command_modules_never_import_the_cli_package_back() -> None:
    for path in (Path(settings_module.__file__).parent / "cli").glob("*.py"):
        if path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "from simulator.cli import" not in text, path
        assert "import simulator.cli\n" not in text, path


# --- with_target: the one preamble ----------------------------------------------------------------


@pytest.mark.parametrize("command", TARGET_COMMANDS)
def test_every_target_command_goes_through_with_target(command: str) -> None:
    callback = main.commands[command].callback
    assert getattr(callback, "__koosim_with_target__", False), command
    names = {param.name for param in main.commands[command].params}
    assert {"url", "protocol", "sync_url", "timeout"} <= names


@pytest.mark.parametrize("command", TARGET_COMMANDS)
def test_every_target_command_reports_a_bad_setting_in_the_same_line(command: str) -> None:
    result = koosim(*arguments(command), env={"KOOSIM_TIMEOUT": "soon"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr == "koosim: KOOSIM_TIMEOUT: timeout must be a number of seconds\n"


@pytest.mark.parametrize("command", ["verify", "play", "explore"])
def test_every_probing_command_reports_an_unreachable_target_in_the_same_line(command: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/produceAPI"
    result = koosim(*arguments(command, "--url", url), env={"KOOSIM_ACCESS_KEY": "k" * 16})
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert result.stderr.startswith("koosim: the target could not be reached: cannot connect to 127.0.0.1:")
    assert "\n" not in result.stderr.rstrip("\n")


@pytest.mark.parametrize("command", ["verify", "play", "explore"])
def test_every_run_command_has_a_time_budget_from_flag_env_or_file(command: str) -> None:
    assert "max_time" in {param.name for param in main.commands[command].params}
    result = koosim(*arguments(command), env={"KOOSIM_MAX_TIME": "-5"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr.startswith("koosim: KOOSIM_MAX_TIME: max_time must be more than 0")
    Path("koosim.toml").write_text('max_time = "long"\n', encoding="utf-8")
    result = koosim(*arguments(command))
    assert result.exit_code == EXIT_USAGE and "max_time must be a number" in result.stderr


def test_the_time_budget_resolves_flag_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "koosim.toml").write_text("max_time = 30\n", encoding="utf-8")
    assert load_settings({}, environ={}, cwd=tmp_path).max_time == 30
    assert load_settings({}, environ={"KOOSIM_MAX_TIME": "20"}, cwd=tmp_path).max_time == 20
    assert load_settings({"max_time": 10.0}, environ={"KOOSIM_MAX_TIME": "20"}, cwd=tmp_path).max_time == 10
    assert load_settings({}, environ={}, cwd=tmp_path / "nowhere").max_time == 600


# --- one validator for the command line, the console and the API ---------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", "soon"),
        ("timeout", -1),
        ("url", "ftp://merchant"),
        ("url", "http://x:99999/"),
        ("protocol", "v3"),
    ],
)
def test_the_command_line_and_the_api_say_the_same_about_a_bad_value(
    name: str, value: object, tmp_path: Path
) -> None:
    with pytest.raises(ValueError) as problem:
        validate(name, value)
    with pytest.raises(ConfigError) as from_the_command_line:
        load_settings({name: value}, environ={}, cwd=tmp_path)
    app = create_app(Store(tmp_path / "h.db"))
    try:
        with pytest.raises(SettingsError) as from_the_api:
            market_state(app).configure({name: value})
    finally:
        market_state(app).close()
    assert str(from_the_command_line.value).endswith(str(problem.value))
    assert str(from_the_api.value).endswith(str(problem.value))


def test_the_command_line_and_the_api_call_the_very_same_validator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def stricter(value: object) -> float:
        raise ValueError("timeout must be a prime number of seconds")

    monkeypatch.setitem(settings_module.VALIDATORS, "timeout", stricter)
    with pytest.raises(ConfigError, match=r"--timeout: timeout must be a prime number"):
        load_settings({"timeout": 4}, environ={}, cwd=tmp_path)
    app = create_app(Store(tmp_path / "h.db"))
    try:
        with pytest.raises(SettingsError, match=r"^timeout must be a prime number"):
            market_state(app).configure({"timeout": 4})
    finally:
        market_state(app).close()
    assert (
        koosim("verify", "--timeout", "4").stderr
        == "koosim: --timeout: timeout must be a prime number of seconds\n"
    )


def test_the_delivery_override_is_read_once_with_the_settings(tmp_path: Path) -> None:
    """KOOSIM_DELIVERY_RESENDS / _INTERVAL replaced KOOSIM_RESENDS / KOOSIM_BACKOFF (issue 15);
    the cap is the most any published schedule has, 60 (V1 newInstance), not the invented 10."""
    environ = {"KOOSIM_DELIVERY_RESENDS": "1", "KOOSIM_DELIVERY_INTERVAL": "30s"}
    settings = load_settings({}, environ=environ, cwd=tmp_path)
    assert settings.delivery is not None
    assert (settings.delivery.resends, settings.delivery.first_gap) == (1, timedelta(seconds=30))
    with pytest.raises(ConfigError, match="KOOSIM_DELIVERY_RESENDS: resends must be between 0 and 60"):
        load_settings({}, environ={"KOOSIM_DELIVERY_RESENDS": "61"}, cwd=tmp_path)


def test_the_target_is_named_redacted_and_printable_in_every_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify, play and explore name the target through TargetInfo.where: a URL carrying the
    access key never reaches the terminal as it is (hostile characters are refused earlier, when
    the URL is configured)."""
    from simulator.cli.common import TargetInfo
    from simulator.settings import build_target

    key = "where-key-0123456789"
    monkeypatch.setenv("KOOSIM_ACCESS_KEY", key)
    url = f"https://merchant.example/produceAPI?token={key}"
    info = TargetInfo({"url": url, "protocol": None, "sync_url": None, "timeout": None})
    where = info.where(build_target(info.settings))
    assert key not in where and "[redacted]" in where
