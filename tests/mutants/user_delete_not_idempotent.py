"""authSync: deleting a user that is already gone fails, so a resent delete is answered 000005.

The bug: the merchant loads the user before deleting it and treats "not found" as an error
(``repository.getById(…)`` throwing, ``Model.objects.get`` raising ``DoesNotExist``). The first
delete works; the marketplace's resend of the same delete, or a delete for a user the merchant
never received, ends in 000005. Failed sync calls are reported to the buyer's administrator by
SMS or e-mail, who then has to decide whether to continue the sync.

Why it is tempting: "delete what is not there" sounds like a caller's mistake worth reporting,
and in a manual test each user is deleted once.

How the reference merchant avoids it: ``store.MerchantStore.remove_entries`` is a plain
``DELETE … WHERE``, which removes nothing, and succeeds, when the entry is already gone
(protocol.md §8: repeated adds and deletes succeed each time).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask

from simulator.reference import MerchantConfig, create_app
from simulator.reference.store import MerchantStore

from .base import install_store, mutant


class DeleteMustFindStore(MerchantStore):
    def remove_entries(
        self, kind: str, instance_id: str, tenant_id: str, scope: str, names: Iterable[str] | None = None
    ) -> None:
        if names is not None:
            names = list(names)
            present = set(self.entries(kind, instance_id, tenant_id, scope))
            missing = [name for name in names if name not in present]
            if missing:  # the defect: an already deleted entry is an error
                raise LookupError(f"{kind} {missing[0]!r} does not exist")
        super().remove_entries(kind, instance_id, tenant_id, scope, names)


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_store(app, DeleteMustFindStore(config.database))
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.user-sync-delete",
    evidence="a repeated delete of the same user must succeed",
    rule="§8 seed rule",
    controls=("idempotency.user-sync-add",),
)
