"""newInstance checks "exists?" then inserts: concurrent copies of one order each create an instance.

The bug: the merchant looks the order line up, finds nothing, provisions (which takes a moment)
and then records the instance, with no unique constraint to stop a second record. A resend that
arrives after the first copy finished is answered correctly, so sequential tests pass; but the
marketplace can deliver copies at the same moment (it resends when its deadline passes, while
the first copy is still provisioning), and every copy that looked before any of them recorded
creates its own instance.

Why it is tempting: "if not found: create" reads as idempotent, and it is, one call at a time.

How the reference merchant avoids it: the check and the insert are one statement under a
UNIQUE (order_id, order_line_id) constraint (``store.py``, ``INSERT … ON CONFLICT DO NOTHING``
in a ``BEGIN IMMEDIATE`` transaction); a losing copy reads back the winner's row.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from simulator.checks import Verdict
from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant

PROVISIONING_SECONDS = 0.2
"""How long creating the tenant takes: the window in which concurrent copies all look first."""


@dataclass
class CheckThenInsertMerchant(Merchant):
    provisioned: dict[tuple[str, str], Answer] = field(default_factory=dict)
    """The merchant's own order table, without a unique constraint and without a lock."""

    def new_instance(self, fields: dict[str, str]) -> Answer:
        line = (fields["orderId"], fields["orderLineId"])
        if line in self.provisioned:  # check …
            return self.provisioned[line]
        time.sleep(PROVISIONING_SECONDS)  # … provision …
        # … insert: nothing stops a second row for the same order line.
        created = super().new_instance({**fields, "orderLineId": f"{line[1]}#{uuid.uuid4().hex}"})
        self.provisioned[line] = created
        return created


build = with_merchant(CheckThenInsertMerchant)


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="idempotency.new-instance-concurrent",
    evidence="concurrent copies: the same orderId + orderLineId got",
    rule="§7 seed rule",
    controls=("idempotency.new-instance-resend",),
)
