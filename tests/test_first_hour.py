"""The first hour of a merchant's engineer, and what a CI pipeline relies on (issue 14).

The preflight names a wrong key, a wrong path or a web page in one line (exit 3) and never
misfires on a merchant with one faulty rule; the demo keys are shown where a newcomer looks;
Ctrl-C/SIGTERM end with 130/143, the summary so far and partial reports; every --checks glob
must match; report paths are checked before any traffic; output off a terminal never cuts an
identifier or a URL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from hostile.cli import koosim_env
from hostile.slow import SlowLedgerMerchant
from mutants import GALLERY, Mutant
from mutants import v2_signature_ignored as cli_mutant

from simulator.checks import catalog
from simulator.cli import main
from simulator.cli.common import OUTPUT, ReportFiles, UsageError, make_console
from simulator.engine.preflight import preflight
from simulator.engine.scenario import find, library_dirs
from simulator.reference import DEMO_ACCESS_KEY, DEMO_SYNC_KEY, PRODUCE_PATH, MerchantConfig, create_app
from simulator.serving import BackgroundServer
from simulator.transport import Target

pytest_plugins = ["pytester"]

ACCESS_KEY = "first-hour-access-key-0001"
SYNC_KEY = "first-hour-sync-key-0001"
ROOT = Path(__file__).resolve().parent.parent
FAST = ("--checks", "lifecycle.test-order")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


def koosim(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


class Counting:
    """A WSGI app that counts the calls it is sent before answering them."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


@pytest.fixture
def merchant() -> Iterator[tuple[Counting, str]]:
    app = Counting(create_app(MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)))
    with BackgroundServer(app) as server:
        yield app, server.base_url + PRODUCE_PATH


def web_site() -> Flask:
    app = Flask("a-web-site")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def page(path: str) -> str:
        return "<!DOCTYPE html><html><head><title>Our product</title></head><body>Welcome</body></html>"

    return app


# --- the preflight -----------------------------------------------------------------------------


def test_a_wrong_key_is_named_in_one_line_and_exit_3_without_the_catalog(
    merchant: tuple[Counting, str],
) -> None:
    app, url = merchant
    result = koosim("verify", "--url", url, env={"KOOSIM_ACCESS_KEY": "not-the-key"})
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "refuses our signature" in lines[0] and "KOOSIM_ACCESS_KEY" in lines[0]
    assert "--no-preflight" in lines[0]
    assert "Delisting" not in result.output and "checks:" not in result.output
    assert app.calls == 1


def test_a_v1_merchant_with_a_wrong_key_gets_the_same_diagnosis(merchant: tuple[Counting, str]) -> None:
    _, url = merchant
    result = koosim("verify", "--url", url, "--protocol", "v1", env={"KOOSIM_ACCESS_KEY": "not-the-key"})
    assert result.exit_code == 3, result.output
    assert "refuses our signature" in result.stderr


def test_a_wrong_path_is_named_with_the_url_called(merchant: tuple[Counting, str]) -> None:
    _, url = merchant
    wrong = url.replace(PRODUCE_PATH, "/api/v1/orders")
    result = koosim("verify", "--url", wrong, env={"KOOSIM_ACCESS_KEY": ACCESS_KEY})
    assert result.exit_code == 3, result.output
    assert "nothing answers at this path" in result.stderr
    assert wrong in result.stderr


def test_a_web_page_is_named_as_such() -> None:
    with BackgroundServer(web_site()) as server:
        result = koosim("verify", "--url", server.base_url + "/", env={"KOOSIM_ACCESS_KEY": ACCESS_KEY})
    assert result.exit_code == 3, result.output
    assert "a web page, not the produce interface" in result.stderr


def test_explore_runs_the_preflight_too(merchant: tuple[Counting, str]) -> None:
    """Hundreds of sequences against a wrong key would say the same thing; a played scenario is a
    few calls, each judged and shown, and plays without one."""
    app, url = merchant
    command = ["explore", "--max-examples", "3"]
    result = koosim(*command, "--url", url, env={"KOOSIM_ACCESS_KEY": "not-the-key"})
    assert result.exit_code == 3, result.output
    assert "refuses our signature" in result.stderr
    assert app.calls == 1
    anyway = koosim(*command, "--url", url, "--no-preflight", env={"KOOSIM_ACCESS_KEY": "not-the-key"})
    assert anyway.exit_code == 1, anyway.output


