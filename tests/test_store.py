"""The run history: migrations, WAL, durability of a killed run, two writers at once, redaction,
and the ``koosim runs`` / ``koosim show`` commands over it."""

from __future__ import annotations

import gc
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from simulator.checks import select
from simulator.cli import main
from simulator.engine.record import run_record
from simulator.engine.run import run_checks
from simulator.store import (
    FINISHED,
    INBOUND,
    INTERRUPTED,
    MIGRATIONS,
    OUTBOX_PENDING,
    OUTBOX_STOPPED,
    RUNNING,
    RunRecorder,
    Store,
    StoreError,
    private_file,
)
from simulator.transport import Target

ACCESS_KEY = "store-test-access-key-0001"
SYNC_KEY = "store-test-sync-key-0002"


@pytest.fixture(scope="module")
def merchant(reference_merchant: Any) -> Target:
    return reference_merchant.target(timeout=5)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "history" / "koosim.db")


def raw_bytes(store: Store) -> bytes:
    """Everything SQLite has on disk for the store: the file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))


# --- schema ------------------------------------------------------------------------------------


def test_a_new_file_gets_every_migration_and_write_ahead_logging(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS)
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "exchanges", "results", "findings", "outbox", "orders", "usage_records"} <= tables


def test_an_older_file_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        MIGRATIONS[0](db)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO runs (id, kind, started_at, target_url, protocol, target, assumptions, pid, host)"
            " VALUES ('old-run', 'verify', 1.0, 'http://x', 'v2', '{}', '{}', 1, 'elsewhere')"
        )
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    assert [run["run_id"] for run in store.history.runs()] == ["old-run"]
    assert store.marketplace.outbox() == []  # the table of version 2 exists


def test_a_file_from_a_newer_koosim_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(StoreError, match="newer than this koosim"):
        Store(path)


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=re.escape(str(path))):
        Store(path)


# --- recording runs -------------------------------------------------------------------------------


def test_a_run_is_committed_as_it_happens_and_reads_back_like_its_record(
    store: Store, merchant: Target
) -> None:
    recorder = RunRecorder(store, planned=3, reproduce=lambda check_id: f"koosim verify --checks {check_id}")
    seen_mid_run = []

    def on_result(result: object) -> None:
        recorder.result(result)  # type: ignore[arg-type]
        other = Store(store.path)  # another connection sees it: committed, not buffered
        seen_mid_run.append(other.history.run(recorder.run_id or "")["exchange_count"])  # type: ignore[index]

    run = run_checks(
        merchant,
        select(["lifecycle.full", "idempotency.new-instance-concurrent", "contract.result-code"]),
        on_begin=recorder.begin,
        on_exchange=recorder.exchange,
        on_result=on_result,
    )
    recorder.finish(run)
    assert seen_mid_run[0] > 0 and seen_mid_run == sorted(seen_mid_run)

    stored = store.history.run(run.id)
    expected = run_record(run)
    assert stored is not None and recorder.problem is None
    assert stored["status"] == FINISHED and stored["exit_code"] == 0
    assert stored["summary"] == expected["summary"]
    assert [c["id"] for c in stored["checks"]] == [c["id"] for c in expected["checks"]]
    assert {e["id"] for e in stored["exchanges"]} == {e["id"] for e in expected["exchanges"]}
    assert stored["checks"][0]["reproduce"] == "koosim verify --checks lifecycle.full"
    assert store.history.exchange(stored["exchanges"][0]["id"])["run_id"] == run.id  # type: ignore[index]
    # the concurrent copies travel on their own connections and still get recorded
    assert len(stored["exchanges"]) == len(run.exchanges)
    # the marketplace now knows the orders it sent
    assert store.marketplace.latest_instance_id() is not None


def test_no_key_reaches_the_disk(store: Store, merchant: Target) -> None:
    recorder = RunRecorder(store)
    run = run_checks(
        merchant, select(["security.v2-signature-wrong", "sync.directory"]), on_begin=recorder.begin
    )
    for result in run.results:
        recorder.result(result)
    recorder.finish(run)
    store.marketplace.add_outbox(
        channels=("sms",),
        recipient=f"admin with key {ACCESS_KEY}",
        subject=f"sync failed {SYNC_KEY}",
        body=f"body {ACCESS_KEY}",
        sync_call="authSync",
        sync_body={"echo": SYNC_KEY},
        exchange_id="x",
        secrets=merchant.secrets,
    )
    store.history.add_exchange_record(
        None,
        {"id": "inbound-1", "activity": "usagePush", "label": ACCESS_KEY, "request": {"body": ACCESS_KEY}},
        merchant.secrets,
        direction=INBOUND,
    )
    data = raw_bytes(store)
    assert run.exchanges and ACCESS_KEY.encode() not in data and SYNC_KEY.encode() not in data
    assert b"[redacted]" in data


def _writer_script(path: Path, tag: str, count: int, start_at: float = 0.0) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        from simulator.store import Store
        store = Store({str(path)!r})
        store.history.begin_run({tag!r}, kind="verify", target={{"url": "http://x", "protocol": "v2"}})
        print("ready", flush=True)
        time.sleep(max(0.0, {start_at} - time.time()))  # writers start together
        first = time.time()
        for n in range({count}):
            record = {{"id": "{tag}-%d" % n, "activity": "newInstance", "label": "n"}}
            store.history.add_exchange_record({tag!r}, record, ())
        print("wrote", flush=True)
        if sys.argv[1:] == ["timed"]:
            print(first, time.time())
        if sys.argv[1:] == ["hang"]:
            time.sleep(60)
        """
    )


