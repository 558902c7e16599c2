"""What the reference merchant does for each activity of the produce interface.

Each handler receives the already authenticated and schema-checked fields (all strings) and
returns the answer body. v1 and v2 share these handlers: the two generations differ only in
how a call is signed and carried, not in what it means.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from simulator.protocol import EncryptType, ResultCode, encrypt
from simulator.protocol.limits import QUERY_INSTANCE_LIMIT
from simulator.reference.store import ACTIVE, EXPIRED, FROZEN, RELEASED, MerchantStore

Answer = dict[str, object]


def usage_info(now: datetime | None = None) -> dict[str, str]:
    """A pay-per-use instance's UsageInfo in a queryInstance answer (docs/protocol.md §4.5): the
    console requires ``usageValue`` and ``statisticalTime`` whenever one is returned [S32]. The
    rest of the structure is not published (U16): the reference merchant meters nothing, so it
    reports a usage of 0 as of now, in the usage-push time format (§8.3)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {"usageValue": "0", "statisticalTime": moment.strftime("%Y%m%dT%H%M%SZ")}


def answer(code: ResultCode, message: str | None = None, **fields: object) -> Answer:
    return {"resultCode": code.value, "resultMsg": message or code.meaning, **fields}


@dataclass
class Merchant:
    """The merchant's business logic over its store; one per app."""

    store: MerchantStore
    access_key: str
    base_url: str
    encrypt_type: EncryptType = EncryptType.AES256
    metered: bool = False
    """Whether the product is sold pay-per-use (``MerchantConfig.billing``): queryInstance then
    reports each instance's usage as a UsageInfo (docs/protocol.md §4.5)."""

    def handle(self, fields: dict[str, str]) -> Answer:
        method = HANDLERS.get(fields.get("activity", ""))
        if method is None:
            return answer(ResultCode.INVALID_PARAMETER, f"unknown activity {fields.get('activity')!r}")
        handler: Callable[[dict[str, str]], Answer] = getattr(self, method)
        return handler(fields)

    # --- SaaS instances --------------------------------------------------------------------

    def new_instance(self, fields: dict[str, str]) -> Answer:
        # The secrets are encrypted once, when the instance is first created, so a resend
        # reads back byte-identical appInfo instead of minting new credentials.
        instance = self.store.create_instance(
            fields,
            app_user_name=self._encrypt(f"admin-{fields['orderId'][-16:]}"),
            app_password=self._encrypt(secrets.token_urlsafe(12)),
        )
        return answer(
            ResultCode.SUCCESS,
            instanceId=instance.instance_id,
            encryptType=self.encrypt_type.value,
            appInfo=self._app_info(instance.instance_id, instance.app_user_name, instance.app_password),
        )

    def refresh_instance(self, fields: dict[str, str]) -> Answer:
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        changes: dict[str, object] = {"expire_time": fields["expireTime"]}
        if fields.get("scene") == "TRIAL_TO_FORMAL":
            changes["trial"] = 0
            changes.update({column: fields[name] for name, column in _PRODUCT_COLUMNS if name in fields})
        self.store.update_instance(fields["instanceId"], **changes)
        return answer(ResultCode.SUCCESS)

    def update_instance_status(self, fields: dict[str, str]) -> Answer:
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        status = FROZEN if fields["status"] == "FREEZE" else ACTIVE
        self.store.update_instance(fields["instanceId"], status=status)
        return answer(ResultCode.SUCCESS)

    def expire_instance(self, fields: dict[str, str]) -> Answer:
        """V1 expireInstance (docs/protocol.md §5.4): freeze the expired instance."""
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        self.store.update_instance(fields["instanceId"], status=FROZEN)
        return answer(ResultCode.SUCCESS)

    def instance_status(self, fields: dict[str, str]) -> Answer:
        """V1 instanceStatus (docs/protocol.md §5.6), pay-per-use: FREEZE freezes, NORMAL unfreezes."""
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        status = FROZEN if fields["instanceStatus"] == "FREEZE" else ACTIVE
        self.store.update_instance(fields["instanceId"], status=status)
        return answer(ResultCode.SUCCESS)

    def release_instance(self, fields: dict[str, str]) -> Answer:
        instance = self.store.instance(fields["instanceId"])
        if instance is None:
            return answer(ResultCode.INSTANCE_NOT_FOUND)
        # Releasing twice is a resend, not an error (practice).
        self.store.update_instance(instance.instance_id, status=RELEASED)
        return answer(ResultCode.SUCCESS)

    def upgrade_instance(self, fields: dict[str, str]) -> Answer:
        """upgradeInstance (docs/protocol.md §4.3), and V1's ``upgrade`` (§5.7).

        The V2 body names only the upgrade order; the new product is learnt from Querying an
        Order with that order (§8.1). V1's body carries productId and skuCode: kept when sent.
        """
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        changes = {column: fields[name] for name, column in _PRODUCT_COLUMNS if name in fields}
        if changes:
            self.store.update_instance(fields["instanceId"], **changes)
        return answer(ResultCode.SUCCESS)

    def query_instance(self, fields: dict[str, str]) -> Answer:
        instance_ids = [part for part in fields["instanceId"].split(",") if part]
        if not instance_ids or len(instance_ids) > QUERY_INSTANCE_LIMIT:
            return answer(ResultCode.INVALID_PARAMETER, f"between 1 and {QUERY_INSTANCE_LIMIT} instanceIds")
        info: list[dict[str, object]] = [
            {
                "instanceId": item.instance_id,
                "appInfo": self._app_info(item.instance_id, item.app_user_name, item.app_password),
            }
            for item in self.store.instances(instance_ids)
        ]
        if self.metered:
            for entry in info:
                entry["usageInfo"] = usage_info()
        return answer(ResultCode.SUCCESS, encryptType=self.encrypt_type.value, info=info)

    def change_instance_check(self, fields: dict[str, str]) -> Answer:
        if (refused := self._refuse_unless_live(fields["instanceId"])) is not None:
            return refused
        return answer(ResultCode.SUCCESS)

    # --- licence products ------------------------------------------------------------------

    def get_license(self, fields: dict[str, str]) -> Answer:
        return answer(ResultCode.SUCCESS, license=self.store.create_license(fields))

    def get_license_async(self, fields: dict[str, str]) -> Answer:
        """getLicenseAsync (§6.2): the same eventId + deviceFingerprint get the same licence."""
        return answer(ResultCode.SUCCESS, license=self.store.create_license_async(fields))

    def refresh_license(self, fields: dict[str, str]) -> Answer:
        return self._change_license(fields, expire_time=fields["expireTime"], status=ACTIVE)

    def expire_license(self, fields: dict[str, str]) -> Answer:
        return self._change_license(fields, status=EXPIRED)

    def release_license(self, fields: dict[str, str]) -> Answer:
        status = self.store.license_status(fields["license"])
        if status is None:
            return answer(ResultCode.INSTANCE_NOT_FOUND, "unknown license")
        self.store.update_license(fields["license"], status=RELEASED)
        return answer(ResultCode.SUCCESS)

    def _change_license(self, fields: dict[str, str], **changes: object) -> Answer:
        status = self.store.license_status(fields["license"])
        if status is None or status == RELEASED:
            return answer(ResultCode.INSTANCE_NOT_FOUND, "unknown or released license")
        self.store.update_license(fields["license"], **changes)
        return answer(ResultCode.SUCCESS)

    # --- helpers ---------------------------------------------------------------------------

    def _refuse_unless_live(self, instance_id: str) -> Answer | None:
        instance = self.store.instance(instance_id)
        if instance is None or instance.status == RELEASED:
            return answer(ResultCode.INSTANCE_NOT_FOUND)
        return None

    def _encrypt(self, plaintext: str) -> str:
        return encrypt(plaintext, self.access_key, self.encrypt_type)

    def _app_info(self, instance_id: str, user_name: str, password: str) -> dict[str, str]:
        return {
            "frontEndUrl": f"{self.base_url}/app/{instance_id}",
            "adminUrl": f"{self.base_url}/admin/{instance_id}",
            "userName": user_name,
            "password": password,
            "memo": "reference merchant",
        }