def test_no_preflight_runs_the_catalog_anyway(merchant: tuple[Counting, str]) -> None:
    _, url = merchant
    result = koosim("verify", "--url", url, "--no-preflight", *FAST, env={"KOOSIM_ACCESS_KEY": "not-the-key"})
    assert result.exit_code == 1, result.output
    assert "lifecycle.test-order" in result.output


def test_a_correct_merchant_passes_the_preflight_and_its_call_is_in_the_run(
    merchant: tuple[Counting, str], tmp_path: Path
) -> None:
    app, url = merchant
    report = tmp_path / "run.json"
    env = {"KOOSIM_ACCESS_KEY": ACCESS_KEY}
    result = koosim("verify", "--url", url, *FAST, "--json", str(report), env=env)
    assert result.exit_code == 0, result.output
    record = json.loads(report.read_text())
    assert app.calls == len(record["exchanges"])  # the history holds every call koosim sent
    assert any(exchange["label"] == "preflight" for exchange in record["exchanges"])


@pytest.mark.parametrize("mutant", GALLERY, ids=lambda mutant: mutant.name)
def test_the_preflight_never_misfires_on_a_merchant_with_one_faulty_rule(mutant: Mutant) -> None:
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    with BackgroundServer(mutant.build(config)) as server:
        target = Target(
            url=server.base_url + PRODUCE_PATH,
            access_key=ACCESS_KEY,
            sync_key=SYNC_KEY,
            protocol=mutant.protocol,
            timeout=mutant.timeout,
        )
        diagnosis, exchange = preflight(target)
    assert diagnosis is None, (diagnosis, exchange.status, exchange.response_body[:300])


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_the_preflight_passes_the_reference_merchant(protocol: str) -> None:
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    with BackgroundServer(create_app(config)) as server:
        target = Target(url=server.base_url + PRODUCE_PATH, access_key=ACCESS_KEY, protocol=protocol)
        assert preflight(target)[0] is None


# --- the demo keys -----------------------------------------------------------------------------


def test_verify_help_shows_the_demo_keys_and_the_two_terminal_command() -> None:
    result = koosim("verify", "--help")
    assert f"export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY} KOOSIM_SYNC_KEY={DEMO_SYNC_KEY}" in result.output
    assert "koosim verify --url http://127.0.0.1:8080/produceAPI" in result.output


def test_koosim_merchant_prints_its_demo_keys_and_the_verify_command(tmp_path: Path) -> None:
    env = koosim_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "merchant", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    text = "".join(lines)
    assert f"export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY} KOOSIM_SYNC_KEY={DEMO_SYNC_KEY}" in text, text
    assert re.search(r"koosim verify --url http://127\.0\.0\.1:\d+/produceAPI", text), text


def test_a_local_url_without_a_key_says_what_to_export() -> None:
    result = koosim("verify", "--url", "http://127.0.0.1:8080/produceAPI")
    assert result.exit_code == 2
    assert f"export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY}" in result.stderr
    remote = koosim("verify", "--url", "https://merchant.example.com/produceAPI")
    assert remote.exit_code == 2 and DEMO_ACCESS_KEY not in remote.stderr  # a remote merchant has its own


# --- exit codes and flags --------------------------------------------------------------------


def test_every_checks_glob_must_match() -> None:
    result = koosim("verify", "--checks", "security.*", "--checks", "lifecycle.tset-order")
    assert result.exit_code == 2
    assert (
        "--checks lifecycle.tset-order: no check matches (did you mean lifecycle.test-order?)"
        in result.stderr
    )
    assert "security.*" not in result.stderr


