"""v1 calls without an authToken are accepted: the token is checked only when there is one.

The bug: the v1 handler reads ``if authToken != null && !verify(…): refuse``. A wrong token is
refused, but a call that leaves ``authToken`` out is not checked at all, so anyone can drive the
legacy GET interface by hand, from a browser's address bar.

Why it is tempting: the guard protects against a NullPointerException, and the security test a
seller writes sends a wrong token, not none.

How the reference merchant avoids it: ``simulator.protocol.verify_v1`` returns False when
``authToken`` is missing, so ``produce.produce_v1`` answers 000001 either way.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request
from werkzeug.datastructures import MultiDict

from simulator.protocol import sign_v1
from simulator.reference import MerchantConfig, create_app

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def token_only_if_present(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v1() -> Response:
            # The defect, simulated: with no authToken at all, the call is treated as signed.
            params = request.args.to_dict()
            if "authToken" not in params and params.get("timeStamp"):
                params["authToken"] = sign_v1(params, config.access_key)
                request.args = MultiDict(params)
            return view()

        return produce_v1

    wrap_view(app, "produce.produce_v1", token_only_if_present)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v1-authtoken-wrong",
    evidence="a call without authToken must be refused",
    rule="§3",
    protocol="v1",
)
