"""User-authorization sync calls are never authenticated: any x-sign, or none, is accepted.

The bug: the merchant verifies signatures in a filter mapped to the produce URL
(``/produceAPI``) only; the Kit sync calls arrive on ``/produceAPI/v2/tenantSync``, ``…/authSync``
and so on, which the mapping does not cover, so they reach the handlers unchecked. Anyone can
then add users to a buyer's tenant.

Why it is tempting: the sync interface came later than the produce interface, has its own key
and its own (simpler) signature, and the produce filter "already does security".

How the reference merchant avoids it: ``sync.sync`` verifies ``x-sign`` with
``simulator.protocol.verify_sync`` and the sync key before it reads the body's fields.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request

from simulator.checks import Verdict
from simulator.protocol import sign_sync
from simulator.reference import MerchantConfig, create_app
from simulator.reference.produce import read_json_object

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def without_signature_check(view: Callable[[str], Response]) -> Callable[[str], Response]:
        def sync(call: str) -> Response:
            # The defect, simulated: whatever x-sign arrived is treated as the right one.
            body = read_json_object()
            if body is not None:
                timestamp = request.headers.get("x-timestamp", "")
                nonce = request.headers.get("x-nonce", "")
                request.environ["HTTP_X_SIGN"] = sign_sync(body, config.sync_key, timestamp, nonce)
            return view(call)

        return sync

    wrap_view(app, "sync.sync", without_signature_check)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.sync-signature-wrong",
    evidence="a wrong x-sign must be refused",
    rule="§4",
)
