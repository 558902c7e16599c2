"""v2 calls without a signature are accepted: the signature is checked only when there is one.

The bug: the verification reads ``if signature and not verify(…): refuse``, so a call that
simply leaves the ``signature`` parameter out skips the check altogether. Every correctly
signed call is verified, every wrongly signed call is refused, and an unsigned call goes
through.

Why it is tempting: the guard looks defensive ("don't crash on a missing parameter"), and the
tests that exercise security send a *wrong* signature, never none.

How the reference merchant avoids it: ``simulator.protocol.verify_v2`` returns False for a
missing signature, so ``produce.produce_v2`` answers 000001 whether it is wrong or absent.
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

    def signature_only_if_present(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            # The defect, simulated: with no signature at all, the call is treated as signed.
            body = read_json_object()
            if body is not None and not request.args.get("signature"):
                args = request.args.copy()
                args["signature"] = sign_v2(
                    body, config.access_key, args.get("timestamp", ""), args.get("nonce", "")
                )
                request.args = args
            return view()

        return produce_v2

    wrap_view(app, "produce.produce_v2", signature_only_if_present)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v2-signature-missing",
    evidence="a call without signature must be refused",
    rule="§2",
    controls=("security.v2-signature-wrong",),
)
