"""Signed HTTP to the merchant over one ``requests.Session``; every call becomes an :class:`Exchange`.

The transport never raises for what the merchant does: a timeout, a refused connection, a
reset, an oversized or undecodable body all end up in ``Exchange.error`` so that checks can
report them as findings. Only a programming error on our side raises.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests

from simulator.protocol import format_v1_timestamp, sign_sync, sign_v1, sign_v2

DEFAULT_TIMEOUT = 10.0
"""ASSUMPTION: how long the marketplace waits for an answer (not published), configurable."""
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 1 << 20
"""Read at most 1 MiB of an answer; a merchant's answer is a few hundred bytes."""

PRODUCE, SYNC = "produce", "sync"


@dataclass(frozen=True)
class Target:
    """Where the merchant is and the keys it shares with the marketplace."""

    url: str
    access_key: str
    protocol: str = "v2"
    sync_url: str | None = None
    sync_key: str | None = None
    rsa_public_key: bytes | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __repr__(self) -> str:  # keys never show up in a repr, a log line or a traceback
        return f"Target(url={self.url!r}, protocol={self.protocol!r}, sync_url={self.sync_url!r})"

    def sync_call_url(self, call: str) -> str:
        base = self.sync_url or f"{self.url.rstrip('/')}/v2"
        return f"{base.rstrip('/')}/{call}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret string a report must never show."""
        return tuple(key for key in (self.access_key, self.sync_key) if key)


