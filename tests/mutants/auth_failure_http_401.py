"""A refused call is answered HTTP 401 instead of HTTP 200 with resultCode 000001.

The bug: the signature is verified in a security filter (Spring Security, a Flask
``before_request``) that follows web conventions and answers 401 Unauthorized. The
marketplace reads ``resultCode`` from an HTTP 200 answer; a 401 counts as a failing
interface, not as a refusal, and is retried and counted against the product.

Why it is tempting: 401 is what every web framework and every REST guide does for a bad
credential, and the body still says 000001.

How the reference merchant avoids it: every refusal goes through ``produce.json_response``,
HTTP 200 with the result code in the body (protocol.md §6); only routing errors (404, 405)
keep their status.
"""

from __future__ import annotations

from flask import Flask, Response

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import answer_body, mutant


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    @app.after_request
    def unauthorized_status(response: Response) -> Response:
        body = answer_body(response)
        if body is not None and body.get("resultCode") == ResultCode.AUTH_FAILED:
            response.status_code = 401  # the defect
        return response

    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="contract.http-200-json",
    evidence="HTTP 401 instead of 200",
    rule="§6",
    drivers=("security.v2-signature-wrong",),
)
