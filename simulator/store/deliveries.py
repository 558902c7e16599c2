"""Scheduled deliveries: every call ``koosim serve`` sends on a schedule, kept in the history file
so that a killed or restarted server loses none and two servers never send the same attempt.

One row per delivery (a call, or an order notification) with its schedule's state: the attempts
made so far (JSON: number, due, sent, answered, failure, exchange), when the next is due
(marketplace time, seconds since the epoch) and whether an attempt is *claimed*.

**Claiming** is how at most one process sends an attempt. A process that wants to send attempt
``n`` runs one ``UPDATE … SET claimed_by = me, claimed_until = lease, in_flight = n WHERE id = ?
AND in_flight IS NULL AND (claimed_by IS NULL OR claimed_until < now)`` inside ``BEGIN
IMMEDIATE`` and sends only when that changed one row; another process finds ``in_flight`` set and
leaves the row alone. Recording the outcome clears the claim, and only succeeds for the process
that still holds it.

**A crash between sending and recording** leaves ``in_flight`` set with a lease that runs out
(:data:`CLAIM_LEASE_S`). Whoever finds it later (:meth:`DeliveryRecords.claim_lost`) records that
attempt as failed with no answer recorded, and the schedule goes on with the *next* attempt:
attempt ``n`` is never sent twice, but it may have reached the merchant before the crash, so the
merchant may see attempt ``n + 1`` of a call it already accepted — at-least-once, as the
marketplace itself delivers (§10.1: "the marketplace may resend").

The rows hold the body as it was sent (redacted with the keys of the moment: keys never enter the
file); the keys to sign a resend come from the server's settings when it is sent.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from simulator.redaction import redact, redact_data
from simulator.store.schema import Database, dump, load

CLAIM_LEASE_S = 60.0
"""How long (wall seconds) a claim holds: longer than any answer may take (the 5 s deadline) and
the recording after it. A process killed mid-attempt blocks that delivery for at most this long."""

PENDING, DELIVERED, PARKED, CANCELLED = "pending", "delivered", "parked", "cancelled"
STATES = (PENDING, DELIVERED, PARKED, CANCELLED)


class DeliveryRecords:
    """The deliveries table and the marketplace clock's anchor of one history file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- creating ----------------------------------------------------------------------------

    def add_claimed(
        self,
        *,
        owner: str,
        kind: str,
        interface: str,
        protocol: str,
        activity: str,
        label: str,
        target_url: str,
        body: Mapping[str, Any],
        policy: str,
        first_due: float,
        secrets: Sequence[str],
        lease: float = CLAIM_LEASE_S,
    ) -> int:
        """A new delivery whose first attempt ``owner`` sends at once: it is created claimed,
        attempt 1 in flight, so a crash before its outcome is recorded is noticed like any other."""
        now = time.time()
        with self.db.write() as db:
            cursor = db.execute(
                "INSERT INTO deliveries (created_at, updated_at, kind, interface, protocol, activity,"
                " label, target_url, body, policy, state, first_due, next_due, manual_due, attempts,"
                " in_flight, claimed_by, claimed_until) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]', 1, ?, ?)",
                (
                    now,
                    now,
                    kind,
                    interface,
                    protocol,
                    activity,
                    redact(label, secrets),
                    redact(target_url, secrets),
                    dump(redact_data(dict(body), secrets)),
                    policy,
                    PENDING,
                    first_due,
                    first_due,
                    owner,
                    now + lease,
                ),
            )
            return int(cursor.lastrowid or 0)

    # --- claiming ----------------------------------------------------------------------------

    def claim(
        self,
        delivery_id: int,
        owner: str,
        *,
        market_now: float,
        urls: Sequence[str] = (),
        lease: float = CLAIM_LEASE_S,
    ) -> dict[str, Any] | None:
        """Claim the next attempt of one delivery if it is due and nobody holds it; returns the
        row (with ``in_flight`` = the attempt's number) or None when another process has it, it is
        not due, or it is over. ``urls``: only a delivery to one of these targets (empty: any)."""
        wall_now = time.time()
        with self.db.write() as db:
            row = db.execute("SELECT attempts FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None:
                return None
            number = len(load(row["attempts"])) + 1
            url_clause = f" AND target_url IN ({', '.join('?' * len(urls))})" if urls else ""
            cursor = db.execute(
                "UPDATE deliveries SET claimed_by = ?, claimed_until = ?, in_flight = ?, updated_at = ?"
                " WHERE id = ? AND state = ? AND in_flight IS NULL"
                " AND min(coalesce(next_due, 1e300), coalesce(manual_due, 1e300)) <= ?"
                " AND (claimed_by IS NULL OR claimed_until < ?)" + url_clause,
                (
                    owner,
                    wall_now + lease,
                    number,
                    wall_now,
                    delivery_id,
                    PENDING,
                    market_now,
                    wall_now,
                    *urls,
                ),
            )
            if cursor.rowcount != 1:
                return None
            claimed = db.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return _row(claimed)

    def due(self, market_now: float, *, urls: Sequence[str] = (), limit: int = 20) -> list[int]:
        """The ids of deliveries with an attempt due and unclaimed (a claim may still lose)."""
        url_clause = f" AND target_url IN ({', '.join('?' * len(urls))})" if urls else ""
        free = " AND in_flight IS NULL AND (claimed_by IS NULL OR claimed_until < ?)" + url_clause
        wall_now = time.time()
        with self.db.connect() as db:  # two indexed halves: scheduled and restarted by hand
            rows = db.execute(
                "SELECT id, next_due AS due FROM deliveries WHERE state = 'pending' AND next_due <= ?"
                + free
                + " UNION SELECT id, manual_due AS due FROM deliveries WHERE manual_due IS NOT NULL"
                " AND manual_due <= ? AND state = 'pending'" + free + " ORDER BY due LIMIT ?",
                (market_now, wall_now, *urls, market_now, wall_now, *urls, limit),
            ).fetchall()
        return list(dict.fromkeys(row["id"] for row in rows))

    def next_due(self, *, urls: Sequence[str] = ()) -> float | None:
        """The earliest marketplace instant an unclaimed pending delivery is due (None: none)."""
        url_clause = f" AND target_url IN ({', '.join('?' * len(urls))})" if urls else ""
        with self.db.connect() as db:
            row = db.execute(
                "SELECT min(min(coalesce(next_due, 1e300), coalesce(manual_due, 1e300))) AS due"
                " FROM deliveries WHERE state = ? AND in_flight IS NULL" + url_clause,
                (PENDING, *urls),
            ).fetchone()
        due = row["due"] if row is not None else None
        return None if due is None or due >= 1e300 else float(due)

    def claim_lost(
        self, owner: str, *, limit: int = 20, lease: float = CLAIM_LEASE_S
    ) -> list[dict[str, Any]]:
        """Claim the deliveries whose attempt was in flight when its sender stopped (the lease ran
        out without an outcome): the caller records that attempt as failed with no answer."""
        wall_now = time.time()
        claimed: list[dict[str, Any]] = []
        lost = "SELECT id FROM deliveries WHERE in_flight IS NOT NULL AND claimed_until < ? LIMIT ?"
        with self.db.connect() as db:  # the usual answer, none, without taking the write lock
            if db.execute(lost, (wall_now, 1)).fetchone() is None:
                return claimed
        with self.db.write() as db:
            rows = db.execute(lost, (wall_now, limit)).fetchall()
            for row in rows:
                cursor = db.execute(
                    "UPDATE deliveries SET claimed_by = ?, claimed_until = ?, updated_at = ?"
                    " WHERE id = ? AND in_flight IS NOT NULL AND claimed_until < ?",
                    (owner, wall_now + lease, wall_now, row["id"], wall_now),
                )
                if cursor.rowcount == 1:
                    claimed.append(
                        _row(db.execute("SELECT * FROM deliveries WHERE id = ?", (row["id"],)).fetchone())
                    )
        return claimed

    def record(
        self,
        delivery_id: int,
        owner: str,
        *,
        attempt: Mapping[str, Any],
        state: str,
        next_due: float | None,
        manual_due: float | None,
        summary: str,
        secrets: Sequence[str] = (),
    ) -> bool:
        """Record the outcome of the attempt ``owner`` claimed and release the claim; False when
        the claim was lost meanwhile (its lease ran out and another process took it over)."""
        if state not in STATES:
            raise ValueError(f"unknown delivery state {state!r}")
        with self.db.write() as db:
            row = db.execute(
                "SELECT attempts, in_flight, claimed_by FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None or row["claimed_by"] != owner or row["in_flight"] != attempt.get("number"):
                return False
            attempts = [*load(row["attempts"]), redact_data(dict(attempt), secrets)]
            db.execute(
                "UPDATE deliveries SET attempts = ?, state = ?, next_due = ?, manual_due = ?, summary = ?,"
                " in_flight = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ? WHERE id = ?",
                (
                    dump(attempts),
                    state,
                    next_due,
                    manual_due,
                    redact(summary, secrets),
                    time.time(),
                    delivery_id,
                ),
            )
        return True

    def release(self, delivery_id: int, owner: str) -> None:
        """Give a claim back without an attempt (the attempt could not be sent at all)."""
        with self.db.write() as db:
            db.execute(
                "UPDATE deliveries SET in_flight = NULL, claimed_by = NULL, claimed_until = NULL,"
                " updated_at = ? WHERE id = ? AND claimed_by = ?",
                (time.time(), delivery_id, owner),
            )

    def restart(self, delivery_id: int, manual_due: float, state: str, summary: str) -> bool:
        """The manual 重新启动: one more attempt due at ``manual_due``; False when an attempt is in
        flight (the caller checked the state machine allows it)."""
        with self.db.write() as db:
            cursor = db.execute(
                "UPDATE deliveries SET manual_due = coalesce(manual_due, ?), state = ?, summary = ?,"
                " updated_at = ? WHERE id = ? AND in_flight IS NULL",
                (manual_due, state, summary, time.time(), delivery_id),
            )
            return cursor.rowcount == 1

    # --- reading -----------------------------------------------------------------------------

    def get(self, delivery_id: int) -> dict[str, Any] | None:
        with self.db.connect() as db:
            row = db.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return None if row is None else _row(row)

    def listing(
        self,
        *,
        failed_only: bool = False,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first; ``failed_only``: those with at least one failed attempt (the
        生产接口消息 page), or lost in flight."""
        clauses, params = [], []
        if state:
            clauses.append("state = ?")
            params.append(state)
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if failed_only:
            clauses.append(
                "(state IN (?, ?) OR EXISTS (SELECT 1 FROM json_each(attempts)"
                " WHERE json_extract(value, '$.failure') IS NOT NULL))"
            )
            params += [PARKED, CANCELLED]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT * FROM deliveries {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [_row(row) for row in rows]

    def cancellations(self, target_url: str) -> list[datetime]:
        """When each delivery to ``target_url`` was cancelled automatically (V1 orders, §10.1):
        the marketplace instant its last attempt was answered, oldest first."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT json_extract(attempts, '$[#-1].answered') AS answered FROM deliveries"
                " WHERE state = ? AND target_url = ? ORDER BY id",
                (CANCELLED, target_url),
            ).fetchall()
        return [datetime.fromtimestamp(row["answered"], UTC) for row in rows if row["answered"] is not None]

    def pending(self) -> int:
        """How many deliveries are pending (an attempt due now or later, or in flight)."""
        with self.db.connect() as db:
            row = db.execute("SELECT count(*) AS n FROM deliveries WHERE state = ?", (PENDING,)).fetchone()
        return int(row["n"])

    def failing(self) -> int:
        """How many deliveries wait after a failure: pending with a failed attempt, or parked."""
        with self.db.connect() as db:
            row = db.execute(
                "SELECT count(*) AS n FROM deliveries WHERE state = ? OR (state = ? AND EXISTS"
                " (SELECT 1 FROM json_each(attempts) WHERE json_extract(value, '$.failure') IS NOT NULL))",
                (PARKED, PENDING),
            ).fetchone()
        return int(row["n"])

    # --- the marketplace clock's anchor --------------------------------------------------------

    def clock_anchor(self) -> tuple[float, float, float] | None:
        """(scale, marketplace instant, wall instant) of the last scaled clock, or None."""
        with self.db.connect() as db:
            row = db.execute("SELECT scale, market, wall FROM market_clock WHERE id = 1").fetchone()
        return None if row is None else (row["scale"], row["market"], row["wall"])

    def set_clock_anchor(self, scale: float, market: float, wall: float) -> None:
        with self.db.write() as db:
            db.execute(
                "INSERT INTO market_clock (id, scale, market, wall) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET scale = excluded.scale, market = excluded.market,"
                " wall = excluded.wall",
                (scale, market, wall),
            )


def _row(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["body"] = load(row["body"])
    record["attempts"] = load(row["attempts"])
    return record
