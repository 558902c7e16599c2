"""v2 signatures are verified over a canonical body that keeps null members.

The bug: the merchant sorts the body's members and serialises them compactly, but forgets that
the marketplace drops members whose value is null before signing. The marketplace does send
nulls (``"saasExtendParams":null`` when the buyer filled in nothing, as in protocol.md §2's own
test vector), and each such call is refused with 000001.

Why it is tempting: "sort and serialise" is most of the rule, and the merchant's own test
bodies have no nulls.

How the reference merchant avoids it: ``simulator.protocol.canonical_body`` drops null members
before serialising (protocol.md §2).

Known gap: the simulator's orders (``simulator.model.Order.new_instance_fields``) never carry a
null member, so no check catches this mutant yet (its gallery test is an expected failure; see
docs/mutants.md).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, verify_v2_with_own_canonical_form


def null_keeping_canonical_body(body: dict[str, Any]) -> str:
    # The defect: members whose value is null are not dropped.
    return json.dumps({name: body[name] for name in sorted(body)}, ensure_ascii=False, separators=(",", ":"))


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    verify_v2_with_own_canonical_form(app, config.access_key, null_keeping_canonical_body)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.test-order",
    evidence="got resultCode 000001",
    rule="§2",
    xfail=(
        "no published V2 call carries a null member (docs/protocol.md §4: newInstance has five "
        "ID fields, A6), so no check can expose this canonical-form defect on the produce interface"
    ),
)
