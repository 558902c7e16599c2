"""Signed HTTP to the merchant over one ``requests.Session``; every call becomes an :class:`Exchange`.

The transport never raises for what the merchant does: a timeout, a refused connection, a
reset, an oversized or undecodable body all end up in ``Exchange.error`` so that checks can
report them as findings. Only a programming error on our side raises.

Every call is bounded, whatever the merchant does on the wire (docs/hostile.md):

- **connect timeout**: :attr:`Target.connect_timeout` (5 s), never more than the call's deadline;
- **per-read timeout**: :attr:`Target.timeout` (5 s, the published deadline) without a byte;
- **total deadline**: :attr:`Target.timeout` for the whole call, headers and body. A merchant
  that sends a byte a second never trips the per-read timeout, so a watchdog thread
  (:class:`_Watchdog`) shuts the call's socket when its deadline passes, which ends any read;
- **byte cap**: at most :data:`MAX_RESPONSE_BYTES` of an answer are read.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import secrets
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions

from simulator.clock import DEFAULT_TIME_SCALE, Clock, ScaledClock
from simulator.errors import TimeBudget
from simulator.model import kit_envelope, v1_fields
from simulator.protocol import (
    DecryptionError,
    EncryptType,
    canonical_body,
    decrypt,
    format_v1_timestamp,
    sign_sync,
    sign_v1,
    sign_v2,
)
from simulator.protocol.profiles import DEFAULT_PROFILE, Profile
from simulator.protocol.vocabulary import KIT_PATHS, app_infos

DEFAULT_TIMEOUT = 5.0
"""How long the marketplace waits for an answer: 5 seconds, published on the V2 overall
requirements page [S24] (docs/protocol.md §3.3, A1); ``--timeout`` overrides it."""
DEADLINE_SOURCE = "docs/protocol.md §3.3 [S24]"
"""Where the default deadline is published, for run headers."""
DEFAULT_CONNECT_TIMEOUT = 5.0
ENCRYPT_TYPES = ("1", "2")
"""The seller's encryption choice: ``1`` AES-256, ``2`` AES-128 (docs/protocol.md §2.7, U20)."""
DEFAULT_ENCRYPT_TYPE = "1"
MAX_RESPONSE_BYTES = 1 << 20
"""Read at most 1 MiB of an answer; a merchant's answer is a few hundred bytes."""
MAX_NUMBER_DIGITS = 4300
"""Longest integer an answer may hold (Python's own default limit): converting a longer one
takes time quadratic in its length, and no protocol field is a number anyway."""
MIN_LEARNED_SECRET_CHARS = 6
"""Shorter plaintexts are not redacted from reports: hiding every "1234" would garble them."""
ENCRYPTED_REQUEST_FIELDS = ("email", "mobilePhone")
"""v1 request fields the marketplace sends encrypted (protocol.md §5)."""

PRODUCE, SYNC = "produce", "sync"


