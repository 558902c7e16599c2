"""The run history: one SQLite file (WAL) that every ``koosim`` command shares.

What it keeps: runs, the exchanges of each run (request, response, timings), check results and
their findings, and the marketplace's own state that outlives a run: the orders it sent, the
usage records merchants pushed, the SMS/e-mail outbox of failed user syncs. Calls merchants make
*to* the simulated marketplace are exchanges too, with no run and ``direction = 'inbound'``.

Three promises:

- **Nothing secret is written.** Exchanges arrive through :func:`records.exchange_record`,
  which redacts the target's keys; every other string is redacted here again on the way in.
- **Every write is committed as it happens.** A run killed mid-way keeps the exchanges it
  completed; it has no ``finished_at``, and since the process that wrote it (``pid`` on
  ``host``) is gone, it reads back as *interrupted*.
- **Several processes may write at once.** WAL lets readers work beside a writer, and a busy
  timeout makes a second writer wait for the first instead of failing.

The schema is versioned with ``PRAGMA user_version``: :data:`MIGRATIONS` lists one function per
version, and opening a file applies the ones it has not seen, in one transaction.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulator.checks import Verdict
from simulator.engine.record import SCHEMA_VERSION, exchange_record, result_record
from simulator.engine.run import CheckResult, Run
from simulator.errors import StoreError  # the history file cannot be opened or written
from simulator.redaction import redact
from simulator.transport import Exchange, Target

DEFAULT_DB = Path(".koosim") / "koosim.db"
DB_VARIABLE = "KOOSIM_DB"
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's write to finish before giving up."""

OUTBOUND, INBOUND = "outbound", "inbound"
"""Exchanges the marketplace sent to the merchant, and calls the merchant made to the marketplace."""

FINISHED, RUNNING, INTERRUPTED = "finished", "running", "interrupted"

OUTBOX_PENDING, OUTBOX_RESOLVED, OUTBOX_STOPPED = "pending", "resolved", "stopped"

_LIVE_RUNS: set[str] = set()
"""Runs begun in this process and not finished yet: a run of this process not in here is dead."""
_LIVE_LOCK = threading.Lock()


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$KOOSIM_DB`` when set, else ``.koosim/koosim.db`` in the working directory."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(DB_VARIABLE) or DEFAULT_DB)


# --- schema ----------------------------------------------------------------------------------


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements inside the caller's transaction (``executescript`` would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _history(db: sqlite3.Connection) -> None:
    """Version 1: runs, their exchanges, check results and findings."""
    _script(
        db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            target_url TEXT NOT NULL,
            protocol TEXT NOT NULL,
            target TEXT NOT NULL,
            seed INTEGER,
            assumptions TEXT NOT NULL,
            planned INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            error TEXT,
            command TEXT NOT NULL DEFAULT '',
            pid INTEGER NOT NULL,
            host TEXT NOT NULL
        );
        CREATE INDEX runs_by_start ON runs (started_at DESC);
        CREATE TABLE exchanges (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            run_id TEXT REFERENCES runs (id),
            direction TEXT NOT NULL,
            activity TEXT NOT NULL,
            label TEXT NOT NULL,
            started_at REAL NOT NULL,
            elapsed_ms REAL,
            status INTEGER,
            result_code TEXT,
            error TEXT,
            record TEXT NOT NULL,
            verdict TEXT
        );
        CREATE INDEX exchanges_by_run ON exchanges (run_id, seq);
        CREATE INDEX exchanges_by_direction ON exchanges (direction, seq);
        CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs (id),
            position INTEGER NOT NULL,
            check_id TEXT NOT NULL,
            verdict TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (run_id, position)
        );
        CREATE TABLE findings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs (id),
            check_id TEXT NOT NULL,
            message TEXT NOT NULL,
            exchange_ids TEXT NOT NULL
        );
        CREATE INDEX findings_by_run ON findings (run_id);
        """,
    )


def _marketplace(db: sqlite3.Connection) -> None:
    """Version 2: what the marketplace itself remembers: orders, pushed usage, the outbox."""
    _script(
        db,
        """
        CREATE TABLE orders (
            order_id TEXT NOT NULL,
            order_line_id TEXT NOT NULL,
            instance_id TEXT,
            fields TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (order_id, order_line_id)
        );
        CREATE TABLE usage_records (
            metering_sn TEXT PRIMARY KEY,
            instance_id TEXT NOT NULL,
            record TEXT NOT NULL,
            received_at REAL NOT NULL,
            exchange_id TEXT
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            channels TEXT NOT NULL,
            recipient TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            sync_call TEXT NOT NULL,
            sync_body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1,
            exchange_ids TEXT NOT NULL,
            decided_at REAL
        );
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_history, _marketplace]
"""One function per schema version, applied in order; append, never edit a released one."""


