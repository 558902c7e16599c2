"""newInstance succeeds with an instanceId but no appInfo.frontEndUrl.

The bug: the merchant provisions asynchronously and leaves the buyer's address out of the
answer until provisioning is done ("we do not know the URL yet"). The marketplace's debugging
requires ``instanceId`` **and** ``frontEndUrl`` (at most 512 characters) in a successful
subscription answer (docs/protocol.md §4.1, §10.4 D4): the buyer has nowhere to go.

Why it is tempting: the v2 newInstance page's answer table was not readable, and queryInstance
lists appInfo as optional.

How the reference merchant avoids it: the address is derived from the instanceId it generates
at once (``activities.Merchant.new_instance``), so it is known before provisioning ends.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.protocol import ResultCode
from simulator.reference import MerchantConfig, create_app

from .base import mutant, rewrite_answers


def without_front_end_url(body: dict[str, Any]) -> dict[str, Any] | None:
    app_info = body.get("appInfo")
    if body.get("resultCode") != ResultCode.SUCCESS or not isinstance(app_info, dict) or "info" in body:
        return None
    return {**body, "appInfo": {k: v for k, v in app_info.items() if k != "frontEndUrl"}}  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    rewrite_answers(app, without_front_end_url)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="contract.console-members",
    evidence="must carry appInfo.frontEndUrl",
    rule="§4.1, §10.4",
    drivers=("lifecycle.test-order",),
    controls=("lifecycle.full", "contract.response-schema"),
)
