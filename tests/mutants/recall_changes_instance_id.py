""" "View Resource Details" on a renewed or upgraded order gets a new instanceId.

The bug: the merchant finds an order's instance only while the instance is as it was bought
(first expiry, first specification, not frozen). The buyer's "View Resource Details" button
re-calls newInstance for an existing order (V1, docs/protocol.md §5.1 [S46]); after a renewal or
an upgrade the lookup misses, and the merchant provisions a second tenant and answers its
instanceId. The buyer sees an empty account, and the marketplace now knows two instances.

Why it is tempting: resends are tested right after the purchase, when the lookup still works;
nobody re-sends a subscription a month later.

Only a warning: [S46] covers the re-call for the order as bought; that the marketplace re-calls
for a renewed, frozen or upgraded instance is ASSUMPTION U13 (docs/protocol.md §12).

How the reference merchant avoids it: the instance is keyed on the order (UNIQUE on orderId +
orderLineId in ``reference/store.py``) whatever happened to it since, so every re-call reads
back the same row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class FirstStateLookupMerchant(Merchant):
    changed: set[str] = field(default_factory=set)

    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        self.changed.add(fields["instanceId"])
        return super().refresh_instance(fields)

    def upgrade_instance(self, fields: dict[str, str]) -> Answer:
        self.changed.add(fields["instanceId"])
        return super().upgrade_instance(fields)

    def update_instance_status(self, fields: dict[str, str]) -> Answer:
        self.changed.add(fields["instanceId"])
        return super().update_instance_status(fields)

    def new_instance(self, fields: dict[str, str]) -> Answer:
        result = super().new_instance(fields)
        if result.get("instanceId") in self.changed:  # the defect: a changed instance is "not found"
            result["instanceId"] = f"inst-{uuid.uuid4().hex[:12]}"
        return result


build = with_merchant(FirstStateLookupMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="conversation.resource-details",
    evidence="changed the instanceId",
    rule="§5.1, A23, U13",
    verdict=Verdict.WARNED,
    protocol="v1",
    controls=("idempotency.new-instance-resend",),
)