_PRODUCT_COLUMNS = (("productId", "product_id"), ("skuCode", "sku_code"))

HANDLERS: dict[str, str] = {
    "newInstance": "new_instance",
    "refreshInstance": "refresh_instance",
    "updateInstanceStatus": "update_instance_status",
    "releaseInstance": "release_instance",
    "upgradeInstance": "upgrade_instance",
    "upgrade": "upgrade_instance",
    "expireInstance": "expire_instance",
    "instanceStatus": "instance_status",
    "queryInstance": "query_instance",
    "changeInstanceCheck": "change_instance_check",
    "getLicense": "get_license",
    "getLicenseAsync": "get_license_async",
    "refreshLicense": "refresh_license",
    "expireLicense": "expire_license",
    "releaseLicense": "release_license",
}
"""activity -> the :class:`Merchant` method answering it (looked up on the instance, so a
subclass can override one activity)."""
V1_ONLY = frozenset({"upgrade", "expireInstance", "instanceStatus"})
"""V1's own activities (docs/protocol.md §5.4, §5.6, §5.7: ``upgrade`` is V1's upgradeInstance);
not V2 activities."""
V2_ACTIVITIES = frozenset(HANDLERS) - V1_ONLY
"""What the V2 route answers (docs/protocol.md §4, and the License activities §6)."""
PRODUCE_ACTIVITIES = frozenset(
    {"newInstance", "refreshInstance", "expireInstance", "releaseInstance", "instanceStatus", "upgrade"}
)
"""What the V1 route answers: the V1 activity set (docs/protocol.md §5.1). No V1 page lists a
queryInstance, updateInstanceStatus, upgradeInstance or changeInstanceCheck (U21)."""