class LearnedSecrets:
    """Plaintexts learned during a run, in the order learned; reading them is a cheap snapshot.

    Append-only and thread-safe: reports read the snapshot once per exchange, so it is rebuilt
    only when a new plaintext arrives, never sorted or copied on read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self.snapshot: tuple[str, ...] = ()

    def add(self, plaintext: str) -> None:
        with self._lock:
            if plaintext not in self._known:
                self._known.add(plaintext)
                self.snapshot = (*self.snapshot, plaintext)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
            self.snapshot = ()


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
    encrypt_type: str = DEFAULT_ENCRYPT_TYPE
    """How the seller chose to encrypt: v1 e-mail/mobile values are sent under it (§2.7, U20)."""
    profile: Profile = DEFAULT_PROFILE
    """What the merchant sells (docs/protocol.md §1.2): the interfaces koosim exercises."""
    learned_secrets: LearnedSecrets = field(default_factory=LearnedSecrets, repr=False, compare=False)
    """Plaintexts the transport decrypted during the run (appInfo passwords, v1 e-mails and
    phone numbers): a merchant may echo them, so they are redacted like the keys. Shared by
    the copies ``dataclasses.replace`` makes of this target."""
    budget: TimeBudget | None = field(default=None, repr=False, compare=False)
    """The whole run's time budget (``--max-time``): once spent, :meth:`Transport.perform`
    raises :class:`~simulator.errors.BudgetSpent` instead of sending."""
    clock: Clock = field(default_factory=lambda: ScaledClock(DEFAULT_TIME_SCALE), repr=False, compare=False)
    """The marketplace's clock (docs/protocol.md §10): every exchange is stamped with its
    marketplace instant (:attr:`Exchange.market_at`) and deliveries wait on it. The settings
    build it (``--time-scale``, :meth:`simulator.settings.Settings.clock`); by default ×3600, as
    verify's. Signatures and timestamps on the wire stay wall time: the merchant checks those."""

    def __repr__(self) -> str:  # keys never show up in a repr, a log line or a traceback
        return f"Target(url={self.url!r}, protocol={self.protocol!r}, sync_url={self.sync_url!r})"

    def sync_call_url(self, call: str) -> str:
        """Where a Kit call goes (docs/protocol.md §7.1, A36): ``<produce URL>/tenantSync`` …,
        ``<produce URL>/v2/authSync``; ``sync_url`` replaces the produce URL as the base."""
        base = (self.sync_url or self.url).rstrip("/")
        return f"{base}{KIT_PATHS.get(call, '/' + call)}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret string a report must never show: the keys, and what was decrypted so far."""
        return tuple(key for key in (self.access_key, self.sync_key) if key) + self.learned_secrets.snapshot

    def learn_secret(self, plaintext: str) -> None:
        """Redact ``plaintext`` from now on (see :attr:`learned_secrets`)."""
        if len(plaintext) >= MIN_LEARNED_SECRET_CHARS:
            self.learned_secrets.add(plaintext)


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
    market_at: datetime | None = None
    """The marketplace instant it was sent (:attr:`Target.clock`); ``started_at`` is the wall's.
    None for an exchange recorded before koosim had a marketplace clock."""

    @property
    def answered(self) -> bool:
        return self.error is None and self.status is not None

    _parsed: tuple[bytes, Decoded] | None = field(default=None, init=False, repr=False, compare=False)
    """The answer parsed once, with the bytes it was parsed from: every check reads this."""

    def _decoded(self) -> Decoded:
        cached = self._parsed
        if cached is not None and cached[0] is self.response_body:
            return cached[1]
        decoded = decode_json(self.response_body)
        self._parsed = (self.response_body, decoded)
        return decoded

    @property
    def response_json(self) -> Any:
        """The answer parsed as JSON, or None when it is not JSON (or did not arrive).

        Parsed once per exchange (again only if ``response_body`` is replaced); do not mutate it.
        """
        return self._decoded().value if self.answered else None

    @property
    def json_problem(self) -> str | None:
        """Why the answer that arrived cannot be read as JSON, or None (see :func:`decode_json`)."""
        return self._decoded().problem if self.answered else None

    @property
    def repeated_members(self) -> tuple[str, ...]:
        """Members some object of the (JSON) answer names twice: parsers differ on which counts."""
        return self._decoded().repeated if self.answered else ()

    @property
    def result_code(self) -> str | None:
        body = self.response_json
        code = body.get("resultCode") if isinstance(body, dict) else None
        return code if isinstance(code, str) else None

    def answer_field(self, name: str) -> Any:
        body = self.response_json
        return body.get(name) if isinstance(body, dict) else None

    def header(self, name: str) -> str | None:
        """The answer's header ``name``, matched case-insensitively as HTTP names are ([S76],
        docs/protocol.md §2.3); None when absent."""
        found = header_named(self.response_headers, name)
        return None if found is None else found[1]


