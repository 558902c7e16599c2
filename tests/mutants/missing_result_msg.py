"""Successful answers carry no resultMsg.

The bug: the answer object leaves ``resultMsg`` null on success ("there is nothing to say") and
the serialiser is configured to drop null members (Jackson ``NON_NULL``, ``exclude_none``), so
the member disappears. The contract requires it on every answer, success included.

Why it is tempting: the message looks informational, only refusals seem to need one, and
dropping nulls is a common global serialiser setting.

How the reference merchant avoids it: ``activities.answer`` always sets ``resultMsg``, to the
code's meaning when no message is given.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import mutant, rewrite_answers


def without_message_on_success(body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("resultCode") != ResultCode.SUCCESS:
        return None
    return {name: value for name, value in body.items() if name != "resultMsg"}  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    rewrite_answers(app, without_message_on_success)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="contract.result-msg",
    evidence="resultMsg is missing",
    rule="§6",
    drivers=("lifecycle.test-order",),
)