def test_a_killed_run_keeps_its_exchanges_and_reads_as_interrupted(store: Store) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _writer_script(store.path, "killed-run", 5), "hang"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        assert process.stdout.readline().strip() == "wrote"
        assert store.history.run("killed-run")["status"] == RUNNING  # type: ignore[index]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    record = store.history.run("killed-run")
    assert record is not None
    assert record["status"] == INTERRUPTED
    assert record["finished_at"] is None
    assert len(record["exchanges"]) == 5
    assert record["pid"] == process.pid


def test_a_run_of_this_process_that_was_never_finished_is_interrupted(store: Store) -> None:
    store.history.begin_run("live", kind="verify", target={"url": "http://x", "protocol": "v2"})
    assert store.history.run("live")["status"] == RUNNING  # type: ignore[index]
    store.history.finish_run("live", exit_code=0)
    assert store.history.run("live")["status"] == FINISHED  # type: ignore[index]
    with sqlite3.connect(store.path) as db:  # a run this process began but forgot (crashed thread)
        db.execute(
            "INSERT INTO runs (id, kind, started_at, target_url, protocol, target, assumptions, pid, host)"
            " VALUES ('orphan', 'verify', 1.0, '', 'v2', '{}', '{}', ?, ?)",
            (os.getpid(), os.uname().nodename),
        )
    assert store.history.run("orphan")["status"] == INTERRUPTED  # type: ignore[index]


def test_two_processes_writing_at_once_lose_nothing(store: Store) -> None:
    count, start_at = 300, time.time() + 1.0
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _writer_script(store.path, tag, count, start_at), "timed"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("writer-a", "writer-b")
    ]
    spans = []
    for writer in writers:
        output, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0
        spans.append([float(word) for word in output.split() if word[0].isdigit()])
    assert max(first for first, _ in spans) < min(last for _, last in spans), "the writers did not overlap"
    for tag in ("writer-a", "writer-b"):
        assert len(store.history.run(tag)["exchanges"]) == count  # type: ignore[index]


