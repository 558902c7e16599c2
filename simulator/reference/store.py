"""The reference merchant's durable state: instances, licences and the synced user directory.

Idempotency is enforced where it cannot be raced: by UNIQUE constraints in SQLite. A resent
newInstance for the same orderId + orderLineId inserts nothing and reads back the row the
first copy wrote, however many copies arrive at once.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id   TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL,
    order_line_id TEXT NOT NULL,
    customer_id   TEXT,
    product_id    TEXT,
    sku_code      TEXT,
    expire_time   TEXT,
    trial         INTEGER NOT NULL DEFAULT 0,
    test          INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'ACTIVE',
    app_user_name TEXT NOT NULL,
    app_password  TEXT NOT NULL,
    UNIQUE (order_id, order_line_id)
);
CREATE TABLE IF NOT EXISTS licenses (
    license       TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL,
    order_line_id TEXT NOT NULL,
    expire_time   TEXT,
    status        TEXT NOT NULL DEFAULT 'ACTIVE',
    UNIQUE (order_id, order_line_id)
);
CREATE TABLE IF NOT EXISTS directory (
    kind        TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (kind, instance_id, tenant_id, scope, name)
);
"""

ACTIVE, FROZEN, RELEASED, EXPIRED = "ACTIVE", "FROZEN", "RELEASED", "EXPIRED"


def line_key(fields: dict[str, str]) -> str:
    """What one instance of an order is keyed on besides the orderId (docs/protocol.md §4.1-a,
    §4.1-d, §5.1): the order line when the call names one (V2); else, on V1, the productId, so
    that a pay-per-use order gets one instance per billing item (A21), and the order itself when
    neither is sent."""
    if fields.get("orderLineId"):
        return fields["orderLineId"]
    if fields.get("productId"):
        return f"{fields['orderId']}/{fields['productId']}"
    return fields["orderId"]


@dataclass(frozen=True)
class Instance:
    instance_id: str
    order_id: str
    order_line_id: str
    status: str
    app_user_name: str
    app_password: str


