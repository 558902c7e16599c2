"""The merchant knows the activity ``upgrade`` but not ``upgradeInstance``.

The bug: the merchant was written from the V1 guide (or an old summary) and dispatches on
``upgrade``. The V2 produce interface sends ``upgradeInstance`` (docs/protocol.md §4.3; ``upgrade``
is the V1 name, §5.7), which this merchant answers as an unknown activity: every paid upgrade
fails.

Why it is tempting: the V1 page is titled "Upgrade" and the activity names look alike.

How the reference merchant avoids it: its V2 handlers are keyed on the V2 activity names.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from simulator.reference import MerchantConfig, create_app

from .base import mutant, refuse_calls


def unknown_upgrade_instance(fields: dict[str, Any]) -> str | None:
    if fields.get("activity") == "upgradeInstance":
        return "unknown activity 'upgradeInstance'"  # the defect: only 'upgrade' is handled
    return None


def build(config: MerchantConfig) -> Flask:
    app = create_app(config)
    refuse_calls(app, "produce.produce_v2", unknown_upgrade_instance)
    return app


MUTANT = mutant(
    __name__,
    build,
    catches="lifecycle.full",
    evidence="got resultCode 000002",
    rule="§4.3",
)
