"""The history file itself: opening it, WAL, the schema and its migrations, its permissions.

One SQLite file (WAL) that every ``koosim`` command shares; :class:`Database` is the only code
that opens it. :mod:`~simulator.store.history` and :mod:`~simulator.store.marketplace` each keep
their tables through one shared Database.

- **Every write is committed as it happens** (:meth:`Database.write`): a run killed mid-way keeps
  what it completed.
- **Several processes may write at once.** WAL lets readers work beside a writer, and a busy
  timeout makes a second writer wait for the first instead of failing.
- **Private.** The folder koosim creates is 0700, the file and its -wal/-shm 0600: the history
  holds what merchants answered, which may be theirs to keep.

The schema is versioned with ``PRAGMA user_version``: :data:`MIGRATIONS` lists one function per
version, and opening a file applies the ones it has not seen, in one transaction.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from simulator.errors import StoreError  # the history file cannot be opened, read or written

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's write to finish before giving up."""
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
KOOSIM_DIR = ".koosim"
"""The folder koosim keeps its history in by default: tightened to 0700 even when it exists."""
_SIDE_FILES = ("-wal", "-shm", "-journal")


def _problem(path: Path, exc: sqlite3.Error) -> StoreError:
    """One line for a SQLite failure; a damaged file says what to do about it."""
    if type(exc) is sqlite3.DatabaseError:  # SQLITE_CORRUPT / SQLITE_NOTADB, not a lock or a full disk
        return StoreError(f"{path}: {exc}: the run history is damaged; move it aside or pass another --db")
    return StoreError(f"{path}: {exc}")


def dump(value: Any) -> str:
    """``value`` as compact JSON; strings must have been redacted already."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def load(text: str) -> Any:
    """A stored JSON text; a damaged one is a :class:`StoreError`, not a traceback."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a stored record is not valid JSON ({exc}): the run history is damaged") from None


@contextmanager
def private_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open ``path`` for writing as a file only its owner may read (0600, whatever the umask or
    the mode of a file it replaces): for reports, which quote what a merchant answered."""
    binary = "b" in mode
    descriptor = os.open(
        path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC), PRIVATE_FILE
    )
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    except OSError:
        os.close(descriptor)
        raise
    with open(descriptor, mode, encoding=None if binary else encoding) as handle:
        yield handle


def _make_private(path: Path) -> None:
    """Create the folder (0700) and the file (0600) before SQLite does, and tighten what an
    older koosim left 0755/0644; SQLite gives -wal and -shm the mode of the file."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(parent, PRIVATE_DIR)  # mkdir's mode passes through the umask
    elif parent.name == KOOSIM_DIR:
        _tighten(parent, PRIVATE_DIR)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE))  # never truncates an existing one
    for name in ("", *_SIDE_FILES):
        _tighten(Path(f"{path}{name}"), PRIVATE_FILE)


def _tighten(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 & ~mode:
            os.chmod(path, mode)
    except (FileNotFoundError, PermissionError):  # gone, or someone else's: leave it
        pass


# --- the schema ------------------------------------------------------------------------------


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements inside the caller's transaction (``executescript`` would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _history_tables(db: sqlite3.Connection) -> None:
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


def _marketplace_tables(db: sqlite3.Connection) -> None:
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


def _dial_tables(db: sqlite3.Connection) -> None:
    """Version 3: the dial tests of each target (store/dial.py). ``IF NOT EXISTS`` throughout:
    version 4 runs it again for a history the outbox branch made before the two met."""
    _script(
        db,
        """
        CREATE TABLE IF NOT EXISTS dial_tests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            target_url TEXT NOT NULL,
            market_at TEXT NOT NULL,
            wall_at REAL NOT NULL,
            passed INTEGER NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS dial_tests_by_target ON dial_tests (target_url, market_at)
        """,
    )


def _delivery_tables(db: sqlite3.Connection) -> None:
    """Version 4: scheduled deliveries (the outbox generalised, docs/protocol.md §10.1, §10.5) and
    the marketplace clock's anchor, so a schedule survives a restart of ``koosim serve``.

    ``IF NOT EXISTS`` throughout, and the dial tables again (version 3 on main): a history made
    by the outbox branch before the merge had these as version 3 and no dial tables."""
    _dial_tables(db)
    _script(
        db,
        """
        CREATE TABLE IF NOT EXISTS deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            kind TEXT NOT NULL,
            interface TEXT NOT NULL,
            protocol TEXT NOT NULL,
            activity TEXT NOT NULL,
            label TEXT NOT NULL,
            target_url TEXT NOT NULL,
            body TEXT NOT NULL,
            policy TEXT NOT NULL,
            state TEXT NOT NULL,
            first_due REAL NOT NULL,
            next_due REAL,
            manual_due REAL,
            attempts TEXT NOT NULL,
            in_flight INTEGER,
            claimed_by TEXT,
            claimed_until REAL,
            summary TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_due) WHERE state = 'pending';
        CREATE INDEX IF NOT EXISTS deliveries_restarted ON deliveries (manual_due)
            WHERE manual_due IS NOT NULL;
        CREATE INDEX IF NOT EXISTS deliveries_in_flight ON deliveries (claimed_until)
            WHERE in_flight IS NOT NULL;
        CREATE TABLE IF NOT EXISTS market_clock (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            scale REAL NOT NULL,
            market REAL NOT NULL,
            wall REAL NOT NULL
        );
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _history_tables,
    _marketplace_tables,
    _dial_tables,
    _delivery_tables,
]
"""One function per schema version, applied in order; append, never edit a released one."""


# --- the file --------------------------------------------------------------------------------


class Database:
    """The history file. Cheap to create; every method opens its own short connection, so one
    instance may be shared by threads (the web server's requests, a background run)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._held: sqlite3.Connection | None = None
        self._held_lock = threading.RLock()
        try:
            _make_private(self.path)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror}") from exc
        self._migrate()
        self._hold_log_open()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

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
            raise _problem(self.path, exc) from exc
        return db

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading (or for :meth:`write`); any SQLite failure is a StoreError."""
        with self._held_lock:
            if self._held is not None:
                try:
                    yield self._held
                except sqlite3.DatabaseError as exc:
                    raise _problem(self.path, exc) from exc
                return
        db = self._open()
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise _problem(self.path, exc) from exc
        finally:
            db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; BEGIN IMMEDIATE takes the write lock up front, so two
        writers queue on the busy timeout instead of deadlocking on a lock upgrade."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.connect() as db:  # WAL is a property of the file: set once, kept by every opener
            self._use_wal(db)
        with self.write() as db:
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
            raise _problem(self.path, exc) from exc
        weakref.finalize(self, keeper.close)

    def holding(self) -> Database:
        """This file through one connection, kept open until :meth:`release`.

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
        with self.connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