def header_named(headers: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(name as sent, value)`` of the header ``name`` in ``headers``, matched
    case-insensitively (RFC 9110 §5.1); None when absent. Every judge reads headers through it:
    only the debugging console's exact-case ``Body-Sign`` rule looks at the spelling as sent."""
    if name in headers:
        return name, headers[name]
    wanted = name.lower()
    for sent, value in headers.items():
        if sent.lower() == wanted:
            return sent, value
    return None


@dataclass(frozen=True)
class Tamper:
    """How a security check bends an otherwise correct call."""

    signature: str | None = None
    timestamp_ms: int | None = None
    omit: frozenset[str] = frozenset()
    body: bytes | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


NONCE_SHAPES = ("hex64", "alnum16")
"""The nonce shapes the pages show (docs/protocol.md §2.1, A19): 64 upper-case hex characters on
the interface pages [S1][S7][S12], 16 alphanumerics on the signing page [S19][S21]."""
_ALNUM = string.ascii_letters + string.digits


def new_nonce(shape: str = "hex64") -> str:
    """A fresh random nonce in one of the published shapes (A19)."""
    if shape == "alnum16":
        return "".join(secrets.choice(_ALNUM) for _ in range(16))
    return secrets.token_hex(32).upper()


class _Session(requests.Session):
    """A session that reads the environment (proxy variables, REQUESTS_CA_BUNDLE) once per host.

    requests reads it again for every call, walking every environment variable twice: 0.1 ms of
    a 1 ms exchange, and all the calls of a run go to one or two hosts.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[tuple[Any, ...], Any] = {}

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if proxies or not isinstance(url, str):  # proxies given for this call: requests' own way
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings: Any = self._settings.get(key)
        if settings is None:
            settings = self._settings[key] = super().merge_environment_settings(
                url, proxies, stream, verify, cert
            )
        return settings | {"proxies": dict(settings["proxies"])}


class Transport:
    """Sends signed marketplace calls to one :class:`Target` and records them."""

    def __init__(
        self,
        target: Target,
        session: requests.Session | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.target = target
        self.session = session or _Session()
        self.session.headers["User-Agent"] = "koosim (KooGallery marketplace simulator)"
        adapter = _DeadlineAdapter()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, adapter)
        self._on_exchange = on_exchange
        self._v2_calls = 0

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
        # Across a run, every other call (docs/protocol.md §2.1, §13): the outer signature in upper-
        # case hex as the interface pages' examples write it, else lower case as the signing page
        # does (A4); and a normal call's testFlag sent as "0" instead of left out (A14; not on
        # changeInstanceCheck, whose page omits it on real calls, §4.7).
        self._v2_calls += 1
        other_half = self._v2_calls % 2 == 0
        # and the nonce in both published shapes (A19), on its own period so that every
        # combination of hex case and nonce shape occurs within four calls
        nonce_shape = NONCE_SHAPES[(self._v2_calls // 2) % len(NONCE_SHAPES)]
        body = dict(fields)
        if other_half and "testFlag" not in body and body.get("activity") != "changeInstanceCheck":
            body["testFlag"] = "0"
        timestamp = str(tamper.timestamp_ms if tamper.timestamp_ms is not None else now_ms())
        nonce = new_nonce(nonce_shape)
        signature = sign_v2(body, self.target.access_key, timestamp, nonce)
        query = {
            "signature": signature.upper() if other_half else signature,
            "timestamp": timestamp,
            "nonce": nonce,
        }
        if tamper.signature is not None:
            query["signature"] = tamper.signature
        query = {name: value for name, value in query.items() if name not in tamper.omit}
        # The body goes out already in its canonical form (§2.1, A3, U1), so a merchant hashing
        # the bytes it received and one re-serialising them in ascending order agree.
        payload = tamper.body if tamper.body is not None else canonical_body(body).encode("utf-8")
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
            for name, value in v1_fields(fields).items()
            if value is not None
        }
        moment = datetime.now(UTC)
        if tamper.timestamp_ms is not None:
            moment = datetime.fromtimestamp(tamper.timestamp_ms / 1000, UTC)
        for name in ENCRYPTED_REQUEST_FIELDS:
            self._learn_plaintext(params.get(name))
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
        """Send one user-authorization sync call, signed with the target's sync key (§4)."""
        return self.post_signed(
            self.target.sync_call_url(call),
            kit_envelope(call, body, datetime.now(UTC)),
            self.target.sync_key or "",
            interface=SYNC,
            activity=call,
            tamper=tamper,
            label=label,
            attempt=attempt,
        )

    def post_signed(
        self,
        url: str,
        body: Mapping[str, Any],
        key: str,
        *,
        interface: str,
        activity: str,
        tamper: Tamper | None = None,
        label: str = "",
        attempt: int = 1,
    ) -> Exchange:
        """POST ``body`` to ``url`` signed like a sync call (§4: x-timestamp, x-nonce, x-sign) with
        ``key``: for calls the marketplace signs that way with another key (order notifications)."""
        tamper = tamper or Tamper()
        timestamp = str(tamper.timestamp_ms if tamper.timestamp_ms is not None else now_ms())
        nonce = new_nonce()
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "x-timestamp": timestamp,
            "x-nonce": nonce,
            "x-sign": sign_sync(body, key, timestamp, nonce)
            if tamper.signature is None
            else tamper.signature,
        }
        exchange = Exchange(
            interface=interface,
            protocol=interface,
            activity=activity,
            method="POST",
            url=url,
            fields=dict(body),
            request_headers={name: value for name, value in headers.items() if name not in tamper.omit},
            request_body=tamper.body if tamper.body is not None else json_bytes(body),
            started_at=time.time(),
            label=label,
            attempt=attempt,
        )
        return self.perform(exchange)

    # --- the wire --------------------------------------------------------------------------------

    def perform(self, exchange: Exchange) -> Exchange:
        """Send a prepared exchange and fill in what came back; never raises for the merchant's doing."""
        if self.target.budget is not None:
            self.target.budget.check()
        if exchange.market_at is None:
            exchange.market_at = self.target.clock.now()
        started = time.perf_counter()
        deadline = started + self.target.timeout
        connect_timeout = min(self.target.connect_timeout, self.target.timeout)
        call = _Call(deadline)
        _WATCHDOG.watch(call)
        _in_flight.call = call
        nothing_came = False
        try:
            response = self.session.request(
                exchange.method,
                exchange.url,
                data=exchange.request_body or None,
                headers=exchange.request_headers,
                timeout=(connect_timeout, self.target.timeout),
                allow_redirects=False,  # a redirect is the merchant's answer, never followed
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
            exchange.error = f"could not connect within {connect_timeout:g} s"
        except requests.exceptions.ReadTimeout:
            exchange.error = f"no answer within {self.target.timeout:g} s"
            exchange.timed_out = True
        except requests.exceptions.RequestException as exc:
            exchange.error = _failure(exc)
            nothing_came = any(isinstance(c, http.client.RemoteDisconnected) for c in _causes(exc))
        finally:
            _in_flight.call = None
            expired = call.finish()
        if expired and not exchange.timed_out:  # the watchdog cut the call short
            some = "" if nothing_came else "complete "
            exchange.error = f"no {some}answer within {self.target.timeout:g} s"
            exchange.timed_out = True
        exchange.elapsed = time.perf_counter() - started
        if exchange.error is not None:
            exchange.status = None
        else:
            self._learn_app_info_passwords(exchange)
        if self._on_exchange is not None:
            self._on_exchange(exchange)
        return exchange

    # --- secrets the run learns ------------------------------------------------------------------

    def _learn_plaintext(self, value: Any, encrypt_types: Iterable[str] = tuple(EncryptType)) -> None:
        """If ``value`` decrypts under the access key, redact its plaintext from now on."""
        if not isinstance(value, str) or not value:
            return
        for encrypt_type in encrypt_types:
            try:
                self.target.learn_secret(decrypt(value, self.target.access_key, encrypt_type))
            except (DecryptionError, ValueError):
                continue
            return

    def _learn_app_info_passwords(self, exchange: Exchange) -> None:
        """The appInfo passwords of a newInstance / queryInstance answer, decrypted as the checks
        will: a merchant that echoes one anywhere must not get it into a report."""
        body = exchange.response_json
        if not isinstance(body, dict) or body.get("encryptType") not in tuple(EncryptType):
            return
        found = app_infos(body)  # a newInstance answer's own appInfo, or one per info[] item
        if all(app_info is not body.get("appInfo") for app_info in found):
            found.append(body.get("appInfo"))  # a queryInstance answer with a stray top-level one
        for app_info in found:
            if isinstance(app_info, dict):
                self._learn_plaintext(app_info.get("password"), (body["encryptType"],))


def send_at_once(target: Target, calls: Sequence[Callable[[Transport], Exchange]]) -> list[Exchange]:
    """Make the calls at the same moment, each on a connection of its own, as simultaneous
    resends arrive: every call waits at a barrier, then sends through its own :class:`Transport`.

    A call that cannot line up (another one failed before the barrier, or it timed out) is
    still made, just not at the same moment. The exchanges come back in the order of ``calls``.
    """
    barrier = threading.Barrier(len(calls))

    def make(call: Callable[[Transport], Exchange]) -> Exchange:
        transport = Transport(target)
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=target.timeout)
            return call(transport)
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(make, calls))


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