class MerchantStore:
    """One SQLite database (a file, or ``:memory:``) behind a lock, safe for a threaded server."""

    def __init__(self, path: str = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- instances -------------------------------------------------------------------------

    def create_instance(self, fields: dict[str, str], app_user_name: str, app_password: str) -> Instance:
        """Record the order line's instance, or return the one an earlier copy recorded.

        The key is orderId + orderLineId (docs/protocol.md §4.1-a); a V1 call has no
        orderLineId (§5.1, U22), so the line is the order's product: pay-per-use opens one
        instance per billing item, same orderId, different productId (§5.1, §4.1-d, A21).
        """
        line = line_key(fields)
        with self._transaction() as db:
            db.execute(
                """INSERT INTO instances (instance_id, order_id, order_line_id, customer_id, product_id,
                       sku_code, expire_time, trial, test, app_user_name, app_password)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (order_id, order_line_id) DO NOTHING""",
                (
                    self.new_instance_id(fields),
                    fields["orderId"],
                    line,
                    # Not in the V2 call (docs/protocol.md §4.1): filled from Querying an Order
                    # (§8.1) when the merchant asks; V1's subscription carries some of them.
                    fields.get("customerId"),
                    fields.get("productId"),
                    fields.get("skuCode"),
                    fields.get("expireTime"),
                    fields.get("trialFlag") == "1",
                    fields.get("testFlag") == "1",
                    app_user_name,
                    app_password,
                ),
            )
            row = db.execute(
                "SELECT * FROM instances WHERE order_id = ? AND order_line_id = ?",
                (fields["orderId"], line),
            ).fetchone()
        return _instance(row)

    def new_instance_id(self, fields: dict[str, str]) -> str:
        """The id a new instance gets; only used when the order line has none yet.

        Short (17 characters, 64 bits of randomness): queryInstance carries several IDs in one
        field of at most 100 characters (docs/protocol.md §4.5, A9), so long IDs would leave
        the marketplace room for only two.
        """
        return f"inst-{uuid.uuid4().hex[:12]}"

    def instance(self, instance_id: str) -> Instance | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        return None if row is None else _instance(row)

    def instances(self, instance_ids: Iterable[str]) -> list[Instance]:
        """The live (not released) instances among ``instance_ids``, in the order asked."""
        found = [self.instance(instance_id) for instance_id in instance_ids]
        return [item for item in found if item is not None and item.status != RELEASED]

    def update_instance(self, instance_id: str, /, **columns: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self._transaction() as db:
            db.execute(
                f"UPDATE instances SET {assignments} WHERE instance_id = ?",
                (*columns.values(), instance_id),
            )

    # --- licences --------------------------------------------------------------------------

    def create_license(self, fields: dict[str, str]) -> str:
        """The order's licence, created by the first getLicense: "for the same order number"
        a resend gets the License created before (docs/protocol.md §6.1, [S75]). The key is the
        order; an order line, when a call names one, is recorded as the order's."""
        with self._transaction() as db:
            db.execute(
                """INSERT INTO licenses (license, order_id, order_line_id, expire_time) VALUES (?, ?, ?, ?)
                   ON CONFLICT (order_id, order_line_id) DO NOTHING""",
                (new_id("LIC").upper(), fields["orderId"], fields["orderId"], fields.get("expireTime")),
            )
            row = db.execute(
                "SELECT license FROM licenses WHERE order_id = ? AND order_line_id = ?",
                (fields["orderId"], fields["orderId"]),
            ).fetchone()
        license_code: str = row["license"]
        return license_code

    def create_license_async(self, fields: dict[str, str]) -> str:
        """The licence of one getLicenseAsync request: "for the same request" (``eventId`` +
        ``deviceFingerprint``) the merchant returns the same License and creates none
        (docs/protocol.md §6.2, [S52]); another eventId is a new request and gets a new licence.
        Kept in the licence table under the request's key, so refresh/expire/release find it."""
        event = f"async:{fields['eventId']}"
        fingerprint = fields.get("deviceFingerprint") or ""
        with self._transaction() as db:
            db.execute(
                """INSERT INTO licenses (license, order_id, order_line_id, expire_time) VALUES (?, ?, ?, ?)
                   ON CONFLICT (order_id, order_line_id) DO NOTHING""",
                (new_id("LIC").upper(), event, fingerprint, fields.get("expireTime")),
            )
            row = db.execute(
                "SELECT license FROM licenses WHERE order_id = ? AND order_line_id = ?",
                (event, fingerprint),
            ).fetchone()
        license_code: str = row["license"]
        return license_code

    def license_status(self, license_code: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM licenses WHERE license = ?", (license_code,)
            ).fetchone()
        return None if row is None else row["status"]

    def update_license(self, license_code: str, /, **columns: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in columns)
        with self._transaction() as db:
            db.execute(
                f"UPDATE licenses SET {assignments} WHERE license = ?",
                (*columns.values(), license_code),
            )

    # --- the synced user directory ---------------------------------------------------------

    def add_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str]
    ) -> None:
        """Add directory entries; adding one that exists is a no-op, so resends succeed."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO directory VALUES (?, ?, ?, ?, ?)",
                [(kind, instance_id, tenant_id, scope, name) for name in names],
            )

    def remove_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str] | None = None
    ) -> None:
        """Remove entries (all of ``scope`` when ``names`` is None); removing a missing one is a no-op."""
        with self._transaction() as db:
            if names is None:
                db.execute(
                    """DELETE FROM directory
                       WHERE kind = ? AND instance_id = ? AND tenant_id = ? AND scope = ?""",
                    (kind, instance_id, tenant_id, scope),
                )
            else:
                db.executemany(
                    """DELETE FROM directory
                       WHERE kind = ? AND instance_id = ? AND tenant_id = ? AND scope = ? AND name = ?""",
                    [(kind, instance_id, tenant_id, scope, name) for name in names],
                )

    def entries(self, kind: str, instance_id: str, tenant_id: str, scope: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                """SELECT name FROM directory
                   WHERE kind = ? AND instance_id = ? AND tenant_id = ? AND scope = ? ORDER BY name""",
                (kind, instance_id, tenant_id, scope),
            ).fetchall()
        return [row["name"] for row in rows]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _instance(row: sqlite3.Row) -> Instance:
    return Instance(
        instance_id=row["instance_id"],
        order_id=row["order_id"],
        order_line_id=row["order_line_id"],
        status=row["status"],
        app_user_name=row["app_user_name"],
        app_password=row["app_password"],
    )
