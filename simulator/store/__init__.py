"""The run history and the marketplace's own memory: one SQLite file (WAL) every ``koosim``
command shares.

One room per concern, over one :class:`~simulator.store.schema.Database`:

- :mod:`~simulator.store.schema`: opening the file, WAL, permissions, migrations;
- :mod:`~simulator.store.history`: runs, exchanges, results, and the :class:`RunRecorder`;
- :mod:`~simulator.store.marketplace`: orders, pushed usage, the outbox;
- :mod:`~simulator.store.dial`: the dial tests of each target (the delisting countdown);
- :mod:`~simulator.store.deliveries`: scheduled deliveries and the marketplace clock's anchor.

:class:`Store` opens a file and hands out both: ``store.history`` and ``store.marketplace``.
"""

from __future__ import annotations

from pathlib import Path

from simulator.store.deliveries import CLAIM_LEASE_S, DeliveryRecords
from simulator.store.dial import DialHistory
from simulator.store.history import (
    FINISHED,
    INBOUND,
    INTERRUPTED,
    OUTBOUND,
    RUNNING,
    History,
    RunRecorder,
    run_status,
)
from simulator.store.marketplace import OUTBOX_PENDING, OUTBOX_RESOLVED, OUTBOX_STOPPED, MarketplaceRecords
from simulator.store.schema import BUSY_TIMEOUT_S, MIGRATIONS, Database, StoreError, private_file

__all__ = [
    "BUSY_TIMEOUT_S",
    "CLAIM_LEASE_S",
    "FINISHED",
    "INBOUND",
    "INTERRUPTED",
    "MIGRATIONS",
    "OUTBOUND",
    "OUTBOX_PENDING",
    "OUTBOX_RESOLVED",
    "OUTBOX_STOPPED",
    "RUNNING",
    "Database",
    "DeliveryRecords",
    "DialHistory",
    "History",
    "MarketplaceRecords",
    "RunRecorder",
    "Store",
    "StoreError",
    "private_file",
    "run_status",
]


class Store:
    """One history file: its :attr:`history`, :attr:`marketplace` and :attr:`deliveries` records, sharing one
    :class:`Database`. Cheap to create and safe to share between threads."""

    def __init__(self, path: str | Path | Database, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.db = path if isinstance(path, Database) else Database(path, busy_timeout=busy_timeout)
        self.history = History(self.db)
        self.marketplace = MarketplaceRecords(self.db)
        self.deliveries = DeliveryRecords(self.db)
        self.dial = DialHistory(self.db)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def holding(self) -> Store:
        """This store through one connection, kept open until :meth:`release` (see
        :meth:`Database.holding`): for a recorder that writes after every call."""
        return Store(self.db.holding())

    def release(self) -> None:
        self.db.release()