# --- queries ------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_with_counts_and_found_by_prefix(store: Store) -> None:
    for number, started in enumerate((100.0, 300.0, 200.0)):
        store.history.begin_run(
            f"run-{number}", kind="verify", target={"url": "u", "protocol": "v2"}, started_at=started
        )
    store.history.add_result(
        "run-1", 0, {"id": "c1", "verdict": "failed", "findings": [{"message": "m", "exchanges": []}]}, ()
    )
    store.history.add_result("run-1", 1, {"id": "c2", "verdict": "passed", "findings": []}, ())
    listed = store.history.runs()
    assert [run["run_id"] for run in listed] == ["run-1", "run-2", "run-0"]
    assert listed[0]["summary"] == {"passed": 1, "failed": 1, "warned": 0, "skipped": 0}
    # the verdict is recomputed from the stored checks (rows written before it existed show one)
    verdict = store.history.run("run-1")["delisting"]  # type: ignore[index]
    assert [item["check"] for item in verdict["consequences"]] == ["c1"]
    assert verdict["reached"] is False
    assert store.history.resolve_run_id("run-2") == "run-2"
    with pytest.raises(LookupError, match="several runs"):
        store.history.resolve_run_id("run-")
    with pytest.raises(LookupError, match="no run"):
        store.history.resolve_run_id("nope")
    assert store.history.run("nope") is None and store.history.exchange("nope") is None


def test_usage_records_are_kept_once_per_metering_sn(store: Store) -> None:
    record = {"instance_id": "i-1", "metering_sn": "sn-1", "usage_value": "1.5"}
    assert store.marketplace.add_usage([record, record | {"metering_sn": "sn-2"}], "x1", ()) == (2, 0)
    assert store.marketplace.add_usage([record], "x2", ()) == (0, 1)
    assert {u["metering_sn"] for u in store.marketplace.usage()} == {"sn-1", "sn-2"}


def test_outbox_messages_keep_every_decision(store: Store) -> None:
    message_id = store.marketplace.add_outbox(
        channels=("sms", "email"),
        recipient="ops",
        subject="s",
        body="b",
        sync_call="authSync",
        sync_body={"instanceId": "i"},
        exchange_id="e1",
        secrets=(),
    )
    store.marketplace.decide_outbox(message_id, OUTBOX_PENDING, "e2")
    store.marketplace.decide_outbox(message_id, OUTBOX_STOPPED)
    message = store.marketplace.outbox_message(message_id)
    assert message is not None
    assert (message["status"], message["attempts"], message["exchange_ids"]) == ("stopped", 2, ["e1", "e2"])
    assert store.marketplace.outbox(status=OUTBOX_PENDING) == []
    with pytest.raises(LookupError):
        store.marketplace.decide_outbox(999, OUTBOX_STOPPED)


# --- koosim verify / runs / show -----------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wide terminal and a history of the test's own (conftest.py has unset every KOOSIM_*)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_verify_records_into_the_default_history_and_show_prints_it_alike(cli_env: Path) -> None:
    runner = CliRunner()
    verified = runner.invoke(main, ["verify", "--checks", "lifecycle.full"])
    assert verified.exit_code == 0, verified.output
    assert (cli_env / ".koosim" / "koosim.db").is_file()
    run_id = re.search(r"koosim show (\S+)", verified.output).group(1)  # type: ignore[union-attr]

    listed = runner.invoke(main, ["runs"])
    assert listed.exit_code == 0 and run_id in listed.output and "finished" in listed.output

    shown = runner.invoke(main, ["show", run_id[:17]])
    assert shown.exit_code == 0, shown.output
    table = verified.output[verified.output.index("koosim verify:") : verified.output.index("recorded in")]
    assert table in shown.output

    as_json = runner.invoke(main, ["show", "--json", run_id])
    assert f'"run_id": "{run_id}"' in as_json.output


def test_show_of_an_interrupted_run_says_so(cli_env: Path) -> None:
    store = Store(cli_env / "h.db")
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO runs (id, kind, started_at, target_url, protocol, target, assumptions, planned,"
            " pid, host) VALUES ('cut', 'verify', ?, 'http://m', 'v2', ?, '{}', 9, 2147483646, ?)",
            (time.time(), '{"url": "http://m", "protocol": "v2"}', os.uname().nodename),
        )
    shown = CliRunner().invoke(main, ["show", "cut", "--db", str(store.path)])
    assert shown.exit_code == 0, shown.output
    assert "interrupted" in shown.output and "0 of 9 checks done" in shown.output
    assert "interrupted" in CliRunner().invoke(main, ["runs", "--db", str(store.path)]).output


