"""getLicenseAsync issues a new licence for every resend of the same request.

The bug: the merchant treats getLicenseAsync as "generate a licence, return it" and never looks
at the eventId (and device fingerprint) the marketplace sends to tell a repeat from a new
request. The getLicenseAsync page says the marketplace may resend and, "for the same request",
the merchant returns the same License and creates none (docs/protocol.md §6.2, [S52]). Every
resend after an interrupted transfer mints another valid licence: the buyer holds one, the
merchant's records hold several.

Why it is tempting: the call is named "async", so it reads like a fire-and-forget job queue;
the eventId looks like a log correlation id, not an idempotency key.

How the reference merchant avoids it: ``store.MerchantStore.create_license_async`` inserts under
the request's key (eventId + deviceFingerprint, ``ON CONFLICT DO NOTHING``) and returns the
licence the first copy stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from simulator.reference.activities import Answer, Merchant

from .base import mutant, with_merchant


@dataclass
class LicencePerCallMerchant(Merchant):
    def get_license_async(self, fields: dict[str, str]) -> Answer:
        # The defect: every call counts as a new request, whatever its eventId.
        return super().get_license_async({**fields, "eventId": uuid.uuid4().hex})


build = with_merchant(LicencePerCallMerchant)


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.license-async-resend",
    evidence="different licences",
    rule="§6.2",
)
