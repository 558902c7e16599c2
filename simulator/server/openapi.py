"""The marketplace's open APIs a merchant's server calls, at the real paths (protocol.md §8):
Querying an Order (``GET …/order/query``, §8.1, §8.2) and usage push (``POST …/isv/usage-data``,
§8.3), with the published authentication and result codes (§2.5, §2.6, §8.4).

This module is only HTTP: what the APIs answer is :mod:`simulator.openapi` (data, no clock of its
own), how a request is authenticated is :mod:`simulator.protocol.apig` (the API gateway's AK/SK,
verified with Huawei's own signer from ``huaweicloudsdkcore``) and
:mod:`simulator.protocol.usage_signature` (the usage push's ``signature``/``ts``/``nonce``).
What the blueprint needs from its host, the run's market server (:mod:`simulator.server.market`)
or ``koosim serve``, is an :class:`OpenApiService`: the keys, the orders, the clock, and the
:class:`~simulator.openapi.InboundLog` every call lands in, refused or not.

Nothing a caller sends makes it answer 5xx except the published ``MKT.xxxx`` rows that §8.4
prints with HTTP 500 (A55: parameter validation, unknown instance, usage faults): a malformed
request, a bad signature, a wrong method, a body too large are 4xx JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from simulator.openapi import (
    PREFIX,
    QUERY_ORDER_PATH,
    USAGE_PUSH_PATH,
    InboundCall,
    InboundLog,
    OpenApiAnswer,
    UsagePushResult,
    answer,
    query_order,
    validate_usage_push,
)
from simulator.protocol.apig import GatewayRefusal, InboundRequest, verify
from simulator.protocol.mkt import MktCode
from simulator.protocol.replay import ReplayCache
from simulator.protocol.usage_signature import UsageRefusal, verify_usage_push
from simulator.server.guard import refuse_cross_site

USAGE_PATH = USAGE_PUSH_PATH
"""The old name, kept for the console's page."""

SERVICE = "koosim.openapi"
"""Where an app keeps its :class:`OpenApiService` (``app.extensions``)."""

RECORDED_HEADERS = (
    "Host",
    "Content-Type",
    "User-Agent",
    "X-Sdk-Date",
    "X-Sdk-Content-Sha256",
    "Authorization",
    "ts",
    "nonce",
    "signature",
)
MAX_STORED_URL_CHARS = 2000
"""A recorded URL is cut here: a caller may send 64 KB of query string."""
MAX_STORED_HEADER_CHARS = 300
UNAUTHENTICATED_BODY_BYTES = 256
"""What is kept of a refused, unauthenticated call's body: enough to see what it was."""
MAX_RECORDED_BODY_BYTES = 64 * 1024
"""What is kept of an authenticated body (1000 usage records are about 200 KB)."""

ROUTES = {QUERY_ORDER_PATH: ("GET", "queryOrder"), USAGE_PUSH_PATH: ("POST", "usagePush")}

