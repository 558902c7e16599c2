"""The marketplace's open API during a command that sends calls (verify, play, explore, load,
serve): a small WSGI server on 127.0.0.1 in a thread, started before the first call and stopped
when the command ends.

It answers Querying an Order for every order the command sells (an
:class:`~simulator.openapi.OrderBook` watching the model's orders) and the nine MOCK orders, takes
usage pushes signed with the target's access key, and puts every call, refused or not, in its
:class:`~simulator.openapi.InboundLog`: the run under way listens there (``Run.inbound``, the
history, the reports). See :mod:`simulator.server.openapi` for the HTTP side.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from simulator.errors import UsageError
from simulator.model import Order, watching_orders
from simulator.openapi import (
    INBOUND_LOG_CAPACITY,
    USAGE_TIME_FORMAT,
    InboundCall,
    InboundLog,
    OrderBook,
    UsagePushResult,
)
from simulator.server.openapi import OpenApiService, install
from simulator.server.state import MarketState
from simulator.serving import BackgroundServer

CA_DIR = Path(".koosim") / "market-ca"
"""Where ``--market-tls`` keeps koosim's own certificate authority (created once, reused): a
merchant trusts ``ca.pem`` once, and every run's certificate is issued by it."""
SERVER_CERT_DAYS = 7

MAX_REQUEST_BYTES = 1 << 20
"""Largest body the open API reads: 1000 usage records fit in well under this."""
HOST = "127.0.0.1"


def create_market_app(service: OpenApiService) -> Flask:
    """A Flask app that serves only the open APIs of ``service``; anything else is 4xx JSON."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    install(app, service)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 400
        message = f"{error.name}: no open API at {request.path[:200]!r}"
        return jsonify(error_msg=message, error_code=f"KOOSIM.HTTP_{status}", request_id=""), status

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response, int]:  # pragma: no cover - a bug
        app.logger.exception("unexpected error in the open API")
        return jsonify(error_msg=f"internal error: {type(error).__name__}", error_code="MKT.0999"), 500

    return app


def _check_free(port: int) -> None:
    """Raise OSError when ``port`` cannot be bound on 127.0.0.1 (0 always can)."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((HOST, port))