def test_runs_and_show_name_a_missing_history_or_run(cli_env: Path) -> None:
    missing = CliRunner().invoke(main, ["runs", "--db", str(cli_env / "none.db")])
    assert missing.exit_code == 2 and "no run history" in missing.output
    Store(cli_env / "h.db")
    unknown = CliRunner().invoke(main, ["show", "nope", "--db", str(cli_env / "h.db")])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.output
    assert "Traceback" not in unknown.output


def test_verify_with_an_unusable_history_path_is_a_usage_error(cli_env: Path) -> None:
    (cli_env / "file").write_text("x")
    result = CliRunner().invoke(
        main, ["verify", "--checks", "lifecycle.full", "--db", str(cli_env / "file" / "k.db")]
    )
    assert result.exit_code == 2 and "cannot keep the run history" in result.output


# --- a damaged file, and who may read it -----------------------------------------------------------


def _damaged_history(path: Path) -> str:
    """A history whose ``runs`` table has a data page overwritten with garbage; page 1 (the
    header and the schema) intact, so the file opens and fails only when the runs are read."""
    store = Store(path)
    for number in range(3):
        store.history.begin_run(f"run-{number}", kind="verify", target={"url": "http://m", "protocol": "v2"})
    del store
    gc.collect()  # closes the idle connection Store keeps, so the log folds into the file
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    assert root > 1
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)
    return "run-1"


@pytest.mark.parametrize("command", [["runs"], ["show", "run-1"], ["show", "--json", "run-1"]])
def test_a_damaged_history_is_one_line_and_exit_2_in_the_cli(cli_env: Path, command: list[str]) -> None:
    path = cli_env / "damaged.db"
    _damaged_history(path)
    result = CliRunner().invoke(main, [*command, "--db", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and not isinstance(result.exception, StoreError)
    assert result.output.count("\n") == 1 and "damaged" in result.output and str(path) in result.output


def test_a_damaged_history_answers_503_in_the_server(tmp_path: Path) -> None:
    from simulator.server import create_app as create_server
    from simulator.server import token

    path = tmp_path / "damaged.db"
    _damaged_history(path)
    app = create_server(Store(path))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token(app)}"  # as koosim serve printed it
    for page in ("/api/runs", "/api/runs/run-1"):
        answer = client.get(page)
        assert answer.status_code == 503 and answer.is_json, (page, answer.status_code)
        assert "damaged" in answer.json["error"] and "Traceback" not in answer.json["error"]
    for page in ("/", "/runs", "/runs/run-1"):
        answer = client.get(page)
        assert answer.status_code == 503, (page, answer.status_code)
        assert "damaged" in answer.get_data(as_text=True) and answer.mimetype == "text/html"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_history_folder_is_0700_and_its_files_0600(cli_env: Path) -> None:
    """Whatever the umask: the history holds what merchants answered."""
    old = os.umask(0o022)
    try:
        store = Store(cli_env / ".koosim" / "koosim.db")
        store.history.begin_run("r", kind="verify", target={"url": "http://m", "protocol": "v2"})
        holding = store.holding()  # -wal and -shm exist while a connection is open
        files = [store.path, Path(f"{store.path}-wal"), Path(f"{store.path}-shm")]
        assert all(file.exists() for file in files)
        assert _mode(store.path.parent) == 0o700
        assert {str(file): _mode(file) for file in files} == {str(file): 0o600 for file in files}
        holding.release()
    finally:
        os.umask(old)


def test_an_older_history_left_readable_is_tightened(cli_env: Path) -> None:
    folder = cli_env / ".koosim"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Store(folder / "koosim.db")
    os.chmod(folder / "koosim.db", 0o644)
    Store(folder / "koosim.db")
    assert (_mode(folder), _mode(folder / "koosim.db")) == (0o700, 0o600)


def test_a_private_file_is_0600_even_over_a_readable_one(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("old")
    os.chmod(report, 0o644)
    with private_file(report) as file:
        file.write("new")
    assert report.read_text() == "new" and _mode(report) == 0o600
    with private_file(tmp_path / "fresh.xml", "wb") as file:
        file.write(b"<x/>")
    assert _mode(tmp_path / "fresh.xml") == 0o600
