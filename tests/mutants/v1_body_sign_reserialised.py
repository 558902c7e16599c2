"""v1: Body-Sign is computed over one serialisation of the answer and another one is sent.

The bug: the merchant builds the answer object, serialises it to compute the Body-Sign header
(``JSON.toJSONString(result)``, ``json.dumps(body)``), and then lets the framework serialise the
object again for the response (Jackson, ``jsonify``), with other spacing or member order. The
marketplace verifies the signature over the bytes it received, which are not the bytes that
were signed, and rejects every v1 answer.

Why it is tempting: both serialisations are "the same JSON", and a test that parses the answer
and re-serialises it before checking the signature passes.

How the reference merchant avoids it: ``produce.json_response`` serialises once, signs those
bytes and sends exactly those bytes.
"""

from __future__ import annotations

import json

from flask import Flask, Response

from simulator.protocol import sign_body
from simulator.reference import MerchantConfig, create_app

from .base import answer_body, mutant


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    @app.after_request
    def sign_another_serialisation(response: Response) -> Response:
        body = answer_body(response)
        if body is None or "Body-Sign" not in response.headers:
            return response
        # The defect: the signature covers json.dumps' default form ("a": "b", with spaces),
        # the body on the wire stays compact.
        response.headers["Body-Sign"] = sign_body(json.dumps(body).encode("utf-8"), config.access_key)
        return response

    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v1-body-sign",
    evidence="Body-Sign does not verify over the answer's bytes",
    rule="§3",
    protocol="v1",
)
