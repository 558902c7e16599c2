"""Usage is pushed under the orderId: the records name an instance that does not exist.

The bug: the merchant's metering job reports each pay-per-use subscription's usage with the id
it keys its billing on, the marketplace's ``orderId``, in ``instance_id``. The usage push wants
the ``instanceId`` the merchant itself returned for the purchase (docs/protocol.md §8.3); a
record naming anything else is charged to nobody (the marketplace answers MKT.9001, §8.4).

Caught as a warning only: a real merchant pushes for its instances of earlier runs too, and koosim
cannot tell an earlier run's instance from a made-up one (review 2, finding 1.2).

Why it is tempting: billing thinks in orders, and the order is what Querying an Order returned;
the instanceId lives in the provisioning service.

How the reference merchant avoids it: it pushes usage right where it creates the instance, with
the instanceId it answers (``reference/conversation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from simulator.checks import Verdict
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Merchant
from simulator.reference.conversation import ConversingMerchant

from .base import MERCHANT, mutant


@dataclass
class OrderKeyedMetering(ConversingMerchant):
    def _push_usage(self, instance_id: str, fields: dict[str, str]) -> None:
        super()._push_usage(fields["orderId"], fields)  # the defect: the order, not the instance


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    current: Merchant = app.extensions[MERCHANT]  # a ConversingMerchant when given the open API
    app.extensions[MERCHANT] = OrderKeyedMetering(
        store=current.store,
        access_key=current.access_key,
        base_url=current.base_url,
        encrypt_type=current.encrypt_type,
        market=getattr(current, "market", None),
    )
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="conversation.usage-push",
    evidence="not an instance created in this run",
    verdict=Verdict.WARNED,
    rule="§8.3",
    market=True,
    billing="on-demand",
)
