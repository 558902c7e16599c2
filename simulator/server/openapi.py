"""The marketplace's open APIs a merchant's server calls: query order (查询订单) and usage push
for on-demand products (按需使用量推送), at the paths of the real service.

Every call is authenticated, validated against ``contracts/marketplace/`` and recorded in the
history as an *inbound* exchange, whatever its outcome. Bad input gets a 4xx JSON answer in the
API's own shape (``resultCode``/``resultMsg`` for queryOrder, ``error_code``/``error_msg`` for
usage push, as the docs name them) whose message names the problem; nothing a caller sends
makes it answer 500.

Authentication, ASSUMPTION: the real APIs take the merchant's credentials; the simulator models
them as the usage-push contract describes its headers, with the access key the merchant shares
with the marketplace (the one configured for the target) as the key:
``ts`` (ms since the epoch, within 60 s), ``nonce``, and
``signature = base64(HMAC-SHA256(accessKey, "ts=<ts>&nonce=<nonce>&body=<body>"))``, where
``<body>`` is the request body exactly as sent (POST) or, for GET, the query parameters sorted by
name and joined as ``k=v`` with ``&`` (URL-decoded). :func:`simulator.protocol.sign_openapi` computes
it for clients and tests.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from simulator.contracts import validate
from simulator.model import Order
from simulator.protocol import TIMESTAMP_WINDOW_MS, canonical_query, is_fresh, verify_openapi
from simulator.protocol.limits import BASIC_UTC_FORMAT, COMPACT_TIME_FORMAT
from simulator.protocol.replay import ReplayCache
from simulator.server.guard import refuse_cross_site
from simulator.server.inputs import InvalidJSON, parse_json
from simulator.server.state import MarketState
from simulator.store import INBOUND
from simulator.transport import Exchange

PREFIX = "/api/mkp-openapi-public/global/v1"
QUERY_ORDER_PATH = f"{PREFIX}/order/query"
USAGE_PATH = f"{PREFIX}/isv/usage-data"

SUCCESS = "MKT.0000"
INVALID = "MKT.0100"
"""ASSUMPTION: the code for a parameter the marketplace refuses (the docs name MKT.0100 but
not its meaning)."""
TOO_MANY_RECORDS = "MKT.9003"
TOO_OLD = "MKT.9004"
AUTH_FAILED = "APIGW.0301"
"""Gateway errors use APIGW.xxxx (doc); which number is an ASSUMPTION."""
MAX_RECORDS = 1000
MAX_AGE = timedelta(days=21)
USAGE_TIME = BASIC_UTC_FORMAT
ORDER_TIME = COMPACT_TIME_FORMAT
CHARGING_MODES = {"0": "PERIOD", "1": "ON_DEMAND", "3": "ONE_TIME"}
"""newInstance's chargingMode digits as queryOrder names them."""

MOCK_ORDERS = {
    "MOCKPERIODYEARNEW": {
        "orderId": "MOCKPERIODYEARNEW",
        "orderType": "NEW",
        "createTime": "20240101000000",
        "orderLine": [
            {
                "orderLineId": "MOCKPERIODYEARNEW-000001",
                "chargingMode": "PERIOD",
                "expireTime": "20250101000000",
                "periodType": "year",
                "periodNumber": 1,
                "productInfo": [{"productId": "OFFI000000000001", "skuCode": "sku-basic-0001"}],
            }
        ],
    }
}
"""Debug orders the real service answers for every merchant (doc: MOCKPERIODYEARNEW)."""

RECORDED_HEADERS = ("Content-Type", "User-Agent", "ts", "nonce", "signature")
TIMESTAMP = re.compile(r"[0-9]{13}")
"""``ts``: milliseconds since the epoch, 13 ASCII digits (int() would take "1_7…" or " 17…")."""
MAX_NONCE_CHARS = 128
MAX_STORED_URL_CHARS = 2000
"""A stored inbound URL is cut here, as bodies are: a caller may send 64 KB of query string."""
MAX_STORED_HEADER_CHARS = 200
UNAUTHENTICATED_BODY_BYTES = 256
"""What is kept of a refused unauthenticated call's body: enough to see what it was."""

bp = Blueprint("openapi", __name__)


