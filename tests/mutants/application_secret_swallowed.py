"""applicationSync answers success when the clientSecret cannot be decrypted.

The bug: the merchant wraps the RSA decryption in a try/except that logs the error and carries
on (or stores the ciphertext to decrypt "later"), then answers 000000. The marketplace believes
the application is set up; the first single sign-on of a real user then fails, far from the
cause. The protocol has a code for exactly this case, 000101, which makes the marketplace tell
the administrator.

Why it is tempting: a sync call that fails is reported to the buyer's administrator, so
answering success looks kinder, and key mix-ups (the wrong key pair uploaded) happen mostly in
production, not in the test that was written for the happy path.

How the reference merchant avoids it: ``sync.application_sync`` decrypts the clientSecret with
its RSA private key before storing anything and answers 000101 when that fails.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import answer
from simulator.reference.produce import json_response

from .base import answer_body, mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def swallowing_secret_errors(view: Callable[[str], Response]) -> Callable[[str], Response]:
        def sync(call: str) -> Response:
            response = view(call)
            body = answer_body(response)
            if body is not None and body.get("resultCode") == ResultCode.SECRET_PROBLEM:
                return json_response(answer(ResultCode.SUCCESS))  # the defect: log and carry on
            return response

        return sync

    wrap_view(app, "sync.sync", swallowing_secret_errors)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="sync.application-secret",
    evidence="a clientSecret that does not decrypt must get 000101",
    rule="§8",
)
