"""User-authorization sync calls are checked for a valid x-sign but not for a fresh x-timestamp.

The bug: the merchant verifies ``x-sign`` (which covers ``x-timestamp`` and ``x-nonce``) but
never compares ``x-timestamp`` with its clock, so a recorded authSync can be replayed at any
later time: re-adding a user the administrator has since removed, for instance.

Why it is tempting: as for the produce interface, a signature that "includes the timestamp"
feels like enough, and the sync interface is often written from a shorter sample that leaves
the window check out.

How the reference merchant avoids it: ``sync.sync`` calls ``simulator.protocol.is_fresh`` after
the signature and answers 000002 outside the 60 s window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, request

from simulator.checks import Verdict
from simulator.protocol import sign_sync, verify_sync
from simulator.reference import MerchantConfig, create_app
from simulator.reference.produce import read_json_object

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def without_freshness_check(view: Callable[[str], Response]) -> Callable[[str], Response]:
        def sync(call: str) -> Response:
            # The defect, simulated: a genuinely signed call is handed on as if sent just now.
            body = read_json_object()
            timestamp = request.headers.get("x-timestamp", "")
            nonce = request.headers.get("x-nonce", "")
            signature = request.headers.get("x-sign")
            if body is not None and nonce and verify_sync(body, config.sync_key, timestamp, nonce, signature):
                now = str(int(time.time() * 1000))
                request.environ["HTTP_X_TIMESTAMP"] = now
                request.environ["HTTP_X_SIGN"] = sign_sync(body, config.sync_key, now, nonce)
            return view(call)

        return sync

    wrap_view(app, "sync.sync", without_freshness_check)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.sync-timestamp-stale",
    evidence="an x-timestamp outside the 60 s window must be refused",
    rule="§4",
    controls=("security.sync-signature-wrong",),
)