def tls_context(ca_dir: Path = CA_DIR) -> ssl.SSLContext:
    """A server context with a fresh certificate for 127.0.0.1 and localhost issued by koosim's
    CA in ``ca_dir`` (created on first use: ``ca.pem``, and ``ca-key.pem`` readable by its owner
    only). A merchant that validates certificates strictly (§8.1) trusts ``ca.pem``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_path, ca_key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    now = datetime.now(UTC)
    if ca_cert_path.is_file() and ca_key_path.is_file():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "koosim marketplace test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_bytes = ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(ca_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key_bytes)
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{ca_key_path} is not koosim's CA key: remove {ca_dir} to make a new CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SERVER_CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="koosim-tls-") as scratch:
        chain, key_file = Path(scratch) / "chain.pem", Path(scratch) / "key.pem"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context.load_cert_chain(chain, key_file)
    return context


def market_alone(service: OpenApiService, port: int = 0, tls_ca: Path | None = None) -> BackgroundServer:
    """A server (not started) of ``service``'s open APIs alone on 127.0.0.1:``port``, HTTPS
    with a certificate of the CA in ``tls_ca`` when given; UsageError when the port is taken."""
    try:
        _check_free(port)
        context = None if tls_ca is None else tls_context(tls_ca)
        return BackgroundServer(create_market_app(service), HOST, port, context)
    except (OSError, SystemExit) as exc:  # werkzeug exits on a port in use instead of raising
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the port is in use"
        raise UsageError(
            f"cannot serve the marketplace open API on {HOST}:{port}: {reason} "
            "(--market-port, KOOSIM_MARKET_PORT; 0 picks a free port)"
        ) from None


class MarketServer:
    """The open API of one command: its orders, its inbound calls, its address.

    ``usage_key`` is the target's access key (the usage push's signing key, §2.6), set once the
    target is known (:attr:`usage_key`). Use as a context manager: the server listens, and every
    order the model makes in the block is answerable.
    """

    def __init__(
        self,
        *,
        market_ak: str | None = None,
        market_sk: str | None = None,
        billing: str = "period",
        port: int = 0,
        now: Callable[[], datetime] | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        """``tls_ca``: serve HTTPS with a certificate of the CA in that directory (:func:`tls_context`)."""
        self.market_ak, self.market_sk = market_ak, market_sk
        self.tls_ca = tls_ca
        self.usage_key: str | None = None
        self.book = OrderBook(billing, now)
        self.log = InboundLog()
        self.usage: deque[tuple[InboundCall, UsagePushResult]] = deque(maxlen=INBOUND_LOG_CAPACITY)
        """The accepted usage pushes (the most recent ones) and the records each carried."""
        self.service = OpenApiService(
            keys=self._keys,
            usage_key=lambda: self.usage_key,
            find_order=self.book.find,
            log=self.log,
            now=now or (lambda: datetime.now(UTC)),
            on_usage=lambda call, result: self.usage.append((call, result)),
        )
        self._server = market_alone(self.service, port, tls_ca)
        self._stack = ExitStack()

    def _keys(self) -> dict[str, str]:
        return {self.market_ak: self.market_sk} if self.market_ak and self.market_sk else {}

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key for key in (self.market_ak, self.market_sk) if key)

    def header(self) -> str:
        """The run header's line: where the merchant's marketplace base URL must point."""
        line = f"marketplace open API: {self.base_url} — point your merchant's marketplace base URL here"
        if self.tls_ca is not None:
            line += f" (HTTPS: trust the CA {self.tls_ca / 'ca.pem'}; never turn certificate validation off)"
        if not self._keys():
            line += " (no KOOSIM_MARKET_AK / KOOSIM_MARKET_SK: every call is refused with APIGW.0303)"
        return line

    def __enter__(self) -> MarketServer:
        self._stack.enter_context(self._server)
        self._stack.enter_context(watching_orders(self.book.add))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


@contextmanager
def market_server(settings: Any) -> Iterator[MarketServer]:
    """The open API for a command with these :class:`~simulator.settings.Settings`."""
    with MarketServer(
        market_ak=settings.market_ak,
        market_sk=settings.market_sk,
        billing=settings.profile.billing,
        port=settings.market_port,
        tls_ca=CA_DIR if settings.market_tls else None,
    ) as server:
        yield server


# --- koosim serve ----------------------------------------------------------------------------


def serve_service(market: MarketState) -> OpenApiService:
    """The open APIs of ``koosim serve``: keys from the console's settings, orders sold by this
    server (its own book) or kept in the history by earlier runs, inbound calls and usage into
    the history. The book watches orders until ``market.close()``."""
    book = OrderBook(market.settings.profile.billing)
    market.on_close(watching_orders(book.add))
    log = market.open_api_log = InboundLog()

    def keys() -> dict[str, str]:
        settings = market.settings
        return {settings.market_ak: settings.market_sk} if settings.market_ak and settings.market_sk else {}

    def find(order_id: str) -> dict[str, Any] | None:
        book.billing = market.settings.profile.billing
        return book.find(order_id) or _stored_order(market, order_id)

    def keep(call: InboundCall) -> None:
        from simulator.engine.record import inbound_exchange
        from simulator.store import INBOUND

        try:
            market.store.history.add_exchange(
                None, inbound_exchange(call), market.secrets, direction=INBOUND, verdict=call.verdict
            )
        except Exception:  # the merchant gets its answer even when the history cannot keep it
            logging.getLogger(__name__).exception("could not record an inbound call")

    def usage(call: InboundCall, result: UsagePushResult) -> None:
        records = [
            {
                "instance_id": record.instance_id,
                "metering_sn": record.metering_sn,
                "record_time": record.record_time.strftime(USAGE_TIME_FORMAT),
                "begin_time": record.begin_time.strftime(USAGE_TIME_FORMAT),
                "end_time": record.end_time.strftime(USAGE_TIME_FORMAT),
                "usage_value": str(record.usage_value),
            }
            | ({"relate_pkg_instance": record.relate_pkg_instance} if record.relate_pkg_instance else {})
            for record in result.records
        ]
        market.store.marketplace.add_usage(records, call.id, market.secrets)

    log_listening = log.listen(keep)
    market.on_close(log_listening)
    return OpenApiService(
        keys=keys,
        usage_key=lambda: market.settings.access_key,
        find_order=find,
        log=log,
        on_usage=usage,
    )


def _stored_order(market: MarketState, order_id: str) -> dict[str, Any] | None:
    """An order an earlier run or server life sent, from what the history kept of it: its call's
    fields (the customer, product and SKU koosim sells by default when the call did not carry
    them, as newInstance V2 does not, §4.1)."""
    lines = market.store.marketplace.order_lines(order_id)
    if not lines:
        return None
    book = OrderBook(
        market.settings.profile.billing, lambda: datetime.fromtimestamp(lines[0]["created_at"], UTC)
    )
    for line in lines:
        fields = line["fields"]
        book.add(
            Order(
                order_id=order_id,
                order_line_id=line["order_line_id"],
                customer_id=str(fields.get("customerId") or "unknown"),
                product_id=str(fields.get("productId") or Order.product_id),
                sku_code=str(fields.get("skuCode") or Order.sku_code),
                trial=fields.get("trialFlag") == "1",
                test=fields.get("testFlag") == "1",
                expire_time=str(fields.get("expireTime") or ""),
            )
        )
    return book.find(order_id)
