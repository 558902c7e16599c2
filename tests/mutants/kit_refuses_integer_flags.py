"""Kit sync calls with integer flag and testFlag are refused.

The bug: the merchant binds sync bodies as string maps (as Huawei's V2 sample merchant binds
produce bodies) and refuses the JSON numbers the Kit pages send: ``flag`` and ``testFlag`` are
Integer(2), and the tenantSync example sends ``"flag": 1, "testFlag": 0`` (docs/protocol.md §7.1,
A39). Every user, tenant and department sync fails.

Why it is tempting: every produce-interface value is a string.

How the reference merchant avoids it: its sync contracts take the integers the pages type.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def integer_flags(fields: dict[str, Any]) -> str | None:
    numbers = [name for name in ("flag", "testFlag") if isinstance(fields.get(name), int)]
    return f"{', '.join(numbers)} must be a string" if numbers else None  # the defect


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "sync.sync", integer_flags)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="idempotency.user-sync-add",
    evidence="got resultCode 000002",
    rule="§7.1, A39",
)
