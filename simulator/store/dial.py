"""The dial-test history: every dial test of every target, for the delisting countdown
(docs/protocol.md §10.3). Written by ``koosim watch`` and by ``serve``'s timer and
``POST /api/dial``; the table is created by a migration of :mod:`~simulator.store.schema`.

A target is its produce-interface URL as the user gave it (redacted), so ``watch`` against
staging and ``serve`` against a local merchant keep separate countdowns in one file.
Marketplace instants are stored as ISO-8601 UTC text, which sorts as time does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from simulator.clock import isoformat
from simulator.store.schema import Database, dump, load

DEFAULT_DIAL_LIMIT = 200


class DialHistory:
    """The ``dial_tests`` table of one history file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, target_url: str, market_at: datetime, wall_at: float, passed: bool, record: Any) -> int:
        """Keep one dial test (its ``record`` already redacted); returns its id."""
        with self.db.write() as db:
            cursor = db.execute(
                "INSERT INTO dial_tests (target_url, market_at, wall_at, passed, record)"
                " VALUES (?, ?, ?, ?, ?)",
                (target_url, isoformat(market_at), wall_at, int(passed), dump(record)),
            )
        return int(cursor.lastrowid or 0)

    def results(self, target_url: str) -> list[tuple[datetime, bool]]:
        """Every dial test of ``target_url`` as (marketplace instant, passed), oldest first."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT market_at, passed FROM dial_tests WHERE target_url = ? ORDER BY market_at, id",
                (target_url,),
            ).fetchall()
        return [(_instant(row["market_at"]), bool(row["passed"])) for row in rows]

    def recent(self, target_url: str | None = None, limit: int = DEFAULT_DIAL_LIMIT) -> list[dict[str, Any]]:
        """The newest dial tests (of one target), newest first, as stored."""
        where, params = ("WHERE target_url = ?", [target_url]) if target_url else ("", [])
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT id, target_url, market_at, wall_at, passed, record FROM dial_tests {where}"
                " ORDER BY market_at DESC, id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [
            {
                "id": row["id"],
                "target_url": row["target_url"],
                "market_at": row["market_at"],
                "wall_at": row["wall_at"],
                "passed": bool(row["passed"]),
                "record": load(row["record"]),
            }
            for row in rows
        ]

    def targets(self) -> Sequence[str]:
        with self.db.connect() as db:
            rows = db.execute("SELECT DISTINCT target_url FROM dial_tests ORDER BY target_url").fetchall()
        return [row["target_url"] for row in rows]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
