"""The protocol's words, named once: the activities of the produce interface (v2, v1), the
license activities, the user-authorization sync calls and the Kit flags (protocol.md §1, §7, §8).

Every module that asks "is this a license call?", "which activities place an order?" or "is
this sync body an add?" asks here, so that a new activity is added in one place.
"""

from __future__ import annotations

from typing import Any

INSTANCE_CHANGES = frozenset(
    {"refreshInstance", "updateInstanceStatus", "releaseInstance", "upgradeInstance", "changeInstanceCheck"}
)
"""Produce activities about an instance that already exists, which change it (or check a change)."""
PRODUCE_V1 = frozenset({"newInstance", "queryInstance"}) | INSTANCE_CHANGES
"""The produce activities of the v1 (legacy, authToken) interface."""
LICENSE_CALLS = ("getLicense", "refreshLicense", "expireLicense", "releaseLicense")
"""The license activities (V2-signed or in the authToken form, docs/protocol.md §6.1, A56), in
the order a license code lives through them."""
LICENSE_ACTIVITIES = frozenset(LICENSE_CALLS)
LICENSE_CHANGES = LICENSE_ACTIVITIES - {"getLicense"}
"""License activities about a license code an earlier getLicense gave."""
LICENSE_ASYNC = "getLicenseAsync"
"""The asynchronous License opening (docs/protocol.md §6.2): V2 only, keyed on ``eventId`` +
``deviceFingerprint``; sent only to a product that declares it (``--license-call``, A41)."""
PRODUCE_V2 = PRODUCE_V1 | LICENSE_ACTIVITIES
"""The produce activities of the v2 interface: v1's plus the license activities."""
ORDERING_ACTIVITIES = frozenset({"newInstance", "getLicense"})
"""Activities that place a new order (an instance or a license code) and so may be resent."""
APPINFO_ANSWERS = frozenset({"newInstance", "queryInstance"})
"""Activities whose answer carries encrypted appInfo secrets (queryInstance: one per ``info[]``)."""

SYNC_CALLS = ("tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync")
"""The user-authorization sync calls (joint-operation SaaS with Kit), each its own path."""

ADD, DELETE, MODIFY, CANCEL = 1, 0, 2, 3
"""A Kit body's ``flag``, an Integer(2) sent as a JSON number (docs/protocol.md §7.1, A39): add,
delete, modify (authSync and singleOrgSync) and cancel authorisation (authSync only, §7.4)."""
REMOVING_FLAGS = frozenset({DELETE, CANCEL})
"""The flags that take something away: a delete, or a user's authorisation cancelled."""

KIT_PATHS = {
    call: f"/{call}" for call in ("tenantSync", "applicationSync", "singleOrgSync", "allOrgSync")
} | {"authSync": "/v2/authSync"}
"""Each Kit call's path below the produce URL (docs/protocol.md §7.1, A36): the older generation's
``/produceAPI/<name>``, authSync on the newer ``/produceAPI/v2/authSync`` (its page's user list)."""


def app_infos(answer: Any) -> list[Any]:
    """Where an answer carries its appInfo: queryInstance one per ``info[]`` item, newInstance its own."""
    if not isinstance(answer, dict):
        return []
    info = answer.get("info")
    if isinstance(info, list):
        return [item.get("appInfo") for item in info if isinstance(item, dict)]
    return [answer.get("appInfo")]


def is_license(activity: str | None) -> bool:
    """Whether ``activity`` is one of the license activities (getLicense and the changes of a
    code, and getLicenseAsync)."""
    return activity in LICENSE_ACTIVITIES or activity == LICENSE_ASYNC
