"""authSync: adding a user that is already there fails, so a resent add is answered 000005.

The bug: the merchant inserts the user with a plain ``INSERT`` into a table whose primary key is
(tenant, application, userName). The first add works; the resend hits the key and the
IntegrityError ends as 000005. Failed sync calls are reported to the buyer's administrator,
who sees errors for users that were in fact added.

Why it is tempting: the unique key is right (it is what makes the resend harmless) but the
insert has to be told that a conflict is fine, and a single manual add never conflicts.

How the reference merchant avoids it: ``store.MerchantStore.add_entries`` uses
``INSERT OR IGNORE``: adding an entry that exists changes nothing and succeeds (protocol.md §8).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask

from simulator.reference import MerchantConfig, create_app
from simulator.reference.store import MerchantStore

from .base import install_store, mutant


class PlainInsertStore(MerchantStore):
    def add_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str]
    ) -> None:
        names = list(names)
        present = set(self.entries(kind, instance_id, tenant_id, scope))
        duplicates = [name for name in names if name in present]
        if duplicates:  # the defect: what INSERT without OR IGNORE does on the primary key
            raise LookupError(f"UNIQUE constraint failed: {kind} {duplicates[0]!r}")
        super().add_entries(kind, instance_id, tenant_id, scope, names)


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_store(app, PlainInsertStore(config.database))
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.user-sync-add",
    evidence="a repeated add of the same user must succeed",
    rule="§8 seed rule",
    controls=("idempotency.user-sync-delete",),
)
