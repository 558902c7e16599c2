"""A correct merchant that answers slowly and keeps a ledger of every call it answered.

``tests/test_durability.py`` kills ``koosim verify`` in the middle of a run against it, then
compares what the run history kept with what the merchant answered: the ledger holds the
nonce (v2) of each call, in the order the answers were written to the wire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from simulator.reference import MerchantConfig, create_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SlowLedgerMerchant:
    """The reference merchant behind a delay of ``delay`` seconds per call, with a ledger."""

    def __init__(self, config: MerchantConfig, delay: float) -> None:
        self.app: WsgiApp = create_app(config)  # type: ignore[assignment]
        self.delay = delay
        self.answered: list[str] = []
        """The nonce of every call whose answer was written in full, in order."""
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        nonce = parse_qs(environ.get("QUERY_STRING", "")).get("nonce", [""])[0]
        time.sleep(self.delay)
        yield from self.app(environ, start_response)
        # werkzeug writes each chunk before asking for the next: past the last one, it is sent
        with self._lock:
            self.answered.append(nonce)

    def ledger(self) -> list[str]:
        with self._lock:
            return list(self.answered)
