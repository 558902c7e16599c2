"""Faulty merchants whose defect shows only in a sequence of calls: what ``koosim explore`` must find.

Each answers every single call correctly in isolation; the defect needs two or three calls in
a certain order (or two copies at the same moment). ``tests/test_explore.py`` runs
``koosim explore`` against each with a fixed seed and its default budget, and checks that the
shrunk scenario is short and fails under :attr:`Mutant.catches` when ``koosim play`` replays it.

- :data:`RESEND_AFTER_RENEWAL`: the merchant finds a resent order by orderId + orderLineId +
  expireTime. A renewal changes the instance's expireTime; the marketplace's resend of the
  original newInstance (which carries the original expireTime) no longer matches, and a second
  instance is created. Tempting because expireTime looks like part of "the subscription".
- :data:`UNFREEZE_AFTER_RELEASE`: UNFREEZE sets the status to ACTIVE whenever the instance
  exists, so a late unfreeze brings a released instance back. Freeze, refresh and upgrade are
  guarded; only the "turn it back on" path forgot the release.
- :data:`NO_READD_AFTER_DELETE`: users are soft-deleted (the row stays, marked deleted) under a
  UNIQUE (instance, tenant, app, userName) key; adding a deleted user back inserts a second row
  and the constraint fails, 000005. Repeated adds and repeated deletes still succeed.
- :data:`CONCURRENT_COPIES_RACE`: newInstance looks the order line up, provisions for a moment
  and then records it, without a lock or a unique constraint. A sequential resend finds the
  record; two copies arriving together both miss it and create two instances.

The reference merchant avoids all four: one UNIQUE (order_id, order_line_id) key read back in
one transaction, ``_refuse_unless_live`` on every status change, and plain ``INSERT OR IGNORE`` /
``DELETE`` for the user directory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import Flask

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Answer, answer
from simulator.reference.store import ACTIVE, MerchantStore

from .base import Merchant, Mutant, install_merchant, install_store

# --- resend after a renewal creates a new instance ---------------------------------------------


@dataclass
class ExpiryKeyedMerchant(Merchant):
    instances: dict[tuple[str, str, str], Answer] = field(default_factory=dict)
    """(orderId, orderLineId, expireTime) → the answer of the instance created for it."""
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """instanceId → its current key."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Concurrent copies are handled one at a time: this defect needs a sequence, not a race."""

    def new_instance(self, fields: dict[str, str]) -> Answer:
        key = (fields["orderId"], fields["orderLineId"], fields.get("expireTime", ""))
        with self.lock:
            if key in self.instances:
                return self.instances[key]
            # A new row per key: the unique order line of the reference store is side-stepped.
            created = super().new_instance({**fields, "orderLineId": f"{key[1]}#{uuid.uuid4().hex[:8]}"})
            self.instances[key] = created
            self.keys[str(created["instanceId"])] = key
            return created

    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        with self.lock:
            result = super().refresh_instance(fields)
            old = self.keys.get(fields["instanceId"])
            if result["resultCode"] == ResultCode.SUCCESS and old is not None:
                new = (old[0], old[1], fields["expireTime"])  # the defect: the lookup key moves with it
                self.instances[new] = self.instances.pop(old)
                self.keys[fields["instanceId"]] = new
            return result


def build_resend_after_renewal(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_merchant(app, ExpiryKeyedMerchant)
    return app


RESEND_AFTER_RENEWAL = Mutant(
    name="resend_after_renewal",
    build=build_resend_after_renewal,
    catches="idempotency.new-instance-resend",
    evidence="but step",
    rule="§7 seed rule",
)


# --- unfreeze after release succeeds -------------------------------------------------------------


@dataclass
class UnfreezeRevivesMerchant(Merchant):
    def update_instance_status(self, fields: dict[str, str]) -> Answer:
        instance = self.store.instance(fields["instanceId"])
        if fields["status"] == "UNFREEZE" and instance is not None:
            self.store.update_instance(instance.instance_id, status=ACTIVE)  # the defect: released or not
            return answer(ResultCode.SUCCESS)
        return super().update_instance_status(fields)


def build_unfreeze_after_release(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_merchant(app, UnfreezeRevivesMerchant)
    return app


UNFREEZE_AFTER_RELEASE = Mutant(
    name="unfreeze_after_release_only",
    build=build_unfreeze_after_release,
    catches="lifecycle.after-release",
    evidence="expected 000003",
    rule="§7 (practice)",
)


# --- re-adding a user after a delete fails -------------------------------------------------------


class SoftDeleteStore(MerchantStore):
    def __init__(self, path: str = ":memory:") -> None:
        super().__init__(path)
        self._deleted: set[tuple[str, str, str, str]] = set()

    def remove_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str] | None = None
    ) -> None:
        if kind == "user" and names is not None:
            names = list(names)
            self._deleted.update((instance_id, tenant_id, scope, name) for name in names)
        super().remove_entries(kind, instance_id, tenant_id, scope, names)

    def add_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str]
    ) -> None:
        names = list(names)
        if kind == "user" and any((instance_id, tenant_id, scope, name) in self._deleted for name in names):
            # the defect: the soft-deleted row is still there under the unique key
            raise sqlite3.IntegrityError("UNIQUE constraint failed: users.instance_id, users.user_name")
        super().add_entries(kind, instance_id, tenant_id, scope, names)


def build_no_readd_after_delete(config: MerchantConfig) -> Flask:
    app = create_app(config)
    app.logger.disabled = True  # the merchant's own traceback is not what the test is about
    install_store(app, SoftDeleteStore(config.database))
    return app


NO_READD_AFTER_DELETE = Mutant(
    name="no_readd_after_delete",
    build=build_no_readd_after_delete,
    catches="idempotency.user-sync-delete",
    evidence="expected 000000",
    rule="§8 seed rule",
)


# --- a race only concurrent copies expose ----------------------------------------------------------

PROVISIONING_SECONDS = 0.05
"""The window between "not found" and "recorded" in which a second copy also finds nothing."""


@dataclass
class LookThenRecordMerchant(Merchant):
    recorded: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def new_instance(self, fields: dict[str, str]) -> Answer:
        line = (fields["orderId"], fields["orderLineId"])
        if line in self.recorded:
            return self.recorded[line]
        time.sleep(PROVISIONING_SECONDS)
        created = super().new_instance({**fields, "orderLineId": f"{line[1]}#{uuid.uuid4().hex[:8]}"})
        self.recorded[line] = created
        return created


def build_concurrent_copies_race(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_merchant(app, LookThenRecordMerchant)
    return app


CONCURRENT_COPIES_RACE = Mutant(
    name="concurrent_copies_race",
    build=build_concurrent_copies_race,
    catches="idempotency.new-instance-concurrent",
    evidence="different instanceIds",
    rule="§7 seed rule",
)


SEQUENCE_MUTANTS = [
    RESEND_AFTER_RENEWAL,
    UNFREEZE_AFTER_RELEASE,
    NO_READD_AFTER_DELETE,
    CONCURRENT_COPIES_RACE,
]
