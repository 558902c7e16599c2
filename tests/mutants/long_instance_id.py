"""instanceId is longer than 64 characters.

The bug: the merchant builds a "readable" instanceId from the ids it was given, businessId +
orderId + orderLineId, 79 characters. Its own column is VARCHAR(255), so nothing fails
on its side; the marketplace stores at most 64 characters and rejects (or truncates) the id,
after which no renewal, freeze or release can name the instance.

Why it is tempting: a composite id is unique without a sequence or a UUID and tells support at
a glance which order an instance belongs to.

How the reference merchant avoids it: ``MerchantStore.new_instance_id`` makes ``inst-`` + 12 hex
digits (17 characters), and ``contracts/v2/newInstance.response.json`` caps instanceId at 64.
"""

from __future__ import annotations

import dataclasses

from flask import Flask

from simulator.reference import MerchantConfig, create_app
from simulator.reference.store import Instance, MerchantStore

from .base import install_store, mutant


class CompositeIdStore(MerchantStore):
    def create_instance(self, fields: dict[str, str], app_user_name: str, app_password: str) -> Instance:
        instance = super().create_instance(fields, app_user_name, app_password)
        if not instance.instance_id.startswith("inst-"):
            return instance  # a resend: the row already carries the composite id
        # The defect: businessId (36) + orderId + orderLineId makes 79 characters.
        composite = f"{fields['businessId']}-{fields['orderId']}-{fields['orderLineId']}"
        # update_instance(…, instance_id=…) cannot rename: its first parameter has that name.
        with self._transaction() as db:
            db.execute(
                "UPDATE instances SET instance_id = ? WHERE instance_id = ?",
                (composite, instance.instance_id),
            )
        return dataclasses.replace(instance, instance_id=composite)


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    install_store(app, CompositeIdStore(config.database))
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="contract.response-schema",
    evidence="$.instanceId",
    rule="§7, §10",
    drivers=("lifecycle.test-order",),
)
