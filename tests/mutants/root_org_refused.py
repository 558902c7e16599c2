"""singleOrgSync refuses a root department (empty parentCode).

The bug: the merchant's organisation table has ``parent_code NOT NULL`` with a foreign key, so
the handler insists on a non-empty parentCode and answers 000002 without one. Every tenant's
top-level department arrives without a parent; the sync fails for it, and for every department
below it, and the administrator is told the directory sync failed.

Why it is tempting: in the merchant's own model every department has a parent (the company),
and the sample payloads show a nested department.

How the reference merchant avoids it: it stores organisations flat by orgCode and accepts an
empty parentCode as a root (contracts/sync/singleOrgSync.request.json: parentCode optional).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response

from simulator.checks import Verdict
from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import ADD
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import answer
from simulator.reference.produce import json_response, read_json_object

from .base import mutant, wrap_view


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)

    def parent_required(view: Callable[[str], Response]) -> Callable[[str], Response]:
        def sync(call: str) -> Response:
            body = read_json_object() or {}
            if call == "singleOrgSync" and body.get("flag", ADD) == ADD and not body.get("parentCode"):
                return json_response(
                    answer(ResultCode.INVALID_PARAMETER, "parentCode is required")
                )  # the defect
            return view(call)

        return sync

    wrap_view(app, "sync.sync", parent_required)
    return app


MUTANT = mutant(
    __name__,
    build,
    verdict=Verdict.WARNED,
    catches="sync.directory",
    evidence="singleOrgSync add must succeed",
    rule="§8",
)
