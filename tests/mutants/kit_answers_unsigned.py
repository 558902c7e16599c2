"""Kit answers carry no Body-Sign header.

The bug: the merchant signs its produce answers but not its Kit answers. The older tenantSync
page's example answer carries a ``Body-Sign`` header ([S56], docs/protocol.md §2.4): Kit answers
are signed like V1 answers. Which key signs them is not published (U25, A37), so koosim reports
this as a warning.

Why it is tempting: the Kit is a separate integration, often written later by someone else.

How the reference merchant avoids it: every Kit answer goes through ``json_response`` with the
access key, as the V1 answers do.
"""

from __future__ import annotations

from flask import Flask, Response, request

from simulator.checks import Verdict
from simulator.reference import MerchantConfig, create_app

from .base import mutant


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    @app.after_request
    def unsigned_kit_answers(response: Response) -> Response:
        if request.method == "POST" and request.path.rsplit("/", 1)[-1].endswith("Sync"):
            response.headers.pop("Body-Sign", None)  # the defect
        return response

    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="security.sync-body-sign",
    evidence="the answer has no Body-Sign header",
    rule="§2.4, A37, U25",
    controls=("idempotency.user-sync-add",),
)