def test_an_unwritable_report_path_ends_the_run_before_any_call(
    merchant: tuple[Counting, str], tmp_path: Path
) -> None:
    app, url = merchant
    (tmp_path / "a-file").write_text("not a folder")
    result = koosim(
        "verify",
        "--url",
        url,
        *FAST,
        "--json",
        str(tmp_path / "a-file" / "run.json"),
        env={"KOOSIM_ACCESS_KEY": ACCESS_KEY},
    )
    assert result.exit_code == 2, result.output
    assert "cannot write the report" in result.stderr and "run.json" in result.stderr
    assert app.calls == 0
    assert result.output.count("\n") == result.stderr.count("\n")  # nothing but the one line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_report_folder_ends_the_run_before_any_call(
    merchant: tuple[Counting, str], tmp_path: Path
) -> None:
    app, url = merchant
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = koosim(
            "verify",
            "--url",
            url,
            *FAST,
            "--junit",
            str(folder / "junit.xml"),
            env={"KOOSIM_ACCESS_KEY": ACCESS_KEY},
        )
    finally:
        folder.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert app.calls == 0


def test_a_report_is_never_left_empty_or_half_written(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "run.json"
    reports = ReportFiles(json_path=path)
    assert path.parent.is_dir() and not path.exists()  # checked, created nothing but the folder

    def broken(name: str) -> str:
        raise RuntimeError("the renderer broke")

    with pytest.raises(RuntimeError):
        reports.write(broken)
    assert list(path.parent.iterdir()) == []
    reports.write(lambda name: '{"ok": true}')
    assert json.loads(path.read_text()) == {"ok": True}
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)  # it quotes the merchant (issue 13)
    with pytest.raises(UsageError):
        ReportFiles(html=tmp_path)  # a folder is not a report file


def test_fail_fast_stops_at_the_first_failed_check(tmp_path: Path) -> None:
    mutant = cli_mutant.MUTANT
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    report = tmp_path / "run.json"
    with BackgroundServer(mutant.build(config)) as server:
        url = server.base_url + PRODUCE_PATH
        args = ["verify", "--url", url, "--checks", mutant.catches, *FAST, "--json", str(report)]
        result = koosim(*args, "-x", env={"KOOSIM_ACCESS_KEY": ACCESS_KEY})
    assert result.exit_code == 1, result.output
    assert (
        f"stopped at the first failed check, {mutant.catches} (--fail-fast): 1 check not run" in result.output
    )
    record = json.loads(report.read_text())
    assert [check["id"] for check in record["checks"]] == [mutant.catches]
    assert "fail-fast" in record["partial"]


def test_quiet_prints_the_failures_and_the_summary_only(merchant: tuple[Counting, str]) -> None:
    _, url = merchant
    env = {"KOOSIM_ACCESS_KEY": ACCESS_KEY}
    loud, quiet = (
        koosim("verify", "--url", url, *FAST, env=env),
        koosim("verify", "--url", url, *FAST, "-q", env=env),
    )
    assert quiet.exit_code == loud.exit_code == 0
    assert f"koosim verify: {url}" in loud.output and f"koosim verify: {url}" not in quiet.output
    assert "PASS lifecycle.test-order" in loud.output and "PASS lifecycle.test-order" not in quiet.output
    assert "no failure here leads to a published delisting consequence" in quiet.output
    assert koosim("verify", "-q", "-v").exit_code == 2


def test_no_color_and_no_color_environment_are_documented_and_honoured() -> None:
    assert "NO_COLOR" in koosim("--help").output
    assert koosim("--no-color", "checks").exit_code == 0
    try:
        assert make_console().no_color
    finally:
        OUTPUT["color"] = True
    assert not make_console().no_color


def test_checks_runs_and_scenarios_speak_json(tmp_path: Path) -> None:
    checks = json.loads(koosim("checks", "--json").output)
    assert [check["id"] for check in checks] == [check.id for check in catalog()]
    assert {"id", "severity", "rule", "title", "protocols"} <= set(checks[0])
    scenarios = json.loads(koosim("scenarios", "--json").output)
    assert "renewal" in {scenario["name"] for scenario in scenarios}
    db = str(tmp_path / "koosim.db")
    assert koosim("verify", *FAST, "--db", db).exit_code == 0
    assert koosim("play", "renewal", "--db", db).exit_code == 0
    runs = json.loads(koosim("runs", "--json", "--db", db).output)
    assert [run["kind"] for run in runs] == ["play", "verify"]
    only_verify = json.loads(koosim("runs", "--json", "--kind", "verify", "--db", db).output)
    assert [run["run_id"] for run in only_verify] == [runs[1]["run_id"]]
    assert "play" not in koosim("runs", "--kind", "verify", "--db", db).output.split()


