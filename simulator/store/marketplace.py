"""What the simulated marketplace itself remembers between runs: the orders it sent (a merchant
may query them later), the usage records merchants pushed, and the SMS/e-mail outbox of failed
user syncs (protocol.md §8). Every string that may quote a merchant or a key is redacted on the
way in."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simulator.redaction import redact, redact_data
from simulator.store.schema import Database, dump, load

OUTBOX_PENDING, OUTBOX_RESOLVED, OUTBOX_STOPPED = "pending", "resolved", "stopped"


class MarketplaceRecords:
    """The orders, usage and outbox tables of one history file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- orders ----------------------------------------------------------------------------

    def remember_order(
        self, fields: Mapping[str, Any], instance_id: str | None, secrets: Sequence[str]
    ) -> None:
        """An order the marketplace sent (newInstance / getLicense) that a merchant may query later."""
        order_id, line_id = fields.get("orderId"), fields.get("orderLineId")
        if not isinstance(order_id, str) or not isinstance(line_id, str):
            return
        with self.db.write() as db:
            db.execute(
                "INSERT INTO orders (order_id, order_line_id, instance_id, fields, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id, order_line_id) DO UPDATE SET"
                " instance_id = coalesce(excluded.instance_id, instance_id)",
                (order_id, line_id, instance_id, dump(redact_data(fields, secrets)), time.time()),
            )

    def order_lines(self, order_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM orders WHERE order_id = ? ORDER BY order_line_id", (order_id,)
            ).fetchall()
        return [
            {
                "order_id": row["order_id"],
                "order_line_id": row["order_line_id"],
                "instance_id": row["instance_id"],
                "fields": load(row["fields"]),
                "created_at": row["created_at"],
            }
            for row in rows
        ]

    def latest_order(self) -> dict[str, Any] | None:
        """The order line the marketplace sent last, for a form to start from."""
        with self.db.connect() as db:
            row = db.execute(
                "SELECT order_id, order_line_id, instance_id FROM orders ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else dict(row)

    def latest_instance_id(self) -> str | None:
        """The instance the last accepted order created: what a hand-made call most likely names."""
        with self.db.connect() as db:
            row = db.execute(
                "SELECT instance_id FROM orders WHERE instance_id IS NOT NULL"
                " ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else row["instance_id"]

    # --- usage -----------------------------------------------------------------------------

    def add_usage(
        self, records: Iterable[Mapping[str, Any]], exchange_id: str | None, secrets: Sequence[str]
    ) -> tuple[int, int]:
        """Keep pushed usage records; a record resent with the same metering_sn is kept once.

        Returns (new records, repeats).
        """
        added = repeated = 0
        with self.db.write() as db:
            for record in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO usage_records (metering_sn, instance_id, record, received_at,"
                    " exchange_id) VALUES (?, ?, ?, ?, ?)",
                    (
                        redact(str(record["metering_sn"]), secrets),
                        redact(str(record["instance_id"]), secrets),
                        dump(redact_data(record, secrets)),
                        time.time(),
                        exchange_id,
                    ),
                )
                added += cursor.rowcount
                repeated += 1 - cursor.rowcount
        return added, repeated

    def usage(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT record, received_at, exchange_id FROM usage_records"
                " ORDER BY received_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            load(row["record"]) | {"received_at": row["received_at"], "exchange_id": row["exchange_id"]}
            for row in rows
        ]

    # --- the outbox ------------------------------------------------------------------------

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
        with self.db.write() as db:
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
                    dump(redact_data(sync_body, secrets)),
                    OUTBOX_PENDING,
                    dump([exchange_id]),
                ),
            )
            return int(cursor.lastrowid or 0)

    def outbox(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT * FROM outbox {where} ORDER BY id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [_outbox_row(row) for row in rows]

    def outbox_message(self, message_id: int) -> dict[str, Any] | None:
        with self.db.connect() as db:
            row = db.execute("SELECT * FROM outbox WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _outbox_row(row)

    def decide_outbox(self, message_id: int, status: str, exchange_id: str | None = None) -> None:
        """The administrator's decision: resolved (a resend succeeded), stopped, or still pending
        after another failed resend. Every resend's exchange is kept with the message."""
        with self.db.write() as db:
            row = db.execute(
                "SELECT exchange_ids, attempts FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no outbox message {message_id}")
            exchange_ids = load(row["exchange_ids"]) + ([exchange_id] if exchange_id else [])
            db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, exchange_ids = ?, decided_at = ? WHERE id = ?",
                (
                    status,
                    row["attempts"] + (1 if exchange_id else 0),
                    dump(exchange_ids),
                    time.time(),
                    message_id,
                ),
            )


def _outbox_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "channels": row["channels"].split(","),
        "recipient": row["recipient"],
        "subject": row["subject"],
        "body": row["body"],
        "sync_call": row["sync_call"],
        "sync_body": load(row["sync_body"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "exchange_ids": load(row["exchange_ids"]),
        "decided_at": row["decided_at"],
    }
