"""Answers are JSON text served as Content-Type text/html.

The bug: the view returns the JSON it serialised itself as a plain string (``return
json.dumps(body)`` in Flask, a ``String`` from a Spring ``@Controller``), and the framework
labels a string ``text/html``. The body is valid JSON, but the marketplace's client takes the
content type at its word and treats the answer as an error page.

Why it is tempting: a browser or curl shows exactly the expected JSON, and serialising by hand
is how a merchant controls the bytes (for Body-Sign, for key order).

How the reference merchant avoids it: ``produce.json_response`` builds a ``Response`` with
``mimetype="application/json"`` around the bytes it serialised.
"""

from __future__ import annotations

from flask import Flask, Response

from simulator.checks import Verdict
from simulator.reference import MerchantConfig, create_app

from .base import mutant


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    @app.after_request
    def served_as_html(response: Response) -> Response:
        response.mimetype = "text/html"  # the defect
        return response

    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="contract.http-200-json",
    evidence="not application/json",
    rule="§6",
    drivers=("lifecycle.test-order",),
)
