"""Refusals carry the whole exception text in resultMsg, far beyond its 255 characters.

The bug: the error handler puts the exception's full text (often with a stack trace or the SQL
that failed) into ``resultMsg``. The tables give resultMsg at most 255 characters (docs/protocol.md
§3.1), and the marketplace's debugging checks answer field lengths (§10.4 D5). (An answer
*without* resultMsg is fine: the tables mark it optional; this gallery's former
``missing_result_msg`` encoded the old, wrong rule.)

Why it is tempting: a detailed message helps the developer reading the marketplace's logs.

How the reference merchant avoids it: ``activities.answer`` sends short fixed messages and logs
details on its own side.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import mutant, rewrite_answers

TRACE = "Traceback (most recent call last):\n" + '  File "merchant/handlers.py", line 42, in handle\n' * 8


def with_the_whole_trace(body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("resultCode") == ResultCode.SUCCESS:
        return None
    return {**body, "resultMsg": f"{body.get('resultMsg', '')}: {TRACE}"}  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    rewrite_answers(app, with_the_whole_trace)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="contract.result-msg",
    evidence="at most 255 are allowed",
    rule="§3.1",
    drivers=("lifecycle.unknown-instance",),
    controls=("lifecycle.test-order", "contract.console-members"),
)
