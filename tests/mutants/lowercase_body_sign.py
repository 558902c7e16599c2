"""v1 answers carry a correct signature under the header name ``body-sign``.

The bug: the merchant's framework (or a proxy in front of it, HTTP/2 in particular) writes
header names in lower case. HTTP says names are case-insensitive (RFC 9110 §5.1), but the
marketplace's interface debugging looks for the exact name ``Body-Sign`` and fails the call
otherwise ([S32], docs/protocol.md §2.3, §10.4 D1).

Why it is tempting: every HTTP client the developer tries reads the header either way.

How the reference merchant avoids it: ``produce.json_response`` sets ``Body-Sign`` exactly so,
over the exact bytes it sends.
"""

from __future__ import annotations

from flask import Flask, Response

from simulator.reference import MerchantConfig, create_app

from .base import mutant


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    @app.after_request
    def lower_case_names(response: Response) -> Response:
        value = response.headers.pop("Body-Sign", None)
        if value is not None:
            response.headers["body-sign"] = value  # the defect: the signature is right, the name is not
        return response

    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v1-body-sign",
    evidence="sent as body-sign; the marketplace's debugging requires the exact case Body-Sign",
    rule="§2.3",
    protocol="v1",
    controls=("security.v1-authtoken-wrong",),
)