def test_did_you_mean_for_scenario_names_and_yaml_keys(tmp_path: Path) -> None:
    result = koosim("play", "renwal")
    assert result.exit_code == 2
    assert "did you mean renewal?" in result.stderr
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "typo.yaml").write_text(
        "name: typo\nsteps:\n  - id: create\n    activity: newInstance\n"
        "    expct:\n      resultCode: '000000'\n"
    )
    result = koosim("play", "typo", "--scenarios", str(folder))
    assert result.exit_code == 2
    assert "did you mean expct → expect?" in result.stderr, result.stderr


def test_timeout_help_states_the_range_the_settings_accept() -> None:
    from simulator.cli import common
    from simulator.settings import MAX_MAX_TIME, MAX_TIMEOUT

    assert (common.MAX_TIMEOUT, common.MAX_MAX_TIME) == (MAX_TIMEOUT, MAX_MAX_TIME)
    assert "at most 300 s" in " ".join(koosim("verify", "--help").output.split())
    assert koosim("verify", "--timeout", "301").exit_code == 2
    assert koosim("verify", "--max-time", "90000").exit_code == 2


def test_the_pytest_plugin_names_its_own_flag_in_its_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("-p", "no:hypothesispytest", "--koosim-url", "ftp://nowhere")
    assert result.ret != 0
    assert "--koosim-url" in result.stderr.str() + result.stdout.str()
    assert re.search(r"(?<!koosim)-(?<!-)-url", result.stderr.str()) is None


def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["merchant", "serve"])
def test_a_port_in_use_or_a_bad_host_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    for port in busy_port():
        result = koosim(command, "--port", str(port), "--db", str(tmp_path / f"{command}.db"))
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            f"koosim: cannot start the {'reference merchant' if command == 'merchant' else 'server'} "
            f"on 127.0.0.1:{port}: Address already in use"
        ]
    token = {"KOOSIM_SERVE_TOKEN": "a-token-of-at-least-16-characters"}  # serve's guard lets it bind
    result = koosim(
        command, "--host", "no-such-host.invalid", "--db", str(tmp_path / f"{command}.db"), env=token
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("koosim: cannot start")


# --- play NAME --scenarios DIR ----------------------------------------------------------------


def test_play_name_plays_your_file_that_declares_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = folder / "my-renewal.yaml"
    mine.write_text(
        "name: renewal\ndescription: my own renewal\nsteps:\n"
        "  - id: my-own-first-step\n    activity: newInstance\n    expect:\n      resultCode: '000000'\n"
    )
    assert find("renewal", library_dirs([folder])) == [mine]
    result = koosim("play", "renewal", "--scenarios", str(folder))
    assert result.exit_code == 0, result.output
    assert "my-own-first-step" in result.output


# --- interruption ----------------------------------------------------------------------------


def _exchange_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM exchanges").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize(
    ("sent", "code", "words"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")]
)
def test_an_interrupted_verify_reports_what_ran_and_exits_128_plus_the_signal(
    sent: signal.Signals, code: int, words: str, tmp_path: Path
) -> None:
    slow = SlowLedgerMerchant(MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY), 0.1)
    db, report, junit = tmp_path / "koosim.db", tmp_path / "run.json", tmp_path / "junit.xml"
    env = koosim_env(tmp_path, KOOSIM_ACCESS_KEY=ACCESS_KEY, KOOSIM_SYNC_KEY=SYNC_KEY)
    with BackgroundServer(slow) as server:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "verify",
                "--url",
                server.base_url + PRODUCE_PATH,
                "--checks",
                "lifecycle.*",
                "--json",
                str(report),
                "--junit",
                str(junit),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while _exchange_count(db) < 4:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(sent)
        out, err = process.communicate(timeout=30)
    assert process.returncode == code, (out, err)
    assert "Traceback" not in err
    assert f"interrupted by {words}" in out
    run_id = re.search(r"koosim show (\S+)", out)
    assert run_id, out
    record = json.loads(report.read_text())
    assert record["run_id"] == run_id.group(1) and words in record["partial"]
    assert '<property name="partial"' in junit.read_text()
    shown = CliRunner().invoke(main, ["show", run_id.group(1), "--db", str(db)])
    assert f"interrupted by {words}" in shown.output


