"""resultCode is sent as a JSON number (0) instead of the six-digit string "000000".

The bug: the answer class declares ``int resultCode`` (or the code table is an int enum), so
the serialiser writes ``"resultCode":0`` and ``"resultCode":1``; the leading zeros, and with them
the contract, are lost. The marketplace compares strings and sees no success at all.

Why it is tempting: the codes look like numbers, and a number compares "equal" in loosely typed
test code.

How the reference merchant avoids it: ``simulator.protocol.ResultCode`` is a string enum and
``activities.answer`` puts its ``.value`` (a string) in every answer; ``contracts/`` types the
member as a string matching ``^[0-9]{6}$``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, rewrite_answers


def as_number(body: dict[str, Any]) -> dict[str, Any] | None:
    code = body.get("resultCode")
    return {**body, "resultCode": int(code)} if isinstance(code, str) else None  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    rewrite_answers(app, as_number)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="contract.result-code",
    evidence="resultCode is 0, not a string",
    rule="§6",
    drivers=("lifecycle.test-order",),
)