def _causes(exc: BaseException) -> list[BaseException]:
    chain = [exc]
    while (exc.__cause__ or exc.__context__) is not None and len(chain) < 20:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        chain.append(exc)
    return chain


def _root_cause(exc: BaseException) -> str:
    root = _causes(exc)[-1]
    text = str(root) or type(root).__name__
    return _spelled_out(text.splitlines()[0][:200])


def _spelled_out(text: str) -> str:
    """``text`` with unprintable characters as escapes: merchant bytes must not drive a terminal."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _failure(exc: requests.exceptions.RequestException) -> str:
    """What went wrong on the wire, in the merchant's terms rather than the HTTP library's."""
    for cause in _causes(exc):
        if isinstance(cause, http.client.RemoteDisconnected):
            return "connection failed: the merchant closed the connection without answering"
        if isinstance(cause, http.client.BadStatusLine):
            line = str(getattr(cause, "line", ""))  # typeshed does not know BadStatusLine.line
            return f"the answer is not HTTP: it begins {_spelled_out(ascii(line[:40]))}"
        if isinstance(cause, urllib3.exceptions.IncompleteRead | http.client.IncompleteRead):
            partial = cause.partial if isinstance(cause.partial, int) else len(cause.partial)
            promised = f" of {partial + cause.expected}" if isinstance(cause.expected, int) else ""
            return f"the answer ended after {partial}{promised} bytes: the connection closed mid-body"
        if isinstance(cause, ConnectionResetError):
            return "connection failed: the merchant reset the connection"
    prefix = "connection failed" if isinstance(exc, requests.exceptions.ConnectionError) else "HTTP error"
    return f"{prefix}: {_root_cause(exc)}"


class _NumberTooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(f"a number of {digits} digits")
        self.digits = digits


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _NumberTooLong(len(text.lstrip("-")))
    return int(text)


class Decoded(NamedTuple):
    """A body read as JSON: its value, why it is not JSON (or None), and the members some of its
    objects name twice (one parse finds all three)."""

    value: Any
    problem: str | None
    repeated: tuple[str, ...] = ()


def decode_json(body: bytes) -> Decoded:
    """``(value, None, repeated)`` for a body that is JSON, else ``(None, why not)`` in a few words.

    Never raises: not UTF-8, not JSON, nested past the recursion limit, a number too long to
    convert (:data:`MAX_NUMBER_DIGITS`) are all answers a merchant may give.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Decoded(None, f"the body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})")
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        built = dict(items)
        if len(built) < len(items):  # rare: only then find which names came twice
            names = [name for name, _ in items]
            repeated.extend(n for n in built if names.count(n) > 1 and n not in repeated)
        return built

    try:
        return Decoded(json.loads(text, parse_int=_parse_int, object_pairs_hook=pairs), None, tuple(repeated))
    except _NumberTooLong as exc:
        return Decoded(
            None, f"the body holds a number of {exc.digits} digits, more digits than {MAX_NUMBER_DIGITS}"
        )
    except RecursionError:
        return Decoded(None, "the body is JSON nested too deeply to read")
    except ValueError as exc:
        return Decoded(None, f"the body is not JSON ({_spelled_out(str(exc))[:200]})")


