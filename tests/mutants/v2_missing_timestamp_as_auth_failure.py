"""A v2 call without timestamp or nonce is answered 000001 (authentication) instead of 000002.

The bug: the merchant goes straight to the signature, computing it with an empty timestamp or
nonce; the result cannot match, so a call that is merely incomplete is reported as forged. The
marketplace's monitoring reads 000001 as "the keys do not match" and sends the seller looking
for a key problem that does not exist.

Why it is tempting: the call is refused either way, and one check for "is it authentic?" looks
simpler than checking each parameter first.

How the reference merchant avoids it: ``produce.produce_v2`` checks the call's shape (timestamp
and nonce present, a JSON object body) before its signature, answering 000002 for a malformed
call and 000001 only for a wrong signature (protocol.md §2).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import answer
from simulator.reference.produce import json_response

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def signature_first(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            if not request.args.get("timestamp") or not request.args.get("nonce"):
                # The defect: verify_v2(body, key, "", "", signature) fails, so: "forged".
                return json_response(answer(ResultCode.AUTH_FAILED, "signature verification failed"))
            return view()

        return produce_v2

    wrap_view(app, "produce.produce_v2", signature_first)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.v2-timestamp-missing",
    evidence="refused with resultCode 000001 (authentication failed); koosim expects 000002",
    rule="§2, §6",
)