@pytest.mark.parametrize(
    ("sent", "code", "words"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")]
)
def test_an_interrupted_explore_says_how_far_it_got_and_exits_128_plus_the_signal(
    sent: signal.Signals, code: int, words: str, tmp_path: Path
) -> None:
    env = koosim_env(tmp_path, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "explore", "--max-examples", "100000", "--seed", "5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    header = process.stdout.readline()
    assert header.startswith("koosim explore:"), header
    time.sleep(1.5)  # some sequences sent
    process.send_signal(sent)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, (out, err)
    assert "Traceback" not in err
    assert re.search(rf"interrupted by {words}.* after \d+ sequences \(\d+ calls\)", out), out


def test_an_interrupted_play_prints_what_was_played_and_exits_143(tmp_path: Path) -> None:
    slow = SlowLedgerMerchant(MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY), 0.2)
    env = koosim_env(tmp_path, PYTHONUNBUFFERED="1", KOOSIM_ACCESS_KEY=ACCESS_KEY, KOOSIM_SYNC_KEY=SYNC_KEY)
    with BackgroundServer(slow) as server:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "play",
                "renewal",
                "new-order",
                "--url",
                server.base_url + PRODUCE_PATH,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        header = process.stdout.readline()
        assert header.startswith("koosim play:"), header
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 143, (out, err)
    assert "Traceback" not in err
    assert "interrupted by SIGTERM" in out and "not played to the end" in out


# --- output off a terminal ------------------------------------------------------------------


def test_output_off_a_terminal_never_cuts_an_identifier_or_a_url(tmp_path: Path) -> None:
    """Not a TTY and COLUMNS=80, as in a CI log: run ids, seeds, signed URLs and ids stay whole."""
    env = koosim_env(tmp_path, COLUMNS="80", KOOSIM_ACCESS_KEY="not-the-key")
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "simulator", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout

    with BackgroundServer(create_app(config)) as server:
        url = server.base_url + PRODUCE_PATH
        out = run("verify", "--url", url, "--no-preflight", "--seed", "987654321012", *FAST)
    lines = out.splitlines()
    assert any("seed 987654321012" in line for line in lines)
    run_id = re.search(r"koosim show (\S+)", out)
    assert run_id and re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", run_id.group(1)), out
    assert any(f"run {run_id.group(1)}" in line for line in lines)
    signed = [word for line in lines for word in line.split() if word.startswith("http://") and "?" in word]
    assert signed, out
    for address in signed:  # each signed URL whole on its line: its query names every part
        query = urlsplit(address).query
        assert {"signature", "timestamp", "nonce"} <= {part.split("=")[0] for part in query.split("&")}, (
            address
        )
    assert f"reproduce: koosim verify --url {url} --seed 987654321012 --checks lifecycle.test-order" in out

    listed = run("checks").splitlines()
    for check in catalog():
        assert any(re.search(rf"(^|\s){re.escape(check.id)}(\s|$)", line) for line in listed), check.id
    scenarios = run("scenarios")
    for entry in json.loads(run("scenarios", "--json")):
        assert re.search(rf"(^|\s){re.escape(entry['name'])}(\s|$)", scenarios, re.M), entry["name"]
    runs = run("runs").splitlines()
    assert any(run_id.group(1) in line for line in runs)
    header = next(line for line in runs if line.split()[:1] == ["run"])
    assert header.split() == ["run", "started", "kind", "status", "verdicts", "exchanges", "target"]


# --- explore and load show progress --------------------------------------------------------


def test_explore_shows_progress_and_its_header_is_honest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulator.report import playback

    monkeypatch.setattr(playback, "PLAIN_PROGRESS_EVERY", 0.0)
    result = koosim("explore", "--max-examples", "5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "5 sequences (--max-examples; Hypothesis may add a few" in result.output
    assert re.search(r"explore: sequence \d+/5 · \d+ calls sent · \d+ s", result.output), result.output


def test_explore_leaves_no_stray_hypothesis_folder(tmp_path: Path) -> None:
    """In a fresh process, where Hypothesis writes its storage (this one has it cached). As on a
    merchant's laptop: with CI set, Hypothesis's own "ci" profile keeps no database at all."""
    env = {name: value for name, value in koosim_env(tmp_path).items() if name != "CI"}
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "explore", "--max-examples", "3", "--seed", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert not (tmp_path / ".hypothesis").exists()
    # Whatever Hypothesis keeps goes under .koosim/hypothesis (it writes nothing at all when it
    # has nothing to keep, e.g. run from an installed wheel, which it does not scan for constants).
    assert {path.name for path in tmp_path.iterdir()} <= {".koosim"}


def test_load_prints_a_progress_line_while_it_runs(tmp_path: Path) -> None:
    """In a process of its own: Locust's gevent monkey-patching must never reach pytest."""
    if importlib.util.find_spec("locust") is None:  # importing it here would monkey-patch pytest
        pytest.skip("the [load] extra (Locust) is not installed")
    program = (
        "from locust.env import Environment\n"
        "from simulator import load\n"
        "load.PROGRESS_EVERY = 0.1\n"
        "environment = Environment(user_classes=[])\n"
        "environment.create_local_runner()\n"
        "load._sleep(0.35, environment)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("load: ")]
    assert len(lines) >= 2, (done.stdout, done.stderr)
    assert re.fullmatch(r"load: \d+/0\.35 s · 0 requests · 0 failures · 0 users", lines[0]), lines


# --- the README's first screen --------------------------------------------------------------


def test_the_readme_first_screen_shows_the_two_commands_then_merchant_and_verify() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:45])
    install, verify = first_screen.find("pip install"), first_screen.find("koosim verify")
    merchant = first_screen.find("koosim merchant")
    assert -1 < install < verify < merchant, first_screen
    assert f"export KOOSIM_ACCESS_KEY={DEMO_ACCESS_KEY}" in first_screen[merchant:]
    assert "koosim verify --url http://127.0.0.1:8080/produceAPI" in first_screen[merchant:]


# --- koosim show of a play run ----------------------------------------------------------------


def test_show_of_a_play_run_states_the_severity_play_stated(tmp_path: Path) -> None:
    """A step that breaks a practice rule: play says so, and show gives it as a warning, not a failure."""
    from mutants import renewal_resend_rejected

    scenario = tmp_path / "renew-twice.yaml"
    scenario.write_text(
        "name: renew-twice\nsteps:\n"
        "  - id: new\n    activity: newInstance\n    expect:\n      resultCode: '000000'\n"
        "  - id: renew\n    activity: refreshInstance\n    of: new\n    fields:\n      scene: RENEWAL\n"
        "    repeat: 2\n    expect:\n      resultCode: '000000'\n"
    )
    db = str(tmp_path / "koosim.db")
    config = MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)
    with BackgroundServer(renewal_resend_rejected.MUTANT.build(config)) as server:
        url = server.base_url + PRODUCE_PATH
        played = koosim(
            "play", str(scenario), "--url", url, "--db", db, env={"KOOSIM_ACCESS_KEY": ACCESS_KEY}
        )
    assert "idempotency.refresh-resend" in played.output
    assert "a practice rule: koosim verify reports it as a warning" in played.output
    (run,) = json.loads(koosim("runs", "--json", "--kind", "play", "--db", db).output)
    shown = koosim("show", run["run_id"], "--db", db).output
    assert re.search(r"step renew\W+WARN", shown), shown
    assert "FAIL" not in shown and "(warning)" in shown, shown
