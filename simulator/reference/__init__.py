"""The bundled reference merchant: a small Flask server that answers the marketplace correctly.

It is the default target of every ``koosim`` command and a model a seller can copy: it verifies
every signature, validates every field against ``contracts/``, keeps its instances in SQLite
with the idempotency rules enforced by UNIQUE constraints, and encrypts appInfo secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from simulator.protocol import EncryptType, ResultCode, generate_rsa_private_key, public_key_pem
from simulator.reference import produce, sync
from simulator.reference.activities import Merchant, answer
from simulator.reference.conversation import ConversingMerchant
from simulator.reference.market import MarketClient
from simulator.reference.store import MerchantStore

DEMO_ACCESS_KEY = "koosim-demo-access-key"
DEMO_SYNC_KEY = "koosim-demo-sync-key"
"""Published demo keys, used when no key is configured: never use them for a real product."""

PRODUCE_PATH = "/produceAPI"

__all__ = [
    "DEMO_ACCESS_KEY",
    "DEMO_SYNC_KEY",
    "PRODUCE_PATH",
    "MerchantConfig",
    "create_app",
    "generate_rsa_private_key",
    "public_key_pem",
]


@dataclass
class MerchantConfig:
    access_key: str = DEMO_ACCESS_KEY
    sync_key: str = DEMO_SYNC_KEY
    database: str = ":memory:"
    protocols: frozenset[str] = frozenset({"v1", "v2"})
    encrypt_type: EncryptType = EncryptType.AES256
    public_url: str = "https://merchant.example"
    rsa_private_key: bytes = field(default_factory=generate_rsa_private_key, repr=False)
    billing: str = "period"
    """The product's billing mode, as ``--billing`` names it (``period``, ``one-time``,
    ``on-demand``): a pay-per-use merchant reports usage in queryInstance answers (§4.5)."""
    market_url: str | None = None
    """The marketplace's open-API base URL (``--market-url``): when set, newInstance asks Querying an
    Order what was bought and pay-per-use usage is pushed there (reference/conversation.py)."""
    market_ak: str = ""
    market_sk: str = field(default="", repr=False)
    """The API gateway's AK/SK for the open APIs (KOOSIM_MARKET_AK / KOOSIM_MARKET_SK, §2.5)."""
    async_provisioning: bool = False
    """Answer newInstance at once and report the instance on a later queryInstance (§4.1-c, §10.2)."""


def create_app(config: MerchantConfig | None = None) -> Flask:
    """Build the reference merchant's Flask app."""
    config = config or MerchantConfig()
    app = Flask(__name__)
    app.config.update(
        KOOSIM_ACCESS_KEY=config.access_key,
        KOOSIM_SYNC_KEY=config.sync_key,
        KOOSIM_PROTOCOLS=config.protocols,
        KOOSIM_RSA_PRIVATE_KEY=config.rsa_private_key,
    )
    store = MerchantStore(config.database)
    app.extensions["koosim.merchant"] = _merchant(config, store)
    app.register_blueprint(produce.bp)
    app.register_blueprint(sync.bp)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response | HTTPException:
        # Routing errors (404, 405) keep their status; anything else is the merchant's own
        # fault, which the protocol reports as 000005 inside an HTTP 200.
        if isinstance(error, HTTPException):
            return error
        app.logger.exception("unexpected error while answering the marketplace")
        v1_call = request.method == "GET" and request.path == PRODUCE_PATH
        return produce.json_response(
            answer(ResultCode.INTERNAL_ERROR), sign_with=config.access_key if v1_call else None
        )

    return app


def _merchant(config: MerchantConfig, store: MerchantStore) -> Merchant:
    """The plain merchant, or the one that talks back when the open APIs or async provisioning
    are configured."""
    if config.market_url is None and not config.async_provisioning:
        return Merchant(
            store=store,
            access_key=config.access_key,
            base_url=config.public_url,
            encrypt_type=config.encrypt_type,
            metered=config.billing == "on-demand",
        )
    market = None
    if config.market_url is not None:
        market = MarketClient(
            config.market_url, config.market_ak, config.market_sk, usage_key=config.access_key
        )
    return ConversingMerchant(
        store=store,
        access_key=config.access_key,
        base_url=config.public_url,
        encrypt_type=config.encrypt_type,
        metered=config.billing == "on-demand",
        market=market,
        async_provisioning=config.async_provisioning,
    )
