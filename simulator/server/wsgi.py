"""``koosim serve`` on a production WSGI server: waitress, not Werkzeug's development server.

Werkzeug's server gives every connection a thread and never times an idle one out: a thousand
idle sockets are a thousand threads. Waitress reads requests asynchronously, runs the app on a
small fixed pool of threads, closes connections idle for :data:`CHANNEL_TIMEOUT_S`, and stops
accepting past :data:`CONNECTION_LIMIT` open connections.
"""

from __future__ import annotations

from typing import Any

from waitress import wasyncore  # type: ignore[import-untyped]
from waitress.server import create_server  # type: ignore[import-untyped]

from simulator.server import MAX_REQUEST_BYTES

THREADS = 8
"""Requests the app handles at once; more wait in waitress's queue."""
CONNECTION_LIMIT = 500
"""Open connections at most (file descriptors are 1024 by default); past it, new ones wait."""
CHANNEL_TIMEOUT_S = 30
"""An idle (or trickling) connection is closed after this long."""


class Server:
    """A bound waitress server; :meth:`run` serves until Ctrl+C, then releases the port."""

    def __init__(self, app: Any, host: str, port: int, *, channel_timeout: float = CHANNEL_TIMEOUT_S) -> None:
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=channel_timeout,
            cleanup_interval=min(channel_timeout, 10),
            max_request_body_size=MAX_REQUEST_BYTES + 4096,
            max_request_header_size=64 * 1024,
            clear_untrusted_proxy_headers=True,
            asyncore_use_poll=True,  # select() fails past 1024 descriptors
            ident="koosim",
        )

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def run(self) -> None:
        """Serve until Ctrl+C (or :meth:`close` from another thread)."""
        try:
            self._server.run()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker threads and close the listening socket and every connection."""
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._server._map)
