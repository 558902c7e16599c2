"""v2 signatures are verified over a canonical body with non-ASCII characters escaped as \\uXXXX.

The bug: the merchant builds the canonical body with its language's default JSON settings:
Python's ``json.dumps`` writes ``"测试客户"`` as ``"\\u6d4b\\u8bd5\\u5ba2\\u6237"`` unless told
``ensure_ascii=False``, and some Java libraries escape too. The marketplace signs the raw UTF-8
form, so every call whose body holds a Chinese customer name (most of them, on a Chinese
marketplace) is refused with 000001, while an ASCII-only test order passes.

Why it is tempting: the default serialiser produces valid, equivalent JSON, and test data is
often ASCII.

How the reference merchant avoids it: it verifies with ``simulator.protocol.verify_v2``, whose
``canonical_body`` uses ``ensure_ascii=False`` and compact separators, as protocol.md §2 says.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, verify_v2_with_own_canonical_form


def escaped_canonical_body(body: dict[str, Any]) -> str:
    # The defect: json.dumps' default ensure_ascii=True writes 测 as \u6d4b.
    return json.dumps(
        {name: body[name] for name in sorted(body) if body[name] is not None}, separators=(",", ":")
    )


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    verify_v2_with_own_canonical_form(app, config.access_key, escaped_canonical_body)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.test-order",
    evidence="got resultCode 000001",
    rule="§2",
    xfail=(
        "no published V2 call carries a non-ASCII value (docs/protocol.md §4: newInstance has five "
        "ID fields, A6), so no check can expose this canonical-form defect on the produce interface"
    ),
)
