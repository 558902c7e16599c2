"""Run a WSGI app on a free 127.0.0.1 port in a background thread, for the in-process targets."""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

SHUTDOWN_POLL_INTERVAL = 0.05
"""How often the serving loop looks for a shutdown request: close() waits up to this long."""


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log: the request line carries signatures, and the run's record is the log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """A threaded werkzeug server on ``127.0.0.1`` and an ephemeral port; use as a context manager."""

    def __init__(
        self,
        app: WSGIApplication,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietRequestHandler, ssl_context=ssl_context
        )
        self._scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_INTERVAL},
            name="koosim-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://{self._server.host}:{self._server.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever() that must be running
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve_until_interrupted(server: BaseWSGIServer) -> None:
    """Serve in the foreground until Ctrl+C, then release the port."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
