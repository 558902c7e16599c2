"""The hostile merchants: each answers the marketplace in one way a broken server really does.

Every entry is a :class:`Hostile`: a name, how to serve it (a raw-socket behaviour for
:class:`~hostile.server.RawServer`, or a Flask app built on the reference merchant when the
defect is in *what* it answers rather than *how*), the checks ``koosim verify`` runs against it,
and the phrase every command's output must contain: the finding that names what happened.
``docs/hostile.md`` is the table of contents.
"""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from mutants.base import rewrite_answers

from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app
from simulator.serving import BackgroundServer

from .server import Behaviour, Connection, RawServer, http_response

FAST_CHECKS = ("lifecycle.test-order", "contract.*", "timing.deadline")
"""One call and the judgement of its answer: enough for a merchant that cannot answer at all."""

TEN_MB = 10 * 1024 * 1024
CHUNK = b"x" * 65536

SUCCESS_ANSWER = (
    b'{"resultCode":"000000","resultMsg":"success","instanceId":"hostile-0001","encryptType":"2",'
    b'"appInfo":{"frontEndUrl":"https://merchant.example/","userName":"x","password":"y"}}'
)


# --- how the answers go wrong on the wire --------------------------------------------------


def never_answers(conn: Connection) -> None:
    """Accepts the connection, reads the call, and says nothing until the server closes."""
    conn.wait(120)


def _trickle(conn: Connection, data: bytes, interval: float) -> None:
    for index in range(len(data)):
        conn.send(data[index : index + 1])
        if conn.wait(interval):
            return


def trickles_headers(conn: Connection) -> None:
    """One byte per second from the status line on: each byte is in time, the answer never is."""
    _trickle(conn, http_response(SUCCESS_ANSWER), 1.0)


def trickles_body(conn: Connection) -> None:
    """Headers at once, then the (Content-Length) body one byte per second."""
    head, _, body = http_response(SUCCESS_ANSWER).partition(b"\r\n\r\n")
    conn.send(head + b"\r\n\r\n")
    _trickle(conn, body, 1.0)


def resets(conn: Connection) -> None:
    """Reads the call, then resets the connection (SO_LINGER 0: an RST, not a FIN)."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


def closes_mid_body(conn: Connection) -> None:
    """Promises 1000 bytes (Content-Length) and closes after 30."""
    conn.send(http_response(SUCCESS_ANSWER[:30], content_length=1000))


def garbage(conn: Connection) -> None:
    """Bytes that are not HTTP at all (every byte value, four times), then closes."""
    conn.send(bytes(range(256))[::-1] * 4)


def html_502(conn: Connection) -> None:
    """What a reverse proxy answers when the merchant behind it is down."""
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    conn.send(http_response(page, status="502 Bad Gateway", content_type="text/html"))


def ten_megabytes(conn: Connection) -> None:
    """A 10 MB answer with an honest Content-Length."""
    conn.send(http_response(b"", content_length=TEN_MB))
    for _ in range(TEN_MB // len(CHUNK)):
        conn.send(CHUNK)


def invalid_utf8(conn: Connection) -> None:
    """A JSON-looking answer whose resultMsg holds bytes that are not UTF-8, and terminal escapes
    (retitle the window, clear the screen) that a report printed raw would obey."""
    conn.send(
        http_response(
            b'{"resultCode":"000000","resultMsg":"\xff\xfe\xc3( \x1b]0;owned\x07\x1b[2J","instanceId":"i-1"}'
        )
    )


def wrong_content_type(conn: Connection) -> None:
    """A correct answer declared as text/html."""
    conn.send(http_response(SUCCESS_ANSWER, content_type="text/html; charset=utf-8"))


def redirect_loop(conn: Connection) -> None:
    """302 to the very URL that was called."""
    location = f"http://{conn.request.headers.get('host', '127.0.0.1')}{conn.request.target}"
    conn.send(
        http_response(b"", status="302 Found", content_type="text/plain", headers={"Location": location})
    )


def redirect_elsewhere(conn: Connection) -> None:
    """302 to another host: following it would send the signed call to a stranger."""
    conn.send(
        http_response(
            b"",
            status="302 Found",
            content_type="text/plain",
            headers={"Location": "http://example.invalid/produceAPI"},
        )
    )


def endless_chunks(conn: Connection) -> None:
    """A chunked answer that never ends: 64 KiB chunks for as long as anyone reads."""
    conn.send(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{"\r\n'
    )
    chunk = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
    while not conn.stopping.is_set():
        conn.send(chunk)


def slow_endless_chunks(conn: Connection) -> None:
    """A chunked answer that never ends, ten small chunks a second: always in time, never done."""
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not conn.wait(0.1):
        conn.send(b"1\r\n \r\n")


def duplicate_keys(conn: Connection) -> None:
    """resultCode twice: a refusal first, success last. Parsers differ on which one counts."""
    conn.send(
        http_response(
            b'{"resultCode":"000001","resultMsg":"refused","resultCode":"000000","instanceId":"dup-0001"}'
        )
    )


def deep_nesting(conn: Connection) -> None:
    """A success answer whose appInfo is 10,000 arrays deep."""
    depth = 10_000
    body = b'{"resultCode":"000000","resultMsg":"ok","instanceId":"deep-0001","appInfo":'
    conn.send(http_response(body + b"[" * depth + b"]" * depth + b"}"))


def huge_float(conn: Connection) -> None:
    """resultCode 1e999999: a number no double holds."""
    conn.send(http_response(b'{"resultCode":1e999999,"resultMsg":"ok"}'))


def huge_integer(conn: Connection) -> None:
    """An instanceId of 100,000 digits: past Python's int-string conversion limit."""
    digits = b"7" * 100_000
    conn.send(http_response(b'{"resultCode":"000000","resultMsg":"ok","instanceId":' + digits + b"}"))


