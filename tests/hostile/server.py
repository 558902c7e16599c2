"""A tiny threaded TCP server on 127.0.0.1 that lets a test misbehave at the byte level.

HTTP frameworks cannot stall mid-header, reset a connection, lie about Content-Length or send
bytes that are not HTTP at all; this server can. It accepts connections on an ephemeral port,
reads one request from each (request line, headers, a Content-Length body) and hands it to a
*behaviour* that writes whatever it likes to the socket. One request per connection (the
behaviour's answer says ``Connection: close`` or ends the connection otherwise), unless
``keep_alive``: then requests are read from the connection until the client closes it.

:meth:`RawServer.close` stops accepting, wakes every behaviour that is waiting (they wait on
:attr:`RawServer.stopping`, never a bare ``time.sleep``), closes every socket and joins every
thread, so no test leaves a thread or a port behind.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_REQUEST_HEAD = 64 * 1024
ACCEPT_POLL_S = 0.05


@dataclass
class Request:
    """One request as the marketplace sent it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    @property
    def fields(self) -> dict[str, Any]:
        """The call's fields: the JSON body (v2, sync) or the query string (v1)."""
        if self.body:
            try:
                body = json.loads(self.body)
            except ValueError:
                return {}
            return body if isinstance(body, dict) else {}
        return self.query


@dataclass
class Connection:
    """What a behaviour gets: the request, the socket, and the server's stop signal."""

    request: Request
    sock: socket.socket
    stopping: threading.Event

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when the server closes; True when it is closing."""
        return self.stopping.wait(seconds)


Behaviour = Callable[[Connection], None]


@dataclass
class RawServer:
    """Serve ``behaviour`` on 127.0.0.1 and an ephemeral port; use as a context manager."""

    behaviour: Behaviour
    keep_alive: bool = False
    answered: int = 0
    """Requests whose behaviour ran to its end (the connection was not cut under it)."""
    received: int = 0
    """Requests read in full."""
    connections: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        assert self._listener is not None
        return self._listener.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The produce interface URL to give ``--url``."""
        return f"{self.base_url}/produceAPI"

    def start(self) -> RawServer:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self._spawn(self._accept_loop, "hostile-accept")
        return self

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.add(sock)
            self._spawn(self._serve, "hostile-connection", sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(10)
            while not self.stopping.is_set():
                request = read_request(sock)
                if request is None:
                    return
                with self._lock:
                    self.received += 1
                self.behaviour(Connection(request, sock, self.stopping))
                with self._lock:
                    self.answered += 1
                if not self.keep_alive:
                    return
        except OSError:
            pass  # the client gave up (its deadline passed): that is the point of most behaviours
        finally:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        assert not any(thread.is_alive() for thread in self._threads), "a hostile thread did not end"

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_request(sock: socket.socket) -> Request | None:
    """Read one request (head and Content-Length body); None when the client sent nothing."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST_HEAD:
            return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return Request(method, target, headers, body)


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    content_length: int | None = None,
    close: bool = True,
) -> bytes:
    """The bytes of a whole HTTP/1.1 answer (that closes its connection, unless ``close=False``)."""
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}"] + (["Connection: close"] if close else [])
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