# --- the total deadline ----------------------------------------------------------------------


class _Call:
    """One call in flight: the socket it uses, and whether its deadline passed before it ended.

    The socket, not the connection: http.client hands the socket over to the response (and
    forgets it) when the merchant says ``Connection: close``, and the body is read after that.
    """

    def __init__(self, due: float) -> None:
        self.due = due
        self.done = False
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is not None and not self.done:
                self._sock = sock
                if self.expired:
                    _shut(sock)

    def expire(self) -> None:
        """The deadline passed: end whatever read the call is blocked in."""
        with self._lock:
            if self.done:
                return
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def finish(self) -> bool:
        """The call is over; True when its deadline cut it short."""
        with self._lock:
            self.done = True
            self._sock = None
            return self.expired


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: it wakes a recv() blocked in another thread, and the owner closes.
    # A socket already closed has no descriptor any more: this cannot reach another one.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires every call still running at its deadline.

    A thread per call would cost ~0.1 ms of a ~1 ms call; this costs a heap push. Calls that
    end in time stay in the heap until they reach its top and are dropped unseen.
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, call: _Call) -> None:
        with self._wake:
            heapq.heappush(self._due, (call.due, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost in a fork
                self._thread = threading.Thread(target=self._run, name="koosim-deadlines", daemon=True)
                self._thread.start()
            if self._due[0][2] is call:  # else the thread wakes for an earlier deadline first
                self._wake.notify()  # waking it costs more than the call's other bookkeeping

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._due and self._due[0][2].done:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wake.wait()
                    continue
                wait = self._due[0][0] - time.perf_counter()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._due)[2].expire()


_WATCHDOG = _Watchdog()
_in_flight = threading.local()
"""``.call``: the :class:`_Call` this thread is performing, for its connection to attach to."""


class _WatchedConnection(urllib3.connection.HTTPConnection):
    """Attaches its socket to the call in flight, so the watchdog can end its reads."""

    def connect(self) -> None:  # a new connection (the deadline may pass while it connects)
        super().connect()
        _attach(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:  # a kept-alive connection, used again
        _attach(self.sock)
        super().request(*args, **kwargs)


def _attach(sock: socket.socket | None) -> None:
    call = getattr(_in_flight, "call", None)
    if call is not None:
        call.attach(sock)


class _WatchedHTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter over connections the watchdog can end (direct connections; through a
    proxy a call has the per-read timeout and the byte cap only)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(body), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_query(url: str, query: Mapping[str, str]) -> str:
    # quote_via default (quote_plus) percent-encodes '+' as %2B, as the marketplace does; a
    # merchant that decodes '+' as a space gets a different authToken (protocol.md §3).
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(query)}" if query else url
