"""v1: the query string is URL-decoded twice, so a '+' in a value becomes a space and valid calls are refused.

The bug: the web framework has already decoded the query parameters, and the merchant decodes
them once more (``URLDecoder.decode(request.getParameter(…))``, ``unquote_plus`` in Python)
before computing the authToken. A '+' — common in v1, where ``email`` and ``mobilePhone`` are
base64 ciphertext — turns into a space, the token no longer matches, and the marketplace's
perfectly valid call is answered 000001. It only happens for some buyers (those whose
ciphertext or name holds a '+'), so it looks like a random failure in production.

Why it is tempting: the docs say "URL-decoded values" and decoding once more looks harmless;
test data without '+' never shows the problem.

How the reference merchant avoids it: ``produce.produce_v1`` signs over
``request.args.to_dict()``, values decoded exactly once by the framework (protocol.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_plus

from flask import Flask, Response, request
from werkzeug.datastructures import MultiDict

from simulator.reference import MerchantConfig, create_app

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def decoding_twice(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v1() -> Response:
            # The defect: every parameter but the token itself is decoded a second time.
            request.args = MultiDict(
                {
                    name: value if name == "authToken" else unquote_plus(value)
                    for name, value in request.args.items()
                }
            )
            return view()

        return produce_v1

    wrap_view(app, "produce.produce_v1", decoding_twice)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="security.v1-authtoken-encoded-values",
    evidence="with '+' in its values must be accepted",
    rule="§3",
    protocol="v1",
    controls=("security.v1-authtoken-wrong",),
)
