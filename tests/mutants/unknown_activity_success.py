"""An activity the merchant does not know is answered 000000 instead of 000002.

The bug: the merchant dispatches on ``activity`` with a switch whose default branch answers
success ("so the marketplace stops asking"). When the marketplace introduces an activity, or
sends one the merchant never implemented, it is told the work was done though nothing happened.

Why it is tempting: a default of success keeps the interface "green" in the marketplace's
console, and a failure seems worse than a silent no-op.

How the reference merchant avoids it: ``produce.produce_v2`` answers 000002 "unknown activity"
for anything not in ``activities.HANDLERS`` (protocol.md §6).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import HANDLERS, answer
from simulator.reference.produce import json_response

from .base import activity_of_request, answer_body, mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def success_by_default(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            response = view()
            body = answer_body(response)
            refused = body is not None and body.get("resultCode") == ResultCode.INVALID_PARAMETER
            if refused and activity_of_request() not in HANDLERS:
                return json_response(answer(ResultCode.SUCCESS))  # the defect: switch default
            return response

        return produce_v2

    wrap_view(app, "produce.produce_v2", success_by_default)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.invalid-parameters",
    evidence="an unknown activity: expected a refusal",
    rule="§6",
)