# --- helpers ---------------------------------------------------------------------------------


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every string in it redacted: the second line of defence."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {_scrub(key, secrets): _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    return value


def _dump(value: Any, secrets: Sequence[str] = ()) -> str:
    if not secrets:  # nothing to redact: json reads dicts, lists and tuples as _scrub would copy them
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except TypeError:  # a Mapping that is not a dict
            pass
    return json.dumps(_scrub(value, secrets), ensure_ascii=False, separators=(",", ":"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process, but alive
        return True
    return True


def run_status(finished_at: float | None, pid: int, host: str, run_id: str) -> str:
    """finished, running, or interrupted: unfinished, and the process that wrote it is gone."""
    if finished_at is not None:
        return FINISHED
    if host != socket.gethostname():
        return RUNNING  # another machine's process: nothing here can tell it died
    if pid == os.getpid():
        with _LIVE_LOCK:
            return RUNNING if run_id in _LIVE_RUNS else INTERRUPTED
    return RUNNING if _process_alive(pid) else INTERRUPTED


# --- the store -------------------------------------------------------------------------------


class Store:
    """The history file. Cheap to create; every method opens its own short connection, so one
    instance may be shared by threads (the web server's requests, a background run)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._held: sqlite3.Connection | None = None
        self._held_lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc.strerror}") from exc
        self._migrate()
        self._hold_log_open()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA foreign_keys = ON")
            # with WAL, NORMAL keeps every commit through a killed process; only a power cut
            # may lose the last few, which a test history can afford for the speed
            db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._held_lock:
            if self._held is not None:
                try:
                    yield self._held
                except sqlite3.DatabaseError as exc:
                    raise StoreError(f"{self.path}: {exc}") from exc
                return
        db = self._open()
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; BEGIN IMMEDIATE takes the write lock up front, so two
        writers queue on the busy timeout instead of deadlocking on a lock upgrade."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._connect() as db:  # WAL is a property of the file: set once, kept by every opener
            self._use_wal(db)
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this koosim knows "
                    f"({len(MIGRATIONS)}): upgrade koosim or use another --db"
                )
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch the file to write-ahead logging unless it already is.

        Two processes opening a new history at once both try the switch; it needs an exclusive
        lock and SQLite does not always wait for it (the busy handler is skipped to avoid a
        deadlock), so a refusal is retried until the busy timeout has passed.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                    return
                raise StoreError(f"{self.path}: SQLite cannot use write-ahead logging here")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: {exc}") from exc
                time.sleep(0.05)

    def _hold_log_open(self) -> None:
        """Keep one idle connection open for as long as this object lives.

        When the last connection to a WAL file closes, SQLite folds the log into the database,
        syncs it and deletes the -wal and -shm files, and the next connection creates them again:
        with a connection per method, that cost ~1 ms per write, where the write itself takes
        0.07 ms. The idle connection has read once (that opens the log) and holds no transaction,
        so it blocks no writer, reader or checkpoint, here or in another process.
        """
        try:
            keeper = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        weakref.finalize(self, keeper.close)

    def holding(self) -> Store:
        """This history through one connection, kept open until :meth:`release`.

        For a run's recorder, which writes after every call: opening a connection costs more
        than the write. Every write is still its own transaction, committed as it happens, and
        threads sharing the returned object take turns on the connection.
        """
        held = copy.copy(self)
        held._held_lock = threading.RLock()
        held._held = self._open()
        weakref.finalize(held, held._held.close)
        return held

    def release(self) -> None:
        """Close the connection :meth:`holding` opened; later calls open their own again."""
        with self._held_lock:
            held, self._held = self._held, None
        if held is not None:
            held.close()

    @property
    def schema_version(self) -> int:
        with self._connect() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    # --- writing a run -----------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        *,
        kind: str,
        target: Mapping[str, Any],
        secrets: Sequence[str] = (),
        seed: int | None = None,
        assumptions: Mapping[str, str] | None = None,
        planned: int = 0,
        command: str = "",
        started_at: float | None = None,
    ) -> None:
        """Record that a run started; until :meth:`finish_run` it reads as running or interrupted."""
        with _LIVE_LOCK:
            _LIVE_RUNS.add(run_id)
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, kind, started_at, target_url, protocol, target, seed, assumptions,"
                " planned, command, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    kind,
                    time.time() if started_at is None else started_at,
                    redact(str(target.get("url", "")), secrets),
                    str(target.get("protocol", "")),
                    _dump(target, secrets),
                    seed,
                    _dump(assumptions or {}, secrets),
                    planned,
                    redact(command, secrets),
                    os.getpid(),
                    socket.gethostname(),
                ),
            )

    def add_exchange(
        self,
        run_id: str | None,
        exchange: Exchange,
        secrets: Sequence[str],
        *,
        direction: str = OUTBOUND,
        verdict: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store an exchange, redacted by :func:`exchange_record`: one the marketplace sent, or
        (``direction=INBOUND``, no run) a call a merchant made to the marketplace."""
        record = exchange_record(exchange, secrets)
        self.add_exchange_record(run_id, record, secrets, direction=direction, verdict=verdict)
        return record

    def add_exchange_record(
        self,
        run_id: str | None,
        record: Mapping[str, Any],
        secrets: Sequence[str],
        *,
        direction: str = OUTBOUND,
        verdict: Mapping[str, Any] | None = None,
    ) -> None:
        """Store an exchange already in record form; a repeat is ignored."""
        record = _scrub(record, secrets)
        response = record.get("response") or {}
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO exchanges (id, run_id, direction, activity, label, started_at,"
                " elapsed_ms, status, result_code, error, record, verdict)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["id"],
                    run_id,
                    direction,
                    record.get("activity", ""),
                    record.get("label", ""),
                    record.get("started_at") or time.time(),
                    record.get("elapsed_ms"),
                    response.get("status"),
                    response.get("result_code"),
                    record.get("error"),
                    _dump(record),
                    None if verdict is None else _dump(verdict, secrets),
                ),
            )

    def add_result(
        self, run_id: str, position: int, record: Mapping[str, Any], secrets: Sequence[str]
    ) -> None:
        """Store one check's result (a :func:`records.result_record`) and its findings."""
        record = _scrub(record, secrets)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (run_id, position, check_id, verdict, record)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, position, record["id"], record["verdict"], _dump(record)),
            )
            db.executemany(
                "INSERT INTO findings (run_id, check_id, message, exchange_ids) VALUES (?, ?, ?, ?)",
                [
                    (run_id, record["id"], finding["message"], _dump(finding["exchanges"]))
                    for finding in record.get("findings", [])
                ],
            )

    def finish_run(
        self,
        run_id: str,
        *,
        exit_code: int,
        finished_at: float | None = None,
        error: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        """Mark a run finished; ``error`` says why it stopped early, when it did."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, error = ? WHERE id = ?",
                (
                    time.time() if finished_at is None else finished_at,
                    exit_code,
                    None if error is None else redact(error, secrets),
                    run_id,
                ),
            )
        with _LIVE_LOCK:
            _LIVE_RUNS.discard(run_id)

    # --- reading runs ------------------------------------------------------------------------

    _RUN_COLUMNS = (
        "r.*, (SELECT count(*) FROM exchanges e WHERE e.run_id = r.id) AS exchange_count, "
        + ", ".join(
            f"(SELECT count(*) FROM results x WHERE x.run_id = r.id AND x.verdict = '{v.value}') AS {v.value}"
            for v in Verdict
        )
    )

    def _summary(self, row: sqlite3.Row) -> dict[str, Any]:
        counts = {verdict.value: row[verdict.value] for verdict in Verdict}
        return {
            "run_id": row["id"],
            "kind": row["kind"],
            "status": run_status(row["finished_at"], row["pid"], row["host"], row["id"]),
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "target": json.loads(row["target"]),
            "summary": counts,
            "checks_done": sum(counts.values()),
            "checks_planned": row["planned"],
            "exchange_count": row["exchange_count"],
            "exit_code": row["exit_code"],
            "error": row["error"],
            "command": row["command"],
            "pid": row["pid"],
            "host": row["host"],
        }

    def runs(self, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
        """Past runs, newest first, each with its verdict counts and status."""
        where, params = ("WHERE r.kind = ?", [kind]) if kind else ("", [])
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs r {where}"
                " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._summary(row) for row in rows]

    def resolve_run_id(self, prefix: str) -> str:
        """The one run whose id is or starts with ``prefix``; LookupError otherwise."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id FROM runs WHERE id = ? OR substr(id, 1, length(?)) = ? ORDER BY id LIMIT 6",
                (prefix, prefix, prefix),
            ).fetchall()
        ids = [row["id"] for row in rows]
        if prefix in ids:
            return prefix
        if not ids:
            raise LookupError(f"no run {prefix!r} in {self.path}; `koosim runs` lists them")
        if len(ids) > 1:
            raise LookupError(f"{prefix!r} names several runs ({', '.join(ids[:5])}…): give more of the id")
        return ids[0]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run in the shape of :func:`records.run_record`, plus its status and bookkeeping."""
        with self._connect() as db:
            row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs r WHERE r.id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            results = db.execute(
                "SELECT record FROM results WHERE run_id = ? ORDER BY position", (run_id,)
            ).fetchall()
            exchanges = db.execute(
                "SELECT record, verdict FROM exchanges WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        summary = self._summary(row)
        failed = summary["summary"][Verdict.FAILED.value]
        return summary | {
            "schema_version": SCHEMA_VERSION,
            "seed": row["seed"],
            "assumptions": json.loads(row["assumptions"]),
            "exit_code": row["exit_code"] if row["exit_code"] is not None else (1 if failed else 0),
            "delisting_risk": failed > 0,
            "checks": [json.loads(result["record"]) for result in results],
            "exchanges": [_exchange_row(exchange) for exchange in exchanges],
        }

    def exchange(self, exchange_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT record, verdict, run_id, direction FROM exchanges WHERE id = ?", (exchange_id,)
            ).fetchone()
        if row is None:
            return None
        return _exchange_row(row) | {"run_id": row["run_id"], "direction": row["direction"]}

    def exchanges(self, *, direction: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest exchanges (of one direction), newest first."""
        where, params = ("WHERE direction = ?", [direction]) if direction else ("", [])
        with self._connect() as db:
            rows = db.execute(
                f"SELECT record, verdict, run_id, direction FROM exchanges {where} ORDER BY seq DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_exchange_row(row) | {"run_id": row["run_id"], "direction": row["direction"]} for row in rows]

    # --- the marketplace's own memory ----------------------------------------------------------

    def remember_order(
        self, fields: Mapping[str, Any], instance_id: str | None, secrets: Sequence[str]
    ) -> None:
        """An order the marketplace sent (newInstance / getLicense) that a merchant may query later."""
        order_id, line_id = fields.get("orderId"), fields.get("orderLineId")
        if not isinstance(order_id, str) or not isinstance(line_id, str):
            return
        with self._write() as db:
            db.execute(
                "INSERT INTO orders (order_id, order_line_id, instance_id, fields, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id, order_line_id) DO UPDATE SET"
                " instance_id = coalesce(excluded.instance_id, instance_id)",
                (order_id, line_id, instance_id, _dump(dict(fields), secrets), time.time()),
            )

    def order_lines(self, order_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM orders WHERE order_id = ? ORDER BY order_line_id", (order_id,)
            ).fetchall()
        return [
            {
                "order_id": row["order_id"],
                "order_line_id": row["order_line_id"],
                "instance_id": row["instance_id"],
                "fields": json.loads(row["fields"]),
                "created_at": row["created_at"],
            }
            for row in rows
        ]

    def latest_order(self) -> dict[str, Any] | None:
        """The order line the marketplace sent last, for a form to start from."""
        with self._connect() as db:
            row = db.execute(
                "SELECT order_id, order_line_id, instance_id FROM orders ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else dict(row)

    def latest_instance_id(self) -> str | None:
        """The instance the last accepted order created: what a hand-made call most likely names."""
        with self._connect() as db:
            row = db.execute(
                "SELECT instance_id FROM orders WHERE instance_id IS NOT NULL"
                " ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else row["instance_id"]

    def add_usage(
        self, records: Iterable[Mapping[str, Any]], exchange_id: str | None, secrets: Sequence[str]
    ) -> tuple[int, int]:
        """Keep pushed usage records; a record resent with the same metering_sn is kept once.

        Returns (new records, repeats).
        """
        added = repeated = 0
        with self._write() as db:
            for record in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO usage_records (metering_sn, instance_id, record, received_at,"
                    " exchange_id) VALUES (?, ?, ?, ?, ?)",
                    (
                        redact(str(record["metering_sn"]), secrets),
                        redact(str(record["instance_id"]), secrets),
                        _dump(dict(record), secrets),
                        time.time(),
                        exchange_id,
                    ),
                )
                added += cursor.rowcount
                repeated += 1 - cursor.rowcount
        return added, repeated

    def usage(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT record, received_at, exchange_id FROM usage_records"
                " ORDER BY received_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            json.loads(row["record"]) | {"received_at": row["received_at"], "exchange_id": row["exchange_id"]}
            for row in rows
        ]

    def add_outbox(
        self,
        *,
        channels: Sequence[str],
        recipient: str,
        subject: str,
        body: str,
        sync_call: str,
        sync_body: Mapping[str, Any],
        exchange_id: str,
        secrets: Sequence[str],
    ) -> int:
        """Record the SMS / e-mail the marketplace sends when a user sync fails (protocol.md §8)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO outbox (created_at, channels, recipient, subject, body, sync_call, sync_body,"
                " status, exchange_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    ",".join(channels),
                    redact(recipient, secrets),
                    redact(subject, secrets),
                    redact(body, secrets),
                    sync_call,
                    _dump(dict(sync_body), secrets),
                    OUTBOX_PENDING,
                    _dump([exchange_id]),
                ),
            )
            return int(cursor.lastrowid or 0)

    def outbox(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM outbox {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [_outbox_row(row) for row in rows]

    def outbox_message(self, message_id: int) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM outbox WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _outbox_row(row)

    def decide_outbox(self, message_id: int, status: str, exchange_id: str | None = None) -> None:
        """The administrator's decision: resolved (a resend succeeded), stopped, or still pending
        after another failed resend. Every resend's exchange is kept with the message."""
        with self._write() as db:
            row = db.execute(
                "SELECT exchange_ids, attempts FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no outbox message {message_id}")
            exchange_ids = json.loads(row["exchange_ids"]) + ([exchange_id] if exchange_id else [])
            db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, exchange_ids = ?, decided_at = ? WHERE id = ?",
                (
                    status,
                    row["attempts"] + (1 if exchange_id else 0),
                    _dump(exchange_ids),
                    time.time(),
                    message_id,
                ),
            )


def _exchange_row(row: sqlite3.Row) -> dict[str, Any]:
    record = json.loads(row["record"])
    record["verdict"] = None if row["verdict"] is None else json.loads(row["verdict"])
    return record


def _outbox_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "channels": row["channels"].split(","),
        "recipient": row["recipient"],
        "subject": row["subject"],
        "body": row["body"],
        "sync_call": row["sync_call"],
        "sync_body": json.loads(row["sync_body"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "exchange_ids": json.loads(row["exchange_ids"]),
        "decided_at": row["decided_at"],
    }


# --- recording a live run ------------------------------------------------------------------


ORDER_ACTIVITIES = ("newInstance", "getLicense")


class RunRecorder:
    """Writes a :func:`~simulator.engine.run.run_checks` run into the store as it happens.

    Its methods are the callbacks ``run_checks`` takes. A store failure mid-run (a full disk,
    a lock held past the timeout) must not end the run: the recorder stops writing and keeps
    the reason in :attr:`problem` for the caller to report.
    """

    def __init__(
        self,
        store: Store,
        *,
        kind: str = "verify",
        planned: int = 0,
        command: str = "",
        reproduce: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.kind = kind
        self.planned = planned
        self.command = command
        self.reproduce = reproduce
        self.run_id: str | None = None
        self.problem: str | None = None
        self._target: Target | None = None
        self._positions = 0
        self._seen: set[str] = set()
        self._writer = store
        """``store`` through one connection from :meth:`begin` to :meth:`finish` (Store.holding)."""

    @property
    def _secrets(self) -> tuple[str, ...]:
        """Read at every write, not once: the run learns secrets as it goes (Target.learned_secrets)."""
        return () if self._target is None else self._target.secrets

    def _guard(self, write: Callable[[], None]) -> None:
        if self.problem is not None:
            return
        try:
            write()
        except StoreError as exc:
            self.problem = str(exc)

    def begin(self, run: Run) -> None:
        self.run_id, self._target = run.id, run.target
        target = {
            "url": run.target.url,
            "protocol": run.target.protocol,
            "sync_url": run.target.sync_call_url(""),
            "timeout_s": run.target.timeout,
        }
        self._guard(self._hold)
        self._guard(
            lambda: self._writer.begin_run(
                run.id,
                kind=self.kind,
                target=target,
                secrets=self._secrets,
                seed=run.seed,
                assumptions=run.assumptions,
                planned=self.planned,
                command=self.command,
                started_at=run.started_at,
            )
        )

    def _hold(self) -> None:
        self._writer = self.store.holding()

    def exchange(self, exchange: Exchange) -> None:
        if self.run_id is None or exchange.id in self._seen:
            return
        self._seen.add(exchange.id)
        self._guard(lambda: self._writer.add_exchange(self.run_id, exchange, self._secrets))
        if exchange.activity in ORDER_ACTIVITIES and exchange.result_code == "000000":
            instance_id = exchange.answer_field("instanceId")
            self._guard(
                lambda: self._writer.remember_order(
                    exchange.fields, instance_id if isinstance(instance_id, str) else None, self._secrets
                )
            )

    def result(self, result: CheckResult) -> None:
        if self.run_id is None:
            return
        for exchange in result.exchanges:  # copies sent on their own connections reach us here
            self.exchange(exchange)
        for finding in result.findings:
            for exchange in finding.exchanges:
                self.exchange(exchange)
        record = result_record(result, self._secrets)
        record["reproduce"] = self.reproduce(result.check.id) if self.reproduce else None
        position, self._positions = self._positions, self._positions + 1
        self._guard(lambda: self._writer.add_result(self.run_id, position, record, self._secrets))

    def finish(self, run: Run, error: str | None = None) -> None:
        if self.run_id is None:
            return
        self._guard(
            lambda: self._writer.finish_run(
                run.id,
                exit_code=run.exit_code,
                finished_at=run.finished_at,
                error=error,
                secrets=self._secrets,
            )
        )
        self._writer.release()
