"""The produce interface: v2 (signed POST JSON) and v1 (GET with an authToken) on one URL.

Every refusal is still HTTP 200 with a JSON body: the marketplace reads ``resultCode``, never
the status line. Order of checks: the call's shape, then its signature, then its freshness,
then its fields, and only then the business logic.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from simulator.contracts import validate
from simulator.protocol import (
    DecryptionError,
    EncryptType,
    ResultCode,
    decrypt,
    is_fresh,
    sign_body,
    verify_v1,
    verify_v2,
)
from simulator.protocol.signing import V1_TIMESTAMP_FORMAT
from simulator.protocol.vocabulary import LICENSE_ACTIVITIES
from simulator.reference.activities import PRODUCE_ACTIVITIES, V2_ACTIVITIES, Answer, Merchant, answer

bp = Blueprint("produce", __name__)

V1_ENCRYPTED_FIELDS = ("email", "mobilePhone")
"""V1 request values the marketplace sends encrypted, under the seller's encryption choice
(``MerchantConfig.encrypt_type``: 1 AES-256, 2 AES-128): ASSUMPTION U20 (docs/protocol.md §2.7)."""


def json_response(body: Answer, *, sign_with: str | None = None) -> Response:
    """Serialise once, so that a Body-Sign covers exactly the bytes that go on the wire."""
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    response = Response(payload, status=200, mimetype="application/json")
    if sign_with is not None:
        response.headers["Body-Sign"] = sign_body(payload, sign_with)
    return response


def read_json_object() -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is anything else."""
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def first_violation(fields: dict[str, Any], family: str, name: str) -> str | None:
    violations = validate(fields, family, name, "request")
    return f"{violations[0].path}: {violations[0].message}" if violations else None


def _merchant() -> Merchant:
    merchant: Merchant = current_app.extensions["koosim.merchant"]
    return merchant


@bp.post("/produceAPI")
def produce_v2() -> Response:
    config = current_app.config

    def reply(answer_body: Answer) -> Response:
        """Signed with Body-Sign as on v1: the stricter reading of A8 (docs/protocol.md §2.3)."""
        return json_response(answer_body, sign_with=config["KOOSIM_ACCESS_KEY"])

    if "v2" not in config["KOOSIM_PROTOCOLS"]:
        return reply(answer(ResultCode.INVALID_PARAMETER, "this merchant speaks only v1 (GET)"))
    timestamp, nonce = request.args.get("timestamp"), request.args.get("nonce")
    if not timestamp or not nonce:
        return reply(answer(ResultCode.INVALID_PARAMETER, "timestamp and nonce are required"))
    body = read_json_object()
    if body is None:
        return reply(answer(ResultCode.INVALID_PARAMETER, "the body is not a JSON object"))
    if not verify_v2(body, config["KOOSIM_ACCESS_KEY"], timestamp, nonce, request.args.get("signature")):
        return reply(answer(ResultCode.AUTH_FAILED, "signature verification failed"))
    if not is_fresh(timestamp, now_ms=int(time.time() * 1000)):
        return reply(answer(ResultCode.INVALID_PARAMETER, "the timestamp is outside the 60 s window"))
    activity = body.get("activity")
    if not isinstance(activity, str) or activity not in V2_ACTIVITIES:
        return reply(answer(ResultCode.INVALID_PARAMETER, f"unknown activity {activity!r}"))
    if (problem := first_violation(body, "v2", activity)) is not None:
        return reply(answer(ResultCode.INVALID_PARAMETER, problem))
    return reply(_merchant().handle(body))


def _v1_fresh(time_stamp: str) -> bool:
    """V1 has no published window (docs/protocol.md §2.2, ASSUMPTION U17): the reference merchant
    applies V2's 60 s to the UTC ``yyyyMMddHHmmssSSS`` timeStamp, so an old token cannot be replayed."""
    try:
        moment = datetime.strptime(time_stamp, V1_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return False
    return is_fresh(int(moment.timestamp() * 1000), now_ms=int(time.time() * 1000))


@bp.get("/produceAPI")
def produce_v1() -> Response:
    config = current_app.config
    access_key = config["KOOSIM_ACCESS_KEY"]

    def reply(body: Answer) -> Response:
        return json_response(body, sign_with=access_key)

    if "v1" not in config["KOOSIM_PROTOCOLS"]:
        return reply(answer(ResultCode.INVALID_PARAMETER, "this merchant speaks only v2 (POST)"))
    # Flask has already URL-decoded the parameters; the token is computed over decoded values.
    params = request.args.to_dict()
    if not params.get("timeStamp"):
        return reply(answer(ResultCode.INVALID_PARAMETER, "timeStamp is required"))
    if not verify_v1(params, access_key):
        return reply(answer(ResultCode.AUTH_FAILED, "authToken verification failed"))
    if not _v1_fresh(params["timeStamp"]):
        return reply(answer(ResultCode.INVALID_PARAMETER, "timeStamp is outside the 60 s window"))
    activity = params.get("activity")
    if activity not in PRODUCE_ACTIVITIES | LICENSE_ACTIVITIES:  # License: the authToken form, §6.1
        return reply(answer(ResultCode.INVALID_PARAMETER, f"unknown activity {activity!r}"))
    if (problem := first_violation(params, "v1", activity)) is not None:
        return reply(answer(ResultCode.INVALID_PARAMETER, problem))
    merchant = _merchant()
    for name in V1_ENCRYPTED_FIELDS:
        if name in params:
            try:
                decrypt(params[name], access_key, merchant.encrypt_type)
            except DecryptionError:
                cipher = "AES-256" if merchant.encrypt_type is EncryptType.AES256 else "AES-128"
                return reply(answer(ResultCode.INVALID_PARAMETER, f"{name} does not decrypt with {cipher}"))
    return reply(merchant.handle(params))