NOT_FOUND_CODE = "KOOSIM.NOT_FOUND"
METHOD_CODE = "KOOSIM.METHOD_NOT_ALLOWED"
TOO_LARGE_CODE = "KOOSIM.BODY_TOO_LARGE"
"""ASSUMPTION U32's neighbour: no page shows the gateway's answer to a path that is no API, a
wrong method or an oversized body; koosim answers 404 / 405 / 413 with the gateway's error body
shape ``{error_msg, error_code, request_id}`` (§2.5) and a code of its own, named as such."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class OpenApiService:
    """What the open APIs need from the server that hosts them.

    ``keys`` maps each AK the marketplace issued to its SK (the gateway, §2.5); ``usage_key`` is
    the seller's interconnection key the usage push is signed with (§2.6: the target's access
    key); ``find_order`` the ``orderInfo`` of an order koosim sold, or None; ``known_instances``
    the instance IDs the merchant created (None: not known, MKT.9001 is never answered);
    ``secrets`` what a record must never show; ``on_usage`` sees the records of each accepted push.
    """

    keys: Callable[[], Mapping[str, str]]
    usage_key: Callable[[], str | None]
    find_order: Callable[[str], Mapping[str, Any] | None]
    log: InboundLog = field(default_factory=InboundLog)
    now: Callable[[], datetime] = _utc_now
    known_instances: Callable[[], Container[str] | None] = lambda: None
    on_usage: Callable[[InboundCall, UsagePushResult], None] | None = None
    usage_nonces: ReplayCache = field(default_factory=ReplayCache)


bp = Blueprint("openapi", __name__)


def install(app: Flask, service: OpenApiService) -> None:
    """Serve the open APIs on ``app`` from ``service``."""
    app.extensions[SERVICE] = service
    app.register_blueprint(bp)


def service_of(app: Flask) -> OpenApiService:
    service: OpenApiService = app.extensions[SERVICE]
    return service


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.route(PREFIX, methods=_METHODS)
@bp.route(f"{PREFIX}/", methods=_METHODS)
@bp.route(f"{PREFIX}/<path:rest>", methods=_METHODS)
def open_api(rest: str = "") -> Response:
    return handle(service_of(current_app))


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    api: str | None = None
    gateway: Any = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    usage: UsagePushResult | None = None
    published: bool = True
    """The refusal is a page's rule (False: it rests on an ASSUMPTION)."""


