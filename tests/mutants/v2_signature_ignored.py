"""v2 produce calls are never authenticated: any signature, or none, is accepted.

The bug: the merchant does not verify the ``signature`` query parameter. Typically the check
was switched off while debugging against a hand-written curl call ("the signature never matches,
I'll fix it later") and shipped that way, or the servlet filter that verifies it is mapped to a
path the produce URL does not match. Anyone who learns the produce URL can then order, renew,
freeze or release instances in the seller's name.

Why it is tempting: the marketplace only ever sends correctly signed calls, so every functional
test still passes, and getting the canonical body right (sorted, nulls dropped, raw UTF-8) is
the fiddliest part of the integration.

How the reference merchant avoids it: ``produce.produce_v2`` verifies the signature with
``simulator.protocol.verify_v2`` before it reads any field, and answers 000001 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request

from simulator.protocol import sign_v2
from simulator.reference import MerchantConfig, create_app
from simulator.reference.produce import read_json_object

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def without_signature_check(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            # The defect, simulated: whatever signature arrived is treated as the right one.
            body = read_json_object()
            if body is not None:
                args = request.args.copy()
                args["signature"] = sign_v2(
                    body, config.access_key, args.get("timestamp", ""), args.get("nonce", "")
                )
                request.args = args
            return view()

        return produce_v2

    wrap_view(app, "produce.produce_v2", without_signature_check)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v2-signature-wrong",
    evidence="a wrong signature must be refused",
    rule="§2",
)