@dataclass
class Exchange:
    """One request the marketplace sent and what came back (or why nothing usable did)."""

    interface: str
    protocol: str
    activity: str
    method: str
    url: str
    fields: dict[str, Any]
    request_headers: dict[str, str]
    request_body: bytes
    started_at: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    label: str = ""
    attempt: int = 1
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    elapsed: float = 0.0
    error: str | None = None
    timed_out: bool = False

    @property
    def answered(self) -> bool:
        return self.error is None and self.status is not None

    @property
    def response_json(self) -> Any:
        """The answer parsed as JSON, or None when it is not JSON (or did not arrive)."""
        if not self.answered:
            return None
        try:
            return json.loads(self.response_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None

    @property
    def result_code(self) -> str | None:
        body = self.response_json
        code = body.get("resultCode") if isinstance(body, dict) else None
        return code if isinstance(code, str) else None

    def answer_field(self, name: str) -> Any:
        body = self.response_json
        return body.get(name) if isinstance(body, dict) else None


@dataclass(frozen=True)
class Tamper:
    """How a security check bends an otherwise correct call."""

    signature: str | None = None
    timestamp_ms: int | None = None
    omit: frozenset[str] = frozenset()
    body: bytes | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def new_nonce() -> str:
    return secrets.token_hex(16)


class Transport:
    """Sends signed marketplace calls to one :class:`Target` and records them."""

    def __init__(
        self,
        target: Target,
        session: requests.Session | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.target = target
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "koosim (KooGallery marketplace simulator)"
        self._on_exchange = on_exchange

    def close(self) -> None:
        self.session.close()

    # --- the produce interface (and licence activities) --------------------------------------

    def send(
        self, fields: Mapping[str, Any], *, tamper: Tamper | None = None, label: str = "", attempt: int = 1
    ) -> Exchange:
        """Send one produce-interface call in the target's protocol generation."""
        if self.target.protocol == "v1":
            exchange = self._prepare_v1(fields, tamper or Tamper())
        else:
            exchange = self._prepare_v2(fields, tamper or Tamper())
        exchange.label, exchange.attempt = label, attempt
        return self.perform(exchange)

    def _prepare_v2(self, fields: Mapping[str, Any], tamper: Tamper) -> Exchange:
        body = dict(fields)
        timestamp = str(tamper.timestamp_ms if tamper.timestamp_ms is not None else now_ms())
        nonce = new_nonce()
        query = {
            "signature": sign_v2(body, self.target.access_key, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        if tamper.signature is not None:
            query["signature"] = tamper.signature
        query = {name: value for name, value in query.items() if name not in tamper.omit}
        payload = tamper.body if tamper.body is not None else json_bytes(body)
        return Exchange(
            interface=PRODUCE,
            protocol="v2",
            activity=str(body.get("activity", "")),
            method="POST",
            url=_with_query(self.target.url, query),
            fields=body,
            request_headers={"Content-Type": "application/json;charset=UTF-8"},
            request_body=payload,
            started_at=time.time(),
        )

    def _prepare_v1(self, fields: Mapping[str, Any], tamper: Tamper) -> Exchange:
        # v1 carries everything as query strings; a structured value travels as its JSON text.
        params = {
            name: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            for name, value in fields.items()
            if value is not None
        }
        moment = datetime.now(UTC)
        if tamper.timestamp_ms is not None:
            moment = datetime.fromtimestamp(tamper.timestamp_ms / 1000, UTC)
        params["timeStamp"] = format_v1_timestamp(moment)
        params["authToken"] = sign_v1(params, self.target.access_key)
        if tamper.signature is not None:
            params["authToken"] = tamper.signature
        params = {name: value for name, value in params.items() if name not in tamper.omit}
        return Exchange(
            interface=PRODUCE,
            protocol="v1",
            activity=params.get("activity", ""),
            method="GET",
            url=_with_query(self.target.url, params),
            fields=params,
            request_headers={},
            request_body=b"",
            started_at=time.time(),
        )

    # --- user-authorization sync ---------------------------------------------------------------

    def sync(
        self,
        call: str,
        body: Mapping[str, Any],
        *,
        tamper: Tamper | None = None,
        label: str = "",
        attempt: int = 1,
    ) -> Exchange:
        tamper = tamper or Tamper()
        sync_key = self.target.sync_key or ""
        timestamp = str(tamper.timestamp_ms if tamper.timestamp_ms is not None else now_ms())
        nonce = new_nonce()
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "x-timestamp": timestamp,
            "x-nonce": nonce,
            "x-sign": sign_sync(body, sync_key, timestamp, nonce),
        }
        if tamper.signature is not None:
            headers["x-sign"] = tamper.signature
        headers = {name: value for name, value in headers.items() if name not in tamper.omit}
        exchange = Exchange(
            interface=SYNC,
            protocol="sync",
            activity=call,
            method="POST",
            url=self.target.sync_call_url(call),
            fields=dict(body),
            request_headers=headers,
            request_body=tamper.body if tamper.body is not None else json_bytes(body),
            started_at=time.time(),
            label=label,
            attempt=attempt,
        )
        return self.perform(exchange)

    # --- the wire --------------------------------------------------------------------------------

    def perform(self, exchange: Exchange) -> Exchange:
        """Send a prepared exchange and fill in what came back; never raises for the merchant's doing."""
        started = time.perf_counter()
        deadline = started + self.target.timeout
        try:
            response = self.session.request(
                exchange.method,
                exchange.url,
                data=exchange.request_body or None,
                headers=exchange.request_headers,
                timeout=(self.target.connect_timeout, self.target.timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                exchange.status = response.status_code
                exchange.response_headers = dict(response.headers)
                exchange.response_body = _read_capped(response.iter_content(8192), deadline)
        except _BodyTooLarge:
            exchange.error = f"the answer is larger than {MAX_RESPONSE_BYTES} bytes"
        except _DeadlinePassed:
            exchange.error = f"no complete answer within {self.target.timeout:g} s"
            exchange.timed_out = True
        except requests.exceptions.ConnectTimeout:
            exchange.error = f"could not connect within {self.target.connect_timeout:g} s"
        except requests.exceptions.ReadTimeout:
            exchange.error = f"no answer within {self.target.timeout:g} s"
            exchange.timed_out = True
        except requests.exceptions.ConnectionError as exc:
            exchange.error = f"connection failed: {_root_cause(exc)}"
        except requests.exceptions.RequestException as exc:
            exchange.error = f"HTTP error: {_root_cause(exc)}"
        exchange.elapsed = time.perf_counter() - started
        if exchange.error is not None:
            exchange.status = None
        if self._on_exchange is not None:
            self._on_exchange(exchange)
        return exchange


class _BodyTooLarge(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


def _read_capped(chunks: Iterable[bytes], deadline: float) -> bytes:
    """Read a streamed body, giving up past ``MAX_RESPONSE_BYTES`` or the call's deadline."""
    received = bytearray()
    for chunk in chunks:
        received += chunk
        if len(received) > MAX_RESPONSE_BYTES:
            raise _BodyTooLarge
        if time.perf_counter() > deadline:
            raise _DeadlinePassed
    return bytes(received)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(body), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_query(url: str, query: Mapping[str, str]) -> str:
    # quote_via default (quote_plus) percent-encodes '+' as %2B, as the marketplace does; a
    # merchant that decodes '+' as a space gets a different authToken (protocol.md §3).
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(query)}" if query else url