def handle(service: OpenApiService) -> Response:
    """Answer the request under way and log it as an inbound call of the run."""
    started = time.time()
    request_id = uuid.uuid4().hex
    try:
        raw = request.get_data(cache=True)
        outcome = _dispatch(service, raw, request_id)
    except HTTPException as error:  # too large, a client gone: the gateway's shape, a 4xx
        raw = b""
        code = TOO_LARGE_CODE if error.code == 413 else f"KOOSIM.HTTP_{error.code}"
        message = f"{error.name}: {error.description}"
        outcome = _Outcome(
            error.code or 400,
            {"error_msg": message, "error_code": code, "request_id": request_id},
            api=ROUTES.get(request.path, (None, None))[1],
            problems=(message,),
        )
    payload = json.dumps(outcome.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    call = _inbound_call(request_id, started, raw, outcome, payload)
    service.log.add(call)
    if outcome.usage is not None and outcome.usage.accepted and service.on_usage is not None:
        try:
            service.on_usage(call, outcome.usage)
        except Exception:  # the merchant gets its answer even when the records cannot be kept
            current_app.logger.exception("could not keep pushed usage")
    response = Response(payload, status=outcome.status, mimetype="application/json")
    response.headers["X-Request-Id"] = request_id
    return response


def _dispatch(service: OpenApiService, raw: bytes, request_id: str) -> _Outcome:
    # merchants call from their servers: a browser sending this from a web page is a forgery
    refuse_cross_site(all_methods=True)
    route = ROUTES.get(request.path.rstrip("/") or "/")
    if route is None:
        message = (
            f"no open API at {request.path[:200]!r}: Querying an Order is GET {QUERY_ORDER_PATH}, "
            f"usage push POST {USAGE_PUSH_PATH}"
        )
        return _Outcome(404, _gateway_body(message, NOT_FOUND_CODE, request_id), problems=(message,))
    method, api = route
    if request.method != method:
        message = f"{api} is {method} {request.path}, not {request.method}"
        return _Outcome(405, _gateway_body(message, METHOD_CODE, request_id), api=api, problems=(message,))
    now = service.now()
    if api == "queryOrder":
        return _query_order(service, raw, now, request_id)
    return _usage_push(service, raw, now, request_id)


def _gateway_body(message: str, code: str, request_id: str) -> dict[str, Any]:
    return {"error_msg": message, "error_code": code, "request_id": request_id}


def _query_pairs() -> list[tuple[str, str]]:
    text = request.query_string.decode("latin-1")
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")


def _query_order(service: OpenApiService, raw: bytes, now: datetime, request_id: str) -> _Outcome:
    params = _query_pairs()
    inbound = InboundRequest(
        method=request.method,
        path=request.path,
        query=tuple(params),
        headers=tuple(request.headers.items()),
        body=raw,
    )
    verdict = verify(inbound, service.keys(), now)
    if isinstance(verdict, GatewayRefusal):
        return _gateway_refused(verdict, request_id, "queryOrder")
    result = query_order(params, service.find_order, now)
    return _Outcome(
        result.status,
        result.body,
        "queryOrder",
        verdict,
        problems=_problems(result),
        fields=dict(params),
        published=result.published,
    )


def _gateway_refused(verdict: GatewayRefusal, request_id: str, call: str) -> _Outcome:
    """The API gateway's answer to a call it does not let through (§2.5)."""
    return _Outcome(
        verdict.status,
        verdict.body(request_id),
        call,
        verdict,
        problems=(verdict.message,),
        published=verdict.reason.published,
    )


def _problems(result: OpenApiAnswer) -> tuple[str, ...]:
    return () if result.code == MktCode.SUCCESS else (str(result.body.get("resultMsg", result.code)),)


def _usage_push(service: OpenApiService, raw: bytes, now: datetime, request_id: str) -> _Outcome:
    key = service.usage_key()
    if not key:
        refused = answer(MktCode.AUTH_FAILED, "the marketplace has no interconnection key for this merchant")
        return _Outcome(refused.status, refused.body, "usagePush", problems=(str(refused.body["resultMsg"]),))
    gateway_note: tuple[str, ...] = ()
    if request.headers.get("Authorization") is not None:  # A47: verified when present
        inbound = InboundRequest(
            request.method, request.path, tuple(_query_pairs()), tuple(request.headers.items()), raw
        )
        verdict = verify(inbound, service.keys(), now)
        if isinstance(verdict, GatewayRefusal):
            return _gateway_refused(verdict, request_id, "usagePush")
    else:
        gateway_note = (
            "no gateway AK/SK Authorization on the usage push: the 2024-05-09 intl edition asks for it, "
            "the 2024-08-20 and zh editions do not (§2.6, A47)",
        )
    signed = verify_usage_push(
        key, request.headers.items(), raw, now, service.usage_nonces, refuse_replays=True
    )
    if isinstance(signed, UsageRefusal):
        refused = answer(signed.code, signed.message)
        return _Outcome(
            refused.status,
            refused.body,
            "usagePush",
            signed,
            problems=(signed.message,),
            published=signed.reason.published,
        )
    result = validate_usage_push(raw, now, service.known_instances())
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError):
        fields = {}
    return _Outcome(
        result.answer.status,
        result.answer.body,
        "usagePush",
        signed,
        problems=_problems(result.answer),
        warnings=tuple(signed.warnings) + result.warnings + gateway_note,
        fields=fields if isinstance(fields, dict) else {},
        usage=result,
        published=result.answer.published,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text)} characters in all]"


def _recorded_headers(names: Sequence[str]) -> dict[str, str]:
    return {
        name: _cut(value, MAX_STORED_HEADER_CHARS) for name in names if (value := request.headers.get(name))
    }


def _inbound_call(
    request_id: str, started: float, raw: bytes, outcome: _Outcome, payload: bytes
) -> InboundCall:
    authenticated = outcome.gateway is not None and not isinstance(
        outcome.gateway, GatewayRefusal | UsageRefusal
    )
    limit = MAX_RECORDED_BODY_BYTES if authenticated else UNAUTHENTICATED_BODY_BYTES
    return InboundCall(
        id=request_id[:12],
        api=outcome.api,
        method=request.method[:16],
        url=_cut(request.url, MAX_STORED_URL_CHARS),
        request_headers=_recorded_headers(RECORDED_HEADERS),
        request_body=raw[:limit],
        started_at=started,
        status=outcome.status,
        response_body=payload,
        elapsed=time.time() - started,
        gateway=outcome.gateway,
        code=str(outcome.body.get("resultCode") or outcome.body.get("error_code") or ""),
        problems=outcome.problems,
        warnings=outcome.warnings,
        fields=outcome.fields if authenticated else {},
        published=outcome.published,
    )