# --- valid merchants that answer the wrong instanceId ---------------------------------------


def random_instance_ids(config: MerchantConfig) -> Flask:
    """The reference merchant, except that newInstance answers a new random instanceId each time.

    It provisions correctly but forgets to return the id it stored: no resend agrees with the
    first answer, and no later call names an instance it knows.
    """
    app = create_app(config)

    def rewrite(body: dict[str, Any]) -> dict[str, Any] | None:
        if "instanceId" in body and "appInfo" in body:
            return body | {"instanceId": f"rnd-{uuid.uuid4().hex[:16]}"}
        return None

    rewrite_answers(app, rewrite)
    return app


def crossed_instance_ids(config: MerchantConfig) -> Flask:
    """The reference merchant answering each order with the instanceId of the order before it.

    The answers are crossed (a shared "last created" variable under concurrency): order n gets
    the instance of order n-1; the first order gets an id that belongs to no order at all.
    """
    app = create_app(config)
    created: list[str] = []

    def rewrite(body: dict[str, Any]) -> dict[str, Any] | None:
        real = body.get("instanceId")
        if not isinstance(real, str) or "appInfo" not in body:
            return None
        if real not in created:
            created.append(real)
        position = created.index(real)
        return body | {"instanceId": created[position - 1] if position else "crossed-no-such-order"}

    rewrite_answers(app, rewrite)
    return app


# --- the gallery ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile merchant and what every command must say about it."""

    name: str
    serve: Behaviour | Callable[[MerchantConfig], Flask]
    reports: str
    """A phrase of the finding every command prints: what happened, in the tool's words."""
    checks: tuple[str, ...] = FAST_CHECKS
    timeout: float = 1.0
    """The per-call deadline (--timeout) the commands run with."""
    raw: bool = True
    """Served by :class:`RawServer` (bytes) rather than as a Flask app over the reference merchant."""
    warning_only: bool = False
    """The answer breaks only a rule resting on an ASSUMPTION (docs/protocol.md §0): verify and
    play report it as a warning and exit 0; explore, which hunts error-severity rules, finds nothing."""

    @property
    def doc(self) -> str:
        return " ".join((self.serve.__doc__ or "").split("\n\n")[0].split())


GALLERY = [
    Hostile("never-answers", never_answers, "no answer within 1 s"),
    # the per-read timeout (1.5 s) never fires with a byte a second: only the total deadline does
    Hostile("trickles-headers", trickles_headers, "no complete answer within 1.5 s", timeout=1.5),
    Hostile("trickles-body", trickles_body, "no complete answer within 1.5 s", timeout=1.5),
    Hostile("resets", resets, "connection failed: the merchant reset the connection"),
    Hostile("closes-mid-body", closes_mid_body, "the answer ended after 30 of 1000 bytes"),
    Hostile("garbage", garbage, "the answer is not HTTP: it begins '"),
    Hostile("html-502", html_502, "HTTP 502 instead of 200"),
    Hostile("ten-megabytes", ten_megabytes, "the answer is larger than 1048576 bytes"),
    Hostile("invalid-utf8", invalid_utf8, "the body is not UTF-8 (byte 0xff at offset 36)"),
    # the answer's Content-Type is ASSUMPTION U3 (docs/protocol.md §3.1): a warning, not a failure
    Hostile(
        "wrong-content-type",
        wrong_content_type,
        "Content-Type is 'text/html; charset=utf-8'",
        warning_only=True,
    ),
    Hostile("redirect-loop", redirect_loop, "HTTP 302 instead of 200: a redirect to 'http://127.0.0.1"),
    Hostile("redirect-elsewhere", redirect_elsewhere, "a redirect to 'http://example.invalid/produceAPI'"),
    Hostile("endless-chunks", endless_chunks, "the answer is larger than 1048576 bytes"),
    Hostile("slow-endless-chunks", slow_endless_chunks, "no complete answer within 1 s"),
    Hostile("duplicate-keys", duplicate_keys, "the JSON names member 'resultCode' twice"),
    Hostile("deep-nesting", deep_nesting, "the body is JSON nested too deeply to read"),
    Hostile("huge-float", huge_float, "resultCode is inf, not a string"),
    Hostile("huge-integer", huge_integer, "the body holds a number of 100000 digits"),
    Hostile(
        "random-instance-ids",
        random_instance_ids,
        "rnd-",
        checks=("lifecycle.full", "idempotency.new-instance-resend", "contract.*"),
        timeout=5.0,
        raw=False,
    ),
    Hostile(
        "crossed-instance-ids",
        crossed_instance_ids,
        "crossed-no-such-order",
        checks=("lifecycle.full", "idempotency.new-instance-resend", "contract.*"),
        timeout=5.0,
        raw=False,
    ),
]


@contextmanager
def serving(hostile: Hostile, access_key: str) -> Iterator[Any]:
    """Start ``hostile`` on 127.0.0.1 and an ephemeral port; yield an object with ``.url``."""
    if hostile.raw:
        with RawServer(hostile.serve) as server:  # type: ignore[arg-type]
            yield server
        return
    app = hostile.serve(MerchantConfig(access_key=access_key))  # type: ignore[call-arg]
    with BackgroundServer(app) as background:
        background.url = background.base_url + PRODUCE_PATH  # type: ignore[attr-defined]
        yield background
