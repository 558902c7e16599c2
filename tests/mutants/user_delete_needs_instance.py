"""authSync refuses to delete users of an instance the merchant does not know.

The bug: the merchant looks the subscription's instance up before it deletes a user and answers
000003 when it is not there (already released, or never provisioned on this server). The
authSync pages say a delete must not depend on the instance from the subscription call existing
([S54][S55], docs/protocol.md §7.4): the marketplace's delete is refused, and the administrator
is told the sync failed.

Why it is tempting: every other call about an instance starts with "find the instance".

How the reference merchant avoids it: a delete removes whatever entries match, and succeeds when
there are none.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import REMOVING_FLAGS
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Merchant

from .base import MERCHANT, mutant, refuse_calls


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    merchant: Merchant = app.extensions[MERCHANT]

    def unknown_instance(fields: dict[str, Any]) -> str | None:
        if (
            fields.get("flag") in REMOVING_FLAGS
            and merchant.store.instance(str(fields.get("instanceId"))) is None
        ):
            return "instance not found"  # the defect
        return None

    refuse_calls(app, "sync.sync", unknown_instance, ResultCode.INSTANCE_NOT_FOUND)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.user-sync-delete-unscoped",
    evidence="must not depend on the subscription's instance",
    rule="§7.4",
    controls=("idempotency.user-sync-delete",),
)