class Refused(Exception):
    """A call the marketplace answers with an error: HTTP status, code, and what is wrong."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _market() -> MarketState:
    return current_app.extensions["koosim.marketplace"]


def _authenticate(signed_body: str) -> None:
    key = _market().settings.access_key
    if not key:
        raise Refused(
            401, AUTH_FAILED, "the simulator has no merchant credentials: configure the target first"
        )
    for header in ("ts", "nonce", "signature"):
        if not request.headers.get(header):
            raise Refused(401, AUTH_FAILED, f"the {header} header is missing")
    ts, nonce = request.headers["ts"], request.headers["nonce"]
    now_ms = int(time.time() * 1000)
    if not (TIMESTAMP.fullmatch(ts) and is_fresh(ts, now_ms=now_ms)):
        raise Refused(
            401, AUTH_FAILED, "the ts header is not a time within 60 s of now (13 digits, ms since the epoch)"
        )
    if len(nonce) > MAX_NONCE_CHARS:
        raise Refused(401, AUTH_FAILED, f"the nonce header is longer than {MAX_NONCE_CHARS} characters")
    if not verify_openapi(key, ts, nonce, signed_body, request.headers["signature"]):
        raise Refused(401, AUTH_FAILED, "the signature does not match: see docs/server.md for what is signed")
    now = datetime.now(UTC)
    if not _nonces().remember(nonce, until=now + NONCE_MEMORY, now=now):
        raise Refused(401, AUTH_FAILED, "the nonce was already used: a replayed call (use a fresh nonce)")
    g.koosim_authenticated = True


NONCE_MEMORY = timedelta(milliseconds=2 * TIMESTAMP_WINDOW_MS + 1000)
"""How long a nonce is remembered: as long as any ``ts`` sent with it could still be fresh."""


def _nonces() -> ReplayCache:
    """The nonces of authenticated calls: a call replayed (same ts/nonce/signature, or the
    nonce with a fresh ts) is refused. Bounded: a flood cannot grow it without limit."""
    return current_app.extensions.setdefault("koosim.nonces", ReplayCache())


def _first_violation(instance: Any, name: str) -> str | None:
    violations = validate(instance, "marketplace", name, "request")
    if not violations:
        return None
    g.koosim_violations = [f"{v.path}: {v.message}" for v in violations]
    return f"{violations[0].path}: {violations[0].message}"


@bp.get(QUERY_ORDER_PATH)
def query_order() -> Response:
    g.koosim_activity = "queryOrder"
    try:
        params = g.koosim_fields = request.args.to_dict()
        _authenticate(canonical_query(params))
        if (problem := _first_violation(params, "queryOrder")) is not None:
            raise Refused(400, INVALID, problem)
        order = _find_order(params["orderId"], params.get("orderLineId"))
    except Refused as refused:
        return _answer(refused.status, {"resultCode": refused.code, "resultMsg": refused.message})
    return _answer(200, {"resultCode": SUCCESS, "resultMsg": "success", "orderInfo": order})


def _find_order(order_id: str, line_id: str | None) -> dict[str, Any]:
    if order_id in MOCK_ORDERS:
        order = json.loads(json.dumps(MOCK_ORDERS[order_id]))
    else:
        lines = _market().store.marketplace.order_lines(order_id)
        if not lines:
            raise Refused(404, INVALID, f"order {order_id!r} does not exist")
        fields = lines[0]["fields"]
        order = {
            "orderId": order_id,
            "orderType": "TRIAL" if fields.get("trialFlag") == "1" else "NEW",
            "createTime": datetime.fromtimestamp(lines[0]["created_at"], UTC).strftime(ORDER_TIME),
            "orderLine": [_order_line(line) for line in lines],
        }
    if line_id is not None:
        order["orderLine"] = [line for line in order["orderLine"] if line["orderLineId"] == line_id]
        if not order["orderLine"]:
            raise Refused(404, INVALID, f"order {order_id!r} has no line {line_id!r}")
    return order


def _order_line(line: dict[str, Any]) -> dict[str, Any]:
    fields = line["fields"]
    result: dict[str, Any] = {
        "orderLineId": line["order_line_id"],
        "chargingMode": CHARGING_MODES.get(str(fields.get("chargingMode", "0")), "PERIOD"),
        # The V2 call names the order only (docs/protocol.md §4.1): the product is what koosim
        # sells by default unless the call (V1, a licence) carried one.
        "productInfo": [
            {
                "productId": fields.get("productId") or Order.product_id,
                "skuCode": fields.get("skuCode") or Order.sku_code,
            }
        ],
    }
    if str(fields.get("expireTime", "")).isdigit() and len(fields["expireTime"]) == 14:
        result["expireTime"] = fields["expireTime"]
    if fields.get("periodType") in ("year", "month", "day", "hour"):
        result["periodType"] = fields["periodType"]
    if str(fields.get("periodNumber", "")).isdigit() and int(fields["periodNumber"]) >= 1:
        result["periodNumber"] = int(fields["periodNumber"])
    return result


@bp.post(USAGE_PATH)
def usage_push() -> Response:
    g.koosim_activity = "usagePush"
    raw = request.get_data(cache=True)
    try:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, INVALID, "the body is not UTF-8") from None
        _authenticate(text)
        try:
            body = parse_json(text)
        except InvalidJSON as exc:
            raise Refused(400, INVALID, f"the body is {exc}") from None
        if not isinstance(body, dict):
            raise Refused(400, INVALID, "the body must be a JSON object with usage_records")
        g.koosim_fields = body
        records = body.get("usage_records")
        if isinstance(records, list) and len(records) > MAX_RECORDS:
            raise Refused(
                400, TOO_MANY_RECORDS, f"at most {MAX_RECORDS} usage_records per call, got {len(records)}"
            )
        if (problem := _first_violation(body, "usagePush")) is not None or not isinstance(records, list):
            raise Refused(400, INVALID, problem or "usage_records must be a list")
        for index, record in enumerate(records):
            _check_times(index, record)
        added, repeated = _market().store.marketplace.add_usage(
            records, g.koosim_exchange_id, _market().secrets
        )
    except Refused as refused:
        return _answer(refused.status, {"error_code": refused.code, "error_msg": refused.message})
    return _answer(
        200, {"error_code": SUCCESS, "error_msg": "success", "accepted": added, "repeated": repeated}
    )


def _check_times(index: int, record: dict[str, Any]) -> None:
    where = f"$.usage_records[{index}]"
    times = {}
    for name in ("record_time", "begin_time", "end_time"):
        try:
            times[name] = datetime.strptime(record[name], USAGE_TIME).replace(tzinfo=UTC)
        except ValueError:
            raise Refused(400, INVALID, f"{where}.{name}: {record[name]!r} is not a real UTC time") from None
    if times["end_time"] < times["begin_time"]:
        raise Refused(400, INVALID, f"{where}: end_time is before begin_time")
    if times["begin_time"] < datetime.now(UTC) - MAX_AGE:
        raise Refused(400, TOO_OLD, f"{where}.begin_time: more than 21 days ago")


def _answer(status: int, body: dict[str, Any]) -> Response:
    g.koosim_status_body = body
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(payload, status=status, mimetype="application/json")


@bp.before_request
def _start() -> None:
    g.koosim_started = time.time()
    g.koosim_exchange_id = uuid.uuid4().hex[:12]
    # merchants call from their servers: a browser sending this from a web page is a forgery
    refuse_cross_site(all_methods=True)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text)} characters in all]"


def _request_body() -> bytes:
    try:
        return request.get_data(cache=True)
    except HTTPException:  # too large, or the client went away: the answer already says so
        return b""


@bp.after_request
def _record(response: Response) -> Response:
    """Every inbound call goes into the history, refused or not (secrets redacted)."""
    market = _market()
    activity = g.get("koosim_activity", request.path)
    answer = g.get("koosim_status_body") or {}
    authenticated = g.get("koosim_authenticated", False)
    body = _request_body()
    if not authenticated:  # anyone may send these: keep what shows the call, not all of it
        body = body[:UNAUTHENTICATED_BODY_BYTES]
    exchange = Exchange(
        id=g.koosim_exchange_id,
        label=f"{activity} from the merchant",
        interface="marketplace",
        protocol="openapi",
        activity=activity,
        method=request.method,
        url=_cut(request.url, MAX_STORED_URL_CHARS),
        fields=g.get("koosim_fields", {}) if authenticated else {},
        request_headers={
            name: _cut(value, MAX_STORED_HEADER_CHARS)
            for name in RECORDED_HEADERS
            if (value := request.headers.get(name))
        },
        request_body=body,
        started_at=g.koosim_started,
        status=response.status_code,
        response_headers={"Content-Type": response.content_type or ""},
        response_body=response.get_data(),
        elapsed=time.time() - g.koosim_started,
    )
    verdict = {
        "accepted": response.status_code == 200,
        "code": answer.get("resultCode") or answer.get("error_code"),
        "problem": answer.get("resultMsg") or answer.get("error_msg")
        if response.status_code != 200
        else None,
        "request_violations": g.get("koosim_violations", []),
    }
    try:
        market.store.history.add_exchange(None, exchange, market.secrets, direction=INBOUND, verdict=verdict)
    except Exception:  # the merchant gets its answer even when the history cannot keep it
        current_app.logger.exception("could not record an inbound call")
    return response
