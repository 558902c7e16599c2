"""A merchant written from docs/protocol.md alone: the produce interface (V2 and V1), the Kit and
the License activities as the pages publish them.

It imports nothing from ``simulator`` and follows the spec's tables literally, so that a rule
koosim enforces is tested against what the pages say a merchant does, not against our own code
(the reference merchant is ours; this one is the pages'). Where the spec leaves a choice open
(an ASSUMPTION), this merchant takes the most lenient reading a page allows, so that koosim
cannot pass it off as a failure:

- §2.1: verifies ``signature`` over the canonical body (top level sorted ascending, nulls
  dropped, compact JSON), accepts either hex case, refuses a timestamp more than 60 s from now;
- §3.1: answers ``resultCode`` and ``resultMsg``; no ``Body-Sign`` header (A8: not required on V2);
- §4: the seven activities with their published fields; unknown members are ignored (U46);
  lengths as the tables give them; the instance is found by ``instanceId`` (§4.2-§4.7);
- §4.1-a: one instance per ``orderId`` + ``orderLineId``, whatever the ``businessId``;
- §5 (V1): GET, ``authToken`` = base64 HMAC-SHA256 keyed with key + timeStamp over the sorted,
  decoded ``name=value`` pairs (§2.2); the V1 activity set (newInstance, refreshInstance,
  expireInstance, releaseInstance, instanceStatus, upgrade) with their tables; one instance per
  order (§5.1); every answer signed with ``Body-Sign`` (§2.3); no freshness window (none is
  published, U17); the encrypted e-mail/mobile are not read (the scheme is on no page, U20);
- §6.1 on V1: the License activities in the access guide's authToken form (A56), signed answers;
- §7 (Kit): the five calls on their paths, ``flag``/``testFlag`` integers, ``instanceId`` possibly
  empty (A40), adds and deletes idempotent and deletes independent of any instance (§7.4); the
  answers signed like V1's ([S56]); the request signature is on no page (U25): not verified;
- §6.1 (``license_handlers``): a License product's getLicense with the License page's rows, one
  License per order; the follow-up calls need only the licence code (U24);
- §6.2 (``license_async_handler``): getLicenseAsync with its table, V2 only, one License per
  request (``eventId`` + ``deviceFingerprint``).

Run it by hand: ``python tests/page_merchant.py 8080`` (access key from PAGE_MERCHANT_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

SUCCESS, AUTH_FAILED, INVALID, NO_INSTANCE = "000000", "000001", "000002", "000003"
FRESHNESS_MS = 60_000

# §4.1-§4.7: field -> (mandatory, maximum length); every value a string but changeInstanceCheck's
# productInfo, an object (§4.7)
ACTIVITIES: dict[str, dict[str, tuple[bool, int | None]]] = {
    "newInstance": {
        "activity": (True, 20),
        "orderId": (True, 64),
        "orderLineId": (True, 64),
        "businessId": (True, 64),
        "testFlag": (False, 2),
    },
    "refreshInstance": {
        "activity": (True, 20),
        "scene": (True, 64),
        "orderId": (True, 64),
        "orderLineId": (True, 64),
        "instanceId": (True, 64),
        "productId": (False, 64),
        "expireTime": (True, 20),
        "testFlag": (False, 2),
    },
    "upgradeInstance": {
        "activity": (True, 32),
        "instanceId": (True, 64),
        "orderId": (True, 64),
        "orderLineId": (True, 64),
        "testFlag": (False, 2),
    },
    "updateInstanceStatus": {
        "activity": (True, 32),
        "instanceId": (True, 64),
        "status": (True, 32),
        "testFlag": (False, 2),
    },
    "queryInstance": {"activity": (True, 20), "instanceId": (True, 100), "testFlag": (False, 2)},
    "releaseInstance": {
        "activity": (True, 32),
        "instanceId": (True, 64),
        "orderId": (False, 64),
        "orderLineId": (False, 64),
        "testFlag": (False, 2),
    },
    "changeInstanceCheck": {
        "activity": (True, 32),
        "instanceId": (True, 64),
        "productInfo": (True, None),
        "testFlag": (False, 2),
    },
}
# §6.1, a License product: getLicense with the rows the License page publishes [S75] (its
# authToken/timeStamp rows are the V1 transport; this merchant is V2-signed, A56). The follow-up
# tables are not published (U24): the most lenient reading, only the licence code is needed.
LICENSE_ACTIVITIES: dict[str, dict[str, tuple[bool, int | None]]] = {
    "getLicense": {
        "activity": (True, 20),
        "customerId": (True, 100),
        "customerName": (False, 64),
        "businessId": (True, 64),
        "orderId": (True, 64),
        "skuCode": (False, 64),
        "testFlag": (False, 2),
    },
    **{
        name: {"activity": (True, 20), "license": (True, 64), "testFlag": (False, 2)}
        for name in ("refreshLicense", "expireLicense", "releaseLicense")
    },
}
ACTIVITIES.update(LICENSE_ACTIVITIES)
# §6.2, getLicenseAsync [S52]: its table, V2 transport only (not among the authToken-form calls)
ACTIVITIES["getLicenseAsync"] = {
    "activity": (True, 20),
    "instanceId": (True, 64),
    "effectiveTime": (True, 32),
    "expireTime": (False, 32),
    "eventId": (True, 64),
    "deviceFingerprint": (False, 1024),
    "testFlag": (False, 2),
}
# §5.2-§5.7: the V1 tables (query parameters, all strings; authToken and timeStamp on every call)
V1_ACTIVITIES: dict[str, dict[str, tuple[bool, int | None]]] = {
    "newInstance": {"activity": (True, None), "businessId": (True, None), "orderId": (True, None)},
    "refreshInstance": {
        "activity": (True, 20),
        "orderId": (True, 64),
        "instanceId": (True, 64),
        "productId": (False, 64),
        "expireTime": (True, 20),
    },
    "expireInstance": {"activity": (True, 20), "instanceId": (True, 64), "orderId": (True, 64)},
    "releaseInstance": {"activity": (True, 20), "instanceId": (True, 64), "orderId": (True, 64)},
    "instanceStatus": {"activity": (True, 32), "instanceId": (True, 64), "instanceStatus": (True, 32)},
    "upgrade": {
        "activity": (True, 20),
        "instanceId": (True, 64),
        "orderId": (True, 64),
        "skuCode": (True, 64),
        "productId": (True, 64),
    },
}
V1_COMMON = {"testFlag": (False, 2), "authToken": (True, 50), "timeStamp": (True, 20)}
V1_STATUSES = {"FREEZE", "NORMAL"}  # §5.6
KIT_CALLS: dict[str, tuple[str, ...]] = {
    # §7.2-§7.6: mandatory members besides instanceId (may be empty, A40), testFlag and timeStamp
    "tenantSync": ("orderId", "tenantId", "tenantCode", "name", "domainName", "flag"),
    "applicationSync": (),  # §7.3: the page was not readable (U26)
    "authSync": ("tenantId", "appId", "userList", "flag"),
    "singleOrgSync": ("tenantId", "orgCode", "orgName", "flag"),
    "allOrgSync": ("tenantId", "orgInfo"),
}
KIT_FLAGS = {"tenantSync": {0, 1}, "authSync": {0, 1, 2, 3}, "singleOrgSync": {0, 1, 2}}
SCENES = {"TRIAL_TO_FORMAL", "RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD"}  # §4.2
STATUSES = {"FREEZE", "UNFREEZE"}  # §4.4
QUERY_LIMIT = 100  # §4.5


def body_sign(payload: bytes, key: str) -> str:
    """§2.3: ``Body-Sign: sign_type="HMAC-SHA256", signature="<base64 HMAC-SHA256 over the bytes>"``."""
    digest = hmac.new(key.encode(), payload, hashlib.sha256).digest()
    return f'sign_type="HMAC-SHA256", signature="{base64.b64encode(digest).decode()}"'


def v1_token(params: dict[str, str], key: str, time_stamp: str) -> str:
    """§2.2: every parameter but authToken, sorted by name, decoded, ``name=value`` joined by ``&``;
    base64 of HMAC-SHA256 keyed with the key followed by the timeStamp."""
    message = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "authToken")
    digest = hmac.new((key + time_stamp).encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def canonical(body: dict[str, Any]) -> bytes:
    """§2.1 as koosim reads it (U1): sorted ascending, nulls dropped, compact, UTF-8."""
    kept = {name: value for name, value in sorted(body.items()) if value is not None}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def expected_signature(key: str, body: dict[str, Any], timestamp: str, nonce: str) -> str:
    """§2.1: hex(HMAC(key, key + nonce + timestamp + lower-hex(HMAC(key, payload))))."""
    inner = hmac.new(key.encode(), canonical(body), hashlib.sha256).hexdigest()
    return hmac.new(key.encode(), (key + nonce + timestamp + inner).encode(), hashlib.sha256).hexdigest()


@dataclass
class Instance:
    instance_id: str
    order_id: str
    status: str = "NORMAL"
    expire_time: str | None = None
    released: bool = False


@dataclass
class Ledger:
    """What the merchant has provisioned; one lock, so concurrent resends get one instance."""

    by_order_line: dict[tuple[str, str], Instance] = field(default_factory=dict)
    by_id: dict[str, Instance] = field(default_factory=dict)
    kit: dict[tuple[str, ...], bool] = field(default_factory=dict)
    licenses: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def license_handlers(answer: Callable[..., Response]) -> dict[str, Callable[[dict[str, Any]], Response]]:
    """§6.1: one License per order, whatever the businessId ("for the same order number ...
    return the License created before" [S75]); a code it never issued, or released, is 000003."""
    lock = threading.Lock()
    by_order: dict[str, str] = {}
    released: set[str] = set()

    def get_license(body: dict[str, Any]) -> Response:
        with lock:
            code = by_order.setdefault(body["orderId"], f"LIC-{uuid.uuid4().hex[:16]}")
        return answer(SUCCESS, license=code)

    def change(body: dict[str, Any]) -> Response:
        with lock:
            known = body["license"] in by_order.values()
            if known and body["activity"] == "releaseLicense":
                released.add(body["license"])  # a resent release answers success again
                return answer(SUCCESS)
            if not known or body["license"] in released:
                return answer(NO_INSTANCE, "no such license")
        return answer(SUCCESS)

    return {
        "getLicense": get_license,
        "refreshLicense": change,
        "expireLicense": change,
        "releaseLicense": change,
    }


def license_async_handler(answer: Callable[..., Response]) -> Callable[[dict[str, Any]], Response]:
    """§6.2: "for the same request" (eventId + deviceFingerprint) the same License, none created
    [S52]; another eventId is a new request and gets a new licence. The answer table is not
    published (U47): the envelope and the licence under ``license``."""
    lock = threading.Lock()
    by_request: dict[tuple[str, str], str] = {}

    def get_license_async(body: dict[str, Any]) -> Response:
        key = (body["eventId"], body.get("deviceFingerprint") or "")
        with lock:
            code = by_request.setdefault(key, f"LIC-{uuid.uuid4().hex[:16]}")
        return answer(SUCCESS, license=code)

    return get_license_async


def create_app(access_key: str) -> Flask:
    app = Flask("page_merchant")
    ledger = Ledger()

    def answer(code: str, message: str = "", signed: bool = False, **members: Any) -> Response:
        body = {
            "resultCode": code,
            "resultMsg": message or ("success." if code == SUCCESS else "refused"),
            **members,
        }
        payload = json.dumps(body).encode()
        response = Response(payload, status=200, mimetype="application/json")
        if signed:  # V1 (§2.3) and Kit ([S56]) answers; V2 does not require it (A8)
            response.headers["Body-Sign"] = body_sign(payload, access_key)
        return response

    def invalid(
        body: dict[str, Any], tables: dict[str, dict[str, tuple[bool, int | None]]] = ACTIVITIES
    ) -> str | None:
        fields = tables[body["activity"]]
        for name, (mandatory, limit) in fields.items():
            value = body.get(name)
            if value is None:
                if mandatory:
                    return f"{name} is mandatory"
                continue
            if limit is None:
                if name == "productInfo" and not isinstance(value, dict):
                    return f"{name} must be an object"
                if name != "productInfo" and not isinstance(value, str):
                    return f"{name} must be a string"
            elif not isinstance(value, str) or len(value) > limit:
                return f"{name} must be a string of at most {limit} characters"
        return None

    @app.post("/produceAPI")
    def produce() -> Response:
        signature = request.args.get("signature", "")
        timestamp = request.args.get("timestamp", "")
        nonce = request.args.get("nonce", "")
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return answer(INVALID, "the body is not JSON")
        if not isinstance(body, dict):
            return answer(INVALID, "the body is not a JSON object")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > FRESHNESS_MS:
            return answer(INVALID, "timestamp missing or not within 60 s")
        if not nonce or not hmac.compare_digest(
            signature.lower(), expected_signature(access_key, body, timestamp, nonce)
        ):
            return answer(AUTH_FAILED, "signature")
        activity = body.get("activity")
        if activity not in ACTIVITIES:
            return answer(INVALID, "unknown activity")
        if (problem := invalid(body)) is not None:
            return answer(INVALID, problem)
        return HANDLERS[activity](body)

    @app.get("/produceAPI")
    def produce_v1() -> Response:
        """§5: GET, the authToken over the decoded parameters (§2.2), answers with Body-Sign."""
        params = request.args.to_dict()
        time_stamp = params.get("timeStamp", "")
        if not time_stamp:
            return answer(INVALID, "timeStamp is mandatory", signed=True)
        if not hmac.compare_digest(params.get("authToken", ""), v1_token(params, access_key, time_stamp)):
            return answer(AUTH_FAILED, "authToken", signed=True)
        activity = params.get("activity")
        if activity in LICENSE_ACTIVITIES:  # the access guide's authToken form (§6.1, A56)
            tables = {activity: LICENSE_ACTIVITIES[activity] | V1_COMMON}
            if (problem := invalid(params, tables)) is not None:
                return answer(INVALID, problem, signed=True)
            return V1_LICENSE_HANDLERS[activity](params)
        if activity not in V1_ACTIVITIES:
            return answer(INVALID, "unknown activity", signed=True)
        tables = {activity: V1_ACTIVITIES[activity] | V1_COMMON}
        if (problem := invalid(params, tables)) is not None:
            return answer(INVALID, problem, signed=True)
        return V1_HANDLERS[activity](params)

    def v1_new_instance(params: dict[str, str]) -> Response:
        # §5.1: one instance per order (pay-per-use: per order and productId, A21)
        key = (params["orderId"], params.get("productId", ""))
        with ledger.lock:
            instance = ledger.by_order_line.get(key)
            if instance is None:
                instance = Instance(instance_id=uuid.uuid4().hex, order_id=params["orderId"])
                ledger.by_order_line[key] = instance
                ledger.by_id[instance.instance_id] = instance
        return answer(
            SUCCESS,
            signed=True,
            instanceId=instance.instance_id,
            appInfo={"frontEndUrl": f"https://saas.example.com/{instance.instance_id}"},
        )

    def v1_live(params: dict[str, str], change: str | None = None) -> Response:
        if (instance := live(params["instanceId"])) is None:
            return answer(NO_INSTANCE, "no such instance", signed=True)
        if change is not None:
            instance.status = change
        return answer(SUCCESS, signed=True)

    def v1_instance_status(params: dict[str, str]) -> Response:
        if params["instanceStatus"] not in V1_STATUSES:
            return answer(INVALID, "instanceStatus", signed=True)
        return v1_live(params, "FROZEN" if params["instanceStatus"] == "FREEZE" else "NORMAL")

    def v1_release(params: dict[str, str]) -> Response:
        instance = ledger.by_id.get(params["instanceId"])
        if instance is None:
            return answer(NO_INSTANCE, "no such instance", signed=True)
        instance.released = True
        return answer(SUCCESS, signed=True)

    V1_LICENSE_HANDLERS = license_handlers(lambda *args, **members: answer(*args, signed=True, **members))
    V1_HANDLERS = {
        "newInstance": v1_new_instance,
        "refreshInstance": lambda params: v1_live(params),
        "expireInstance": lambda params: v1_live(params, "FROZEN"),
        "instanceStatus": v1_instance_status,
        "upgrade": lambda params: v1_live(params),
        "releaseInstance": v1_release,
    }

    @app.post("/produceAPI/v2/authSync", defaults={"call": "authSync"})
    @app.post("/produceAPI/<call>")
    def kit(call: str) -> Response:
        """§7: no published request signature to verify (U25); fields per the tables."""
        if call not in KIT_CALLS:
            return answer(INVALID, "unknown call", signed=True)
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return answer(INVALID, "the body is not JSON", signed=True)
        if not isinstance(body, dict):
            return answer(INVALID, "the body is not a JSON object", signed=True)
        for name in ("instanceId", "testFlag", "timeStamp", *KIT_CALLS[call]):
            if name not in body:
                return answer(INVALID, f"{name} is mandatory", signed=True)
        if not isinstance(body["instanceId"], str):  # may be empty (A40)
            return answer(INVALID, "instanceId", signed=True)
        if body["testFlag"] not in (0, 1):  # Integer(2) (A39)
            return answer(INVALID, "testFlag", signed=True)
        if "flag" in body and body["flag"] not in KIT_FLAGS.get(call, {0, 1, 2, 3}):
            return answer(INVALID, "flag", signed=True)
        scope = (call, body["instanceId"], str(body.get("tenantId", "")))
        with ledger.lock:  # adds and deletes are idempotent and need no instance (§7.4)
            if call == "authSync" and isinstance(body["userList"], list):
                for user in body["userList"]:
                    if isinstance(user, dict):
                        ledger.kit[(*scope, body["appId"], str(user.get("userName")))] = body["flag"] in (
                            1,
                            2,
                        )
            elif call == "singleOrgSync":
                ledger.kit[(*scope, body["orgCode"])] = body["flag"] in (1, 2)
            else:
                ledger.kit[scope] = body.get("flag", 1) == 1
        return answer(SUCCESS, signed=True)

    def new_instance(body: dict[str, Any]) -> Response:
        key = (body["orderId"], body["orderLineId"])
        with ledger.lock:
            instance = ledger.by_order_line.get(key)
            if instance is None:
                instance = Instance(instance_id=uuid.uuid4().hex, order_id=body["orderId"])
                ledger.by_order_line[key] = instance
                ledger.by_id[instance.instance_id] = instance
        return answer(
            SUCCESS,
            instanceId=instance.instance_id,
            appInfo={"frontEndUrl": f"https://saas.example.com/{instance.instance_id}"},
        )

    def live(instance_id: str) -> Instance | None:
        instance = ledger.by_id.get(instance_id)
        return None if instance is None or instance.released else instance

    def refresh_instance(body: dict[str, Any]) -> Response:
        if body["scene"] not in SCENES:
            return answer(INVALID, "scene")
        if (instance := live(body["instanceId"])) is None:
            return answer(NO_INSTANCE, "no such instance")
        instance.expire_time = body["expireTime"]
        return answer(SUCCESS)

    def upgrade_instance(body: dict[str, Any]) -> Response:
        return answer(SUCCESS) if live(body["instanceId"]) else answer(NO_INSTANCE, "no such instance")

    def update_status(body: dict[str, Any]) -> Response:
        if body["status"] not in STATUSES:
            return answer(INVALID, "status")
        if (instance := live(body["instanceId"])) is None:
            return answer(NO_INSTANCE, "no such instance")
        instance.status = "FROZEN" if body["status"] == "FREEZE" else "NORMAL"
        return answer(SUCCESS)

    def query_instance(body: dict[str, Any]) -> Response:
        ids = [part for part in body["instanceId"].split(",") if part]
        if not ids or len(ids) > QUERY_LIMIT:
            return answer(INVALID, "instanceId")
        found = [ledger.by_id[i] for i in ids if i in ledger.by_id]
        return answer(
            SUCCESS,
            info=[
                {
                    "instanceId": i.instance_id,
                    "appInfo": {"frontEndUrl": f"https://saas.example.com/{i.instance_id}"},
                }
                for i in found
            ],
        )

    def release_instance(body: dict[str, Any]) -> Response:
        instance = ledger.by_id.get(body["instanceId"])
        if instance is None:
            return answer(NO_INSTANCE, "no such instance")
        instance.released = True  # a resend of a release answers success again (§4.6, U6)
        return answer(SUCCESS)

    def change_check(body: dict[str, Any]) -> Response:
        return answer(SUCCESS) if live(body["instanceId"]) else answer(NO_INSTANCE, "no such instance")

    HANDLERS = {
        "newInstance": new_instance,
        "refreshInstance": refresh_instance,
        "upgradeInstance": upgrade_instance,
        "updateInstanceStatus": update_status,
        "queryInstance": query_instance,
        "releaseInstance": release_instance,
        "changeInstanceCheck": change_check,
        **license_handlers(answer),
        "getLicenseAsync": license_async_handler(answer),
    }
    return app


if __name__ == "__main__":  # pragma: no cover - a manual aid
    import sys

    create_app(os.environ.get("PAGE_MERCHANT_KEY", "page-merchant-key")).run(
        host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    )
