"""User-authorization sync (the Kit interfaces): tenants, applications, users and organisations.

Every add and every delete is idempotent: the marketplace resends, and a resent add of what is
already there, or delete of what is already gone, must answer success (doc).
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, request

from simulator.protocol import DecryptionError, ResultCode, decrypt_client_secret, is_fresh, verify_sync
from simulator.protocol.vocabulary import ADD, REMOVING_FLAGS, SYNC_CALLS
from simulator.reference.activities import answer
from simulator.reference.produce import first_violation, json_response, read_json_object
from simulator.reference.store import MerchantStore

bp = Blueprint("sync", __name__)


@bp.post("/produceAPI/v2/authSync", defaults={"call": "authSync"})
@bp.post("/produceAPI/<call>")
def sync(call: str) -> Response:
    """The Kit calls on their published paths (docs/protocol.md §7.1, A36): ``/produceAPI/<name>``
    for the older generation, ``/produceAPI/v2/authSync`` for the newer authSync."""
    access_key = current_app.config["KOOSIM_ACCESS_KEY"]

    def reply(body: dict[str, object]) -> Response:
        """Signed with Body-Sign as V1 answers are: the tenantSync page's example answer carries
        one [S56]; the key (the seller's access key here) is ASSUMPTION U25 (§2.4)."""
        return json_response(body, sign_with=access_key)

    if call not in SYNC_CALLS:
        return reply(answer(ResultCode.INVALID_PARAMETER, f"unknown sync call {call!r}"))
    timestamp, nonce = request.headers.get("x-timestamp"), request.headers.get("x-nonce")
    if not timestamp or not nonce:
        return reply(answer(ResultCode.INVALID_PARAMETER, "x-timestamp and x-nonce are required"))
    body = read_json_object()
    if body is None:
        return reply(answer(ResultCode.INVALID_PARAMETER, "the body is not a JSON object"))
    sync_key = current_app.config["KOOSIM_SYNC_KEY"]
    if not verify_sync(body, sync_key, timestamp, nonce, request.headers.get("x-sign")):
        return reply(answer(ResultCode.AUTH_FAILED, "x-sign verification failed"))
    if not is_fresh(timestamp, now_ms=int(time.time() * 1000)):
        return reply(answer(ResultCode.INVALID_PARAMETER, "x-timestamp is outside the 60 s window"))
    if (problem := first_violation(body, "sync", call)) is not None:
        return reply(answer(ResultCode.INVALID_PARAMETER, problem))
    store: MerchantStore = current_app.extensions["koosim.merchant"].store
    return reply(_SYNC_HANDLERS[call](store, body))


def _scope(body: dict[str, Any]) -> tuple[str, str]:
    return body["instanceId"], body["tenantId"]


def _add_or_remove(
    store: MerchantStore, kind: str, body: dict[str, Any], scope: str, names: list[str]
) -> None:
    if body.get("flag", ADD) not in REMOVING_FLAGS:  # add, or modify (kept as an add: idempotent)
        store.add_entries(kind, *_scope(body), scope, names)
    else:
        store.remove_entries(kind, *_scope(body), scope, names)


def tenant_sync(store: MerchantStore, body: dict[str, Any]) -> dict[str, object]:
    _add_or_remove(store, "tenant", body, "", [body["tenantId"]])
    return answer(ResultCode.SUCCESS)


def application_sync(store: MerchantStore, body: dict[str, Any]) -> dict[str, object]:
    if body.get("flag", ADD) == ADD and body.get("clientSecret"):
        try:
            decrypt_client_secret(body["clientSecret"], current_app.config["KOOSIM_RSA_PRIVATE_KEY"])
        except (DecryptionError, ValueError):
            return answer(ResultCode.SECRET_PROBLEM)
    _add_or_remove(store, "app", body, "", [body["appId"]])
    return answer(ResultCode.SUCCESS)


def auth_sync(store: MerchantStore, body: dict[str, Any]) -> dict[str, object]:
    names = [user["userName"] for user in body.get("userList", [])]
    _add_or_remove(store, "user", body, body["appId"], names)
    return answer(ResultCode.SUCCESS)


def single_org_sync(store: MerchantStore, body: dict[str, Any]) -> dict[str, object]:
    _add_or_remove(store, "org", body, "", [body["orgCode"]])
    return answer(ResultCode.SUCCESS)


def all_org_sync(store: MerchantStore, body: dict[str, Any]) -> dict[str, object]:
    """A full organisation sync replaces the tenant's organisation tree."""
    if not isinstance(body.get("orgInfo"), str):
        return answer(ResultCode.INVALID_PARAMETER, "orgInfo must be a JSON string")
    store.remove_entries("org", *_scope(body), "")
    try:  # orgInfo is a JSON *string* holding the flat list (docs/protocol.md §7.6)
        orgs = json.loads(body["orgInfo"])
        codes = [org["orgCode"] for org in orgs]
    except (ValueError, TypeError, KeyError):
        return answer(ResultCode.INVALID_PARAMETER, "orgInfo is not a JSON array of departments")
    store.add_entries("org", *_scope(body), "", codes)
    return answer(ResultCode.SUCCESS)


_SYNC_HANDLERS = {
    "tenantSync": tenant_sync,
    "applicationSync": application_sync,
    "authSync": auth_sync,
    "singleOrgSync": single_org_sync,
    "allOrgSync": all_org_sync,
}
