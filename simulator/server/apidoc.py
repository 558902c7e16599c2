"""The JSON API described as OpenAPI 3.0, served at ``GET /api/openapi.json``.

For people (every endpoint, its body, its answers) and for tools that test an API from its
description (the project's own fuzz test generates requests from it: no input may get a 5xx).
docs/server.md has the prose and the examples.
"""

from __future__ import annotations

from typing import Any

from simulator import __version__
from simulator.server.guard import TOKEN_HEADER
from simulator.server.inputs import MAX_ID, MAX_SEED

_STRING = {"type": "string"}
_ERROR = {
    "description": "what is wrong, in one sentence",
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": _STRING}}
        }
    },
}
_ANY_OBJECT = {"type": "object", "additionalProperties": True}
_FIELDS = {
    "type": "object",
    "description": "the call's fields, as the interface names them",
    "additionalProperties": True,
}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ANY_OBJECT}}}


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: int = 200,
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (400,),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok): _answer(summary)} | {str(status): _ERROR for status in (401, 403, *errors)},
    }
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
}
_RUN_ID = _path_parameter("run_id", _STRING)
_PLAY_ID = _path_parameter("play_id", _STRING)
_DELIVERY_ID = _path_parameter("delivery_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID})
_MESSAGE_ID = _path_parameter("message_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID})
_TARGET = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {"type": ["string", "null"]},
        "protocol": {"type": "string", "enum": ["v2", "v1"]},
        "sync_url": {"type": ["string", "null"]},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
        "encrypt_type": {"type": "string", "enum": ["1", "2"]},
        "access_key": _STRING,
        "sync_key": _STRING,
        "rsa_public_key": _STRING,
        "notification_url": {"type": ["string", "null"]},
        "notification_token": _STRING,
        "contact": _STRING,
        "bundled": {"type": "boolean"},
        "clear_keys": {"type": "boolean"},
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the JSON API under ``/api``."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "koosim serve: the fake KooGallery marketplace's JSON API",
            "version": __version__,
            "description": "Every endpoint needs the token koosim serve printed (see docs/server.md, "
            'Security model). Errors are {"error": "..."} with a 4xx status.',
        },
        "servers": [{"url": "/api"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "header": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
            }
        },
        "security": [{"bearer": []}, {"header": []}],
        "paths": {
            "/target": {
                "get": _operation("the target and which keys are set"),
                "put": _operation("change the target", body=_body(_TARGET)),
            },
            "/activities": {"get": _operation("the activities a call can have")},
            "/activities/{activity}/template": {
                "get": _operation(
                    "fresh fields for one activity", parameters=[_path_parameter("activity", _STRING)]
                )
            },
            "/calls": {
                "post": _operation(
                    "sign and send one call, judge the answer",
                    body=_body(
                        {
                            "type": "object",
                            "required": ["activity"],
                            "properties": {"activity": _STRING, "fields": _FIELDS},
                        }
                    ),
                    errors=(400, 409),
                )
            },
            "/runs": {
                "get": _operation("the run history, newest first", parameters=[_LIMIT]),
                "post": _operation(
                    "start a verify run in the background",
                    202,
                    body=_body(
                        {
                            "type": "object",
                            "properties": {
                                "checks": {"type": "array", "items": _STRING},
                                "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                            },
                        },
                        required=False,
                    ),
                    errors=(400, 409),
                ),
            },
            "/runs/{run_id}": {"get": _operation("one run", parameters=[_RUN_ID], errors=(404,))},
            "/runs/{run_id}/exchanges": {
                "get": _operation("a run's exchanges", parameters=[_RUN_ID], errors=(404,))
            },
            "/exchanges/{exchange_id}": {
                "get": _operation(
                    "one exchange", parameters=[_path_parameter("exchange_id", _STRING)], errors=(404,)
                )
            },
            "/inbound": {"get": _operation("calls merchants made to the marketplace", parameters=[_LIMIT])},
            "/usage": {"get": _operation("usage records received", parameters=[_LIMIT])},
            "/notifications/template": {"get": _operation("fresh fields for an order notification")},
            "/notifications": {
                "post": _operation(
                    "send an order notification (the order number; retried for 3 h when it fails, §9)",
                    body=_body(
                        {
                            "type": "object",
                            "properties": {
                                "fields": {
                                    "type": "object",
                                    "description": "the order number only (its name: U41)",
                                    "properties": {"orderId": {"type": "string", "maxLength": 64}},
                                },
                                "check_token": {"type": "boolean"},
                                "check_repeat": {"type": "boolean"},
                            },
                        }
                    ),
                    errors=(400, 409),
                )
            },
            "/messages": {
                "get": _operation(
                    "生产接口消息: every delivery that failed at least once, newest first, with its "
                    "异常信息, attempts, next attempt (marketplace time) and state",
                    parameters=[
                        _LIMIT,
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "enum": ["pending", "delivered", "parked", "cancelled"],
                            },
                        },
                    ],
                )
            },
            "/messages/{delivery_id}": {
                "get": _operation("one delivery and every attempt", parameters=[_DELIVERY_ID], errors=(404,))
            },
            "/messages/{delivery_id}/restart": {
                "post": _operation(
                    "重新启动: one more attempt, now (pending or parked deliveries only)",
                    parameters=[_DELIVERY_ID],
                    errors=(404, 409),
                )
            },
            "/outbox": {
                "get": _operation(
                    "messages about failed user syncs",
                    parameters=[
                        _LIMIT,
                        {"name": "status", "in": "query", "required": False, "schema": _STRING},
                    ],
                )
            },
            "/outbox/{message_id}": {
                "get": _operation("one message", parameters=[_MESSAGE_ID], errors=(404,))
            },
            "/outbox/{message_id}/continue": {
                "post": _operation("resend the sync", parameters=[_MESSAGE_ID], errors=(404, 409))
            },
            "/outbox/{message_id}/stop": {
                "post": _operation("stop the sync", parameters=[_MESSAGE_ID], errors=(404, 409))
            },
            "/dial": {
                "get": _operation("the target's dial tests, the delisting countdown, the next dial test"),
                "post": _operation("run one dial test of the target now (docs/watch.md)", errors=(409,)),
            },
            "/scenarios": {"get": _operation("the scenarios a session can play")},
            "/plays": {
                "post": _operation(
                    "start playing a scenario of the library by name",
                    201,
                    body=_body(
                        {"type": "object", "required": ["scenario"], "properties": {"scenario": _STRING}}
                    ),
                    errors=(400, 409),
                )
            },
            "/plays/{play_id}": {"get": _operation("a session", parameters=[_PLAY_ID], errors=(404,))},
            "/plays/{play_id}/next": {
                "post": _operation(
                    "send the next step",
                    parameters=[_PLAY_ID],
                    body=_body({"type": "object", "properties": {"fields": _FIELDS}}, required=False),
                    errors=(400, 404),
                )
            },
            "/plays/{play_id}/resend": {
                "post": _operation("resend the previous step", parameters=[_PLAY_ID], errors=(400, 404))
            },
            "/plays/{play_id}/finish": {
                "post": _operation("end the session", parameters=[_PLAY_ID], errors=(404,))
            },
            "/openapi.json": {"get": _operation("this document")},
        },
    }
