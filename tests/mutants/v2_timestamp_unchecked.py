"""v2 calls are checked for a valid signature but not for a fresh timestamp: replays succeed.

The bug: the merchant verifies the signature (which covers ``timestamp`` and ``nonce``) but never
compares ``timestamp`` with its own clock. A captured call, say a releaseInstance, can then be
replayed hours later and is still accepted: the signature is genuine, only old.

Why it is tempting: the signature already "includes the timestamp", which sounds like
protection; and a window check makes calls fail when the merchant's clock drifts, so it is the
first thing removed when such a failure is hard to explain.

How the reference merchant avoids it: after the signature, ``produce.produce_v2`` calls
``simulator.protocol.is_fresh`` (60 s window, doc) and answers 000002 for a stale call; its
host keeps its clock in sync with NTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, request

from simulator.protocol import sign_v2, verify_v2
from simulator.reference import MerchantConfig, create_app
from simulator.reference.produce import read_json_object

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def without_freshness_check(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            # The defect, simulated: a genuine signature is enough; the call's age never matters.
            # A correctly signed call is handed on as if it had been sent just now.
            body = read_json_object()
            args = request.args.copy()
            timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
            if body is not None and verify_v2(
                body, config.access_key, timestamp, nonce, args.get("signature")
            ):
                args["timestamp"] = str(int(time.time() * 1000))
                args["signature"] = sign_v2(body, config.access_key, args["timestamp"], nonce)
                request.args = args
            return view()

        return produce_v2

    wrap_view(app, "produce.produce_v2", without_freshness_check)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v2-timestamp-stale",
    evidence="a timestamp outside the 60 s window must be refused",
    rule="§2",
    controls=("security.v2-signature-wrong",),
)
