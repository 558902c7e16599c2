"""Fixtures every test module shares: a clean environment, and merchants on ephemeral ports.

- ``_no_koosim_environment`` (autouse): no KOOSIM_* variable of the developer's shell or of
  CI reaches a test, an in-process CLI run, a pytester session or a child process; a test
  sets what it needs with ``monkeypatch.setenv`` or an ``env=`` of its own.
- ``serve``: start any WSGI app (a mutant, a hand-written fake) on 127.0.0.1 and a free
  port; every server is stopped when the test ends.
- ``reference_merchant``: the bundled reference merchant, once per module, signed with the
  module's own ``ACCESS_KEY`` and ``SYNC_KEY`` (module-level constants), so no test works only
  because of the demo keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask, request

from simulator.reference import PRODUCE_PATH, MerchantConfig, create_app, public_key_pem
from simulator.serving import BackgroundServer
from simulator.transport import Target


@pytest.fixture(autouse=True)
def _no_koosim_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every KOOSIM_* variable unset for the test (restored after it)."""
    for name in list(os.environ):
        if name.startswith("KOOSIM_"):
            monkeypatch.delenv(name)


Serve = Callable[[Any], str]
"""``serve(app)`` starts ``app`` and returns its produce URL (``…/produceAPI``)."""


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start WSGI apps on ephemeral 127.0.0.1 ports; every one is stopped after the test."""
    servers: list[BackgroundServer] = []

    def start(app: Any) -> str:
        server = BackgroundServer(app).start()
        servers.append(server)
        return server.base_url + PRODUCE_PATH

    yield start
    for server in servers:
        server.close()


@dataclass(frozen=True)
class ReferenceMerchant:
    """A running reference merchant: where it answers and the keys it checks."""

    url: str
    """Its produce URL."""
    config: MerchantConfig

    @property
    def access_key(self) -> str:
        return self.config.access_key

    @property
    def sync_key(self) -> str:
        return self.config.sync_key

    @property
    def rsa_public_key(self) -> bytes:
        return public_key_pem(self.config.rsa_private_key)

    def target(self, **overrides: Any) -> Target:
        """A v2 :class:`Target` with the merchant's access and sync keys, plus ``overrides``."""
        fields: dict[str, Any] = {"url": self.url, "access_key": self.access_key, "sync_key": self.sync_key}
        return Target(**(fields | overrides))


@pytest.fixture(scope="module")
def reference_merchant(request: pytest.FixtureRequest) -> Iterator[ReferenceMerchant]:
    """The reference merchant for one test module, keyed by the module's ACCESS_KEY / SYNC_KEY."""
    config = MerchantConfig(access_key=request.module.ACCESS_KEY, sync_key=request.module.SYNC_KEY)
    with BackgroundServer(create_app(config)) as server:
        yield ReferenceMerchant(url=server.base_url + PRODUCE_PATH, config=config)


def _published_open_api_500(response: Any) -> bool:
    """An open-API answer whose ``MKT.xxxx`` code §8.4 prints with HTTP 500 (A55): the published
    status, not a server error."""
    from simulator.openapi import PREFIX
    from simulator.protocol.mkt import MktCode

    if not request.path.startswith(PREFIX) or response.status_code != 500:
        return False
    body = response.get_json(silent=True) or {}
    code = body.get("resultCode") if isinstance(body, dict) else None
    return code in {c.value for c in MktCode if c.status == 500}


@contextmanager
def no_server_errors(app: Flask) -> Iterator[Flask]:
    """``app`` for one test that must never see it answer a 5xx; its runs finished and closed after."""
    from simulator.server import market_state

    server_errors: list[str] = []

    @app.after_request
    def no_server_error(response: Any) -> Any:
        if response.status_code >= 500 and not _published_open_api_500(response):
            server_errors.append(f"{request.method} {request.path}: {response.status_code}")
        return response

    yield app
    assert market_state(app).wait_for_runs(30)
    market_state(app).close()
    assert server_errors == []
