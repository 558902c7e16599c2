"""The run history: runs, the exchanges of each run (request, response, timings), check results
and their findings, and :class:`RunRecorder`, which writes a run into it as it happens. Calls
merchants make *to* the simulated marketplace are exchanges too, with no run and
``direction = 'inbound'``.

- **Nothing secret is written, and each exchange is redacted once.** An exchange becomes a record
  through :func:`~simulator.engine.record.exchange_record`, which redacts it, and is stored as it
  is; a record made elsewhere (:meth:`History.add_exchange_record`) is redacted on the way in.
- **A run killed mid-way keeps the exchanges it completed**; it has no ``finished_at``, and since
  the process that wrote it (``pid`` on ``host``) is gone, it reads back as *interrupted*.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from simulator.checks import Check, Verdict
from simulator.engine.delisting import run_verdict
from simulator.engine.record import SCHEMA_VERSION, exchange_record, inbound_exchange, result_record
from simulator.engine.run import CheckResult, Run, exchange_result
from simulator.redaction import redact, redact_data
from simulator.store.schema import Database, StoreError, dump, load
from simulator.transport import Exchange, Target, Transport

if TYPE_CHECKING:
    from simulator.openapi import InboundCall
    from simulator.store import Store

OUTBOUND, INBOUND = "outbound", "inbound"
"""Exchanges the marketplace sent to the merchant, and calls the merchant made to the marketplace."""

FINISHED, RUNNING, INTERRUPTED = "finished", "running", "interrupted"

ORDER_ACTIVITIES = ("newInstance", "getLicense")
"""Calls whose accepted orders the marketplace remembers (a merchant may query them later)."""

_LIVE_RUNS: set[str] = set()
"""Runs begun in this process and not finished yet: a run of this process not in here is dead."""
_LIVE_LOCK = threading.Lock()


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


class History:
    """The runs, exchanges, results and findings tables of one history file."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        with self.db.write() as db:
            db.execute(
                "INSERT INTO runs (id, kind, started_at, target_url, protocol, target, seed, assumptions,"
                " planned, command, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    kind,
                    time.time() if started_at is None else started_at,
                    redact(str(target.get("url", "")), secrets),
                    str(target.get("protocol", "")),
                    dump(redact_data(target, secrets)),
                    seed,
                    dump(redact_data(assumptions or {}, secrets)),
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
        """Store an exchange as its record (:func:`exchange_record`, the one redaction pass): one
        the marketplace sent, or (``direction=INBOUND``, no run) a call a merchant made to it."""
        record = exchange_record(exchange, secrets)
        self._insert_exchange(
            run_id, record, direction, None if verdict is None else redact_data(verdict, secrets)
        )
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
        """Store an exchange record made elsewhere, redacted here; a repeat is ignored."""
        self._insert_exchange(
            run_id,
            redact_data(record, secrets),
            direction,
            None if verdict is None else redact_data(verdict, secrets),
        )

    def _insert_exchange(
        self, run_id: str | None, record: Mapping[str, Any], direction: str, verdict: Any
    ) -> None:
        response = record.get("response") or {}
        with self.db.write() as db:
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
                    dump(record),
                    None if verdict is None else dump(verdict),
                ),
            )

    def add_result(
        self, run_id: str, position: int, record: Mapping[str, Any], secrets: Sequence[str]
    ) -> None:
        """Store one check's result record made elsewhere, redacted here, and its findings."""
        self._insert_result(run_id, position, redact_data(record, secrets))

    def add_check_result(
        self,
        run_id: str,
        position: int,
        result: CheckResult,
        secrets: Sequence[str],
        reproduce: str | None = None,
    ) -> None:
        """Store one check's result as its record (:func:`result_record`, the one redaction pass)."""
        record = result_record(result, secrets)
        record["reproduce"] = None if reproduce is None else redact(reproduce, secrets)
        self._insert_result(run_id, position, record)

    def _insert_result(self, run_id: str, position: int, record: Mapping[str, Any]) -> None:
        with self.db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (run_id, position, check_id, verdict, record)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, position, record["id"], record["verdict"], dump(record)),
            )
            db.executemany(
                "INSERT INTO findings (run_id, check_id, message, exchange_ids) VALUES (?, ?, ?, ?)",
                [
                    (run_id, record["id"], finding["message"], dump(finding["exchanges"]))
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
        with self.db.write() as db:
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
            "target": load(row["target"]),
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
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs r {where}"
                " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [self._summary(row) for row in rows]

    def resolve_run_id(self, prefix: str) -> str:
        """The one run whose id is or starts with ``prefix``; LookupError otherwise."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT id FROM runs WHERE id = ? OR substr(id, 1, length(?)) = ? ORDER BY id LIMIT 6",
                (prefix, prefix, prefix),
            ).fetchall()
        ids = [row["id"] for row in rows]
        if prefix in ids:
            return prefix
        if not ids:
            raise LookupError(f"no run {prefix!r} in {self.db.path}; `koosim runs` lists them")
        if len(ids) > 1:
            raise LookupError(f"{prefix!r} names several runs ({', '.join(ids[:5])}…): give more of the id")
        return str(ids[0])

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run in the shape of :func:`records.run_record`, plus its status and bookkeeping."""
        with self.db.connect() as db:
            row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs r WHERE r.id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            results = db.execute(
                "SELECT record FROM results WHERE run_id = ? ORDER BY position", (run_id,)
            ).fetchall()
            exchanges = db.execute(
                "SELECT record, verdict, direction FROM exchanges WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        summary = self._summary(row)
        failed = summary["summary"][Verdict.FAILED.value]
        checks = [load(result["record"]) for result in results]
        exchange_records = [
            _exchange_row(exchange) for exchange in exchanges if exchange["direction"] != INBOUND
        ]
        protocol = str((summary.get("target") or {}).get("protocol") or "v2")
        return summary | {
            "schema_version": SCHEMA_VERSION,
            "seed": row["seed"],
            "assumptions": load(row["assumptions"]),
            "exit_code": row["exit_code"] if row["exit_code"] is not None else (1 if failed else 0),
            # recomputed from the stored checks: rows written before verdicts existed show one too
            "delisting": run_verdict(checks, exchange_records, protocol).as_dict(),
            "checks": checks,
            "exchanges": exchange_records,
            "inbound": [_inbound_row(row) for row in exchanges if row["direction"] == INBOUND],
        }

    def exchange(self, exchange_id: str) -> dict[str, Any] | None:
        with self.db.connect() as db:
            row = db.execute(
                "SELECT record, verdict, run_id, direction FROM exchanges WHERE id = ?", (exchange_id,)
            ).fetchone()
        if row is None:
            return None
        return _exchange_row(row) | {"run_id": row["run_id"], "direction": row["direction"]}

    def exchanges(self, *, direction: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest exchanges (of one direction), newest first."""
        where, params = ("WHERE direction = ?", [direction]) if direction else ("", [])
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT record, verdict, run_id, direction FROM exchanges {where} ORDER BY seq DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_exchange_row(row) | {"run_id": row["run_id"], "direction": row["direction"]} for row in rows]


def _exchange_row(row: sqlite3.Row) -> dict[str, Any]:
    record: dict[str, Any] = load(row["record"])
    record["verdict"] = None if row["verdict"] is None else load(row["verdict"])
    return record


def _inbound_row(row: sqlite3.Row) -> dict[str, Any]:
    """An inbound call of a run as :func:`~simulator.engine.record.inbound_record` shaped it."""
    record = _exchange_row(row)
    verdict = record.get("verdict") or {}
    record["direction"] = verdict.get("direction", "merchant → marketplace")
    return record


# --- recording a live run ------------------------------------------------------------------


class RunRecorder:
    """Writes a run into the store as it happens.

    For :func:`~simulator.engine.run.run_checks`, its methods are the callbacks that function
    takes (begin, exchange, result, finish). For calls sent outside it (a call by hand, an order
    notification, a scenario played step by step), :meth:`start` begins a run at once with a
    transport whose exchanges are recorded as they complete; :meth:`add` records each judged
    result and :meth:`finish` closes both.

    A store failure mid-run (a full disk, a lock held past the timeout) must not end the run:
    the recorder stops writing and keeps the reason in :attr:`problem` for the caller to report.
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
        self.run: Run | None = None
        self.run_id: str | None = None
        self.problem: str | None = None
        self._transport: Transport | None = None
        self._positions = 0
        self._seen: set[str] = set()
        self._writer = store
        """``store`` through one connection from :meth:`begin` to :meth:`finish` (Store.holding)."""

    @classmethod
    def start(
        cls, store: Store, target: Target, *, kind: str, planned: int, command: str = ""
    ) -> RunRecorder:
        """A run begun now against ``target``, recorded call by call through :attr:`transport`."""
        recorder = cls(store, kind=kind, planned=planned, command=command)
        recorder.begin(Run(target=target, seed=0))
        recorder._transport = Transport(target, on_exchange=recorder.exchange)
        return recorder

    @property
    def id(self) -> str:
        """The id of the run, once :meth:`begin` (or :meth:`start`) has begun it."""
        if self.run_id is None:
            raise RuntimeError("the run has not begun")
        return self.run_id

    @property
    def transport(self) -> Transport:
        """The transport of a run begun by :meth:`start`."""
        if self._transport is None:
            raise RuntimeError("only a run begun by RunRecorder.start has a transport")
        return self._transport

    @property
    def _secrets(self) -> tuple[str, ...]:
        """Read at every write, not once: the run learns secrets as it goes (Target.learned_secrets)."""
        return () if self.run is None else self.run.target.secrets

    def _guard(self, write: Callable[[], object]) -> None:
        if self.problem is not None:
            return
        try:
            write()
        except StoreError as exc:
            self.problem = str(exc)

    def begin(self, run: Run) -> None:
        self.run, self.run_id = run, run.id
        target = {
            "url": run.target.url,
            "protocol": run.target.protocol,
            "sync_url": run.target.sync_call_url(""),
            "timeout_s": run.target.timeout,
        }
        self._guard(self._hold)
        self._guard(
            lambda: self._writer.history.begin_run(
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
        self._guard(lambda: self._writer.history.add_exchange(self.run_id, exchange, self._secrets))
        if exchange.activity in ORDER_ACTIVITIES and exchange.result_code == "000000":
            instance_id = exchange.answer_field("instanceId")
            self._guard(
                lambda: self._writer.marketplace.remember_order(
                    exchange.fields, instance_id if isinstance(instance_id, str) else None, self._secrets
                )
            )

    def inbound(self, call: InboundCall) -> None:
        """Record a call the merchant made to the open API during the run (``direction`` inbound,
        the gateway's verdict with it). Called from the open API's threads: the held connection
        takes turns."""
        run_id = self.run_id
        if run_id is None:
            return
        self._guard(
            lambda: self._writer.history.add_exchange(
                run_id, inbound_exchange(call), self._secrets, direction=INBOUND, verdict=call.verdict
            )
        )

    def result(self, result: CheckResult) -> None:
        run_id = self.run_id
        if run_id is None:
            return
        for exchange in result.exchanges:  # copies sent on their own connections reach us here
            self.exchange(exchange)
        for finding in result.findings:
            for exchange in finding.exchanges:
                self.exchange(exchange)
        reproduce = self.reproduce(result.check.id) if self.reproduce else None
        position, self._positions = self._positions, self._positions + 1
        self._guard(
            lambda: self._writer.history.add_check_result(run_id, position, result, self._secrets, reproduce)
        )

    def add(self, result: CheckResult) -> CheckResult:
        """Record one check's result and the exchanges it judged, as part of this recorder's run."""
        if self.run is not None:
            self.run.exchanges.extend(result.exchanges)
            self.run.results.append(result)
        self.result(result)
        return result

    def judge(self, check: Check, exchange: Exchange, problems: Sequence[str]) -> CheckResult:
        """Record ``check``'s verdict on one exchange in which it found ``problems``."""
        return self.add(exchange_result(check, exchange, problems))

    def finish(self, run: Run | None = None, error: str | None = None) -> None:
        """Mark the run finished; a run begun by :meth:`start` is also closed (its transport)."""
        if self._transport is not None:
            self._transport.close()
        run = run or self.run
        if run is None or self.run_id is None:
            return
        if self._transport is not None:
            run.finished_at = time.time()
        self._guard(
            lambda: self._writer.history.finish_run(
                run.id,
                exit_code=run.exit_code,
                finished_at=run.finished_at,
                error=error,
                secrets=self._secrets,
            )
        )
        self._writer.release()
