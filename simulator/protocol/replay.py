"""A small bounded memory of tokens seen recently, to refuse a request sent twice.

Used by the open APIs' authentication (protocol.md §2.5, §2.6): a gateway signature or a
usage-push nonce seen again before it expires is a replay. Neither page publishes a replay rule;
the gateway reading is an ASSUMPTION next to U40, and usage push follows U36 (see
:mod:`simulator.protocol.usage_signature`).

The memory is bounded so that a flood of distinct tokens cannot grow it without limit: when it is
full, expired tokens are dropped first, then the oldest ones. Dropping a live token can only let
one replay through, never refuse an honest request. Thread-safe: the Flask server is threaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

DEFAULT_CAPACITY = 10_000
"""Tokens kept at most; at the published 15-minute window that is 11 requests a second."""


class ReplayCache:
    """Tokens (signatures, nonces) with the instant until which a second use is a replay."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a replay cache needs room for at least one token")
        self.capacity = capacity
        self._until: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, token: str, now: datetime) -> bool:
        """Whether ``token`` was remembered and has not expired at ``now``."""
        with self._lock:
            until = self._until.get(token)
            return until is not None and now <= until

    def remember(self, token: str, until: datetime, now: datetime) -> bool:
        """Remember ``token`` until ``until``; False (and nothing changes) if it was live already.

        Checking and remembering in one step under the lock means two copies racing each other
        cannot both be accepted.
        """
        with self._lock:
            previous = self._until.get(token)
            if previous is not None and now <= previous:
                return False
            self._until.pop(token, None)
            if len(self._until) >= self.capacity:
                self._forget_expired(now)
            while len(self._until) >= self.capacity:
                self._until.popitem(last=False)
            self._until[token] = until
            return True

    def _forget_expired(self, now: datetime) -> None:
        for token in [token for token, until in self._until.items() if until < now]:
            del self._until[token]
