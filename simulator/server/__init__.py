"""``koosim serve``: the fake KooGallery marketplace as a web server.

One Flask app, built by :func:`create_app`, one blueprint per area:

- :mod:`~simulator.server.console`: the web console (server-rendered pages) where a seller
  configures the target, sends any call by hand, runs verify, and browses the history;
- :mod:`~simulator.server.api`: the same as a JSON API under ``/api``, for CI and scripts;
- :mod:`~simulator.server.openapi`: the marketplace's own APIs a merchant calls (query order,
  usage push) at the real paths, under ``/api/mkp-openapi-public/…``.

All of them share one :class:`~simulator.server.state.MarketState` (the target and its keys,
in memory) and one :class:`~simulator.store.Store` (the run history, on disk).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from simulator.clock import Clock
from simulator.redaction import printable
from simulator.server import api, console, deliveries, dial, guard, messages, openapi
from simulator.server import clock as clock_routes
from simulator.server.inputs import InvalidJSON, parse_json
from simulator.server.market import serve_service
from simulator.server.state import ConsoleSettings, MarketState
from simulator.store import Store, StoreError

MAX_REQUEST_BYTES = 1 << 20
"""Largest request body the server reads: 1000 usage records fit in well under this."""


def create_app(
    store: Store,
    settings: ConsoleSettings | None = None,
    *,
    token: str | None = None,
    hosts: Iterable[str] = (),
    scenario_dirs: Iterable[Path] = (),
    clock: Clock | None = None,
) -> Flask:
    """Build the marketplace server over ``store``; ``settings`` pre-configures the target.

    ``token`` is the secret every page and API call must present (random when not given: read
    it back with :func:`token`); ``hosts`` are the names besides loopback ones the server answers
    to (its ``--host``); ``scenario_dirs`` are the merchant's scenario folders, before the library;
    ``clock`` is the marketplace's (default: ``settings.clock(live=True)``, real time), read back
    as ``market_state(app).clock``; the dial-test timer waits on it. The scheduler that sends due
    deliveries is not started here: ``koosim serve`` starts it (:func:`start_scheduler`).
    """
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SECRET_KEY=secrets.token_hex(16),  # flash messages only; nothing outlives the process
        KOOSIM_TOKEN=token or guard.server_token({})[0],
        KOOSIM_SCENARIO_DIRS=tuple(scenario_dirs),
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # every value a page shows may come from a merchant: no bidi override or control byte
    app.jinja_env.finalize = _shown
    market = app.extensions["koosim.marketplace"] = MarketState(store, settings, clock)
    guard.install(app, app.config["KOOSIM_TOKEN"], hosts)
    app.register_blueprint(console.bp)
    app.register_blueprint(api.bp)
    openapi.install(app, serve_service(market))
    app.register_blueprint(clock_routes.bp)
    dial.install(app)  # dial tests on the app's clock: /api/dial, /dial; `serve` starts the timer
    app.register_blueprint(messages.bp)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_pretty, "pretty")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | tuple[str | Response, int]:
        # /api/... callers are programs: they get JSON, never an HTML error page.
        status = error.code or 500
        if request.path.startswith("/api/"):
            return jsonify(error=f"{error.name}: {error.description}"), status
        return render_template("missing.html", what=request.path, error=error), status

    @app.errorhandler(StoreError)
    def history_unavailable(error: StoreError) -> tuple[Response | str, int]:
        # a damaged or unreadable history file: the service is unavailable, not broken
        message = f"the run history is unavailable: {error}"
        if request.path.startswith("/api/"):
            return jsonify(error=message), 503
        return render_template("missing.html", what=request.path, error=message), 503

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response | str, int]:
        app.logger.exception("unexpected error")
        message = f"internal error: {type(error).__name__}"
        if request.path.startswith("/api/"):
            return jsonify(error=message), 500
        return render_template("missing.html", what=request.path, error=message), 500

    return app


def market_state(app: Flask) -> MarketState:
    """The shared state of an app made by :func:`create_app`."""
    return app.extensions["koosim.marketplace"]


def start_scheduler(app: Flask) -> deliveries.Scheduler:
    """Start the background thread that sends due deliveries; :meth:`MarketState.close` stops it."""
    market = market_state(app)
    if market.scheduler is None:
        market.scheduler = deliveries.Scheduler(market).start()
    return market.scheduler


def token(app: Flask) -> str:
    """The token clients of an app made by :func:`create_app` must present."""
    return str(app.config["KOOSIM_TOKEN"])


def _shown(value: Any) -> Any:
    if isinstance(value, Markup):  # already HTML the templates built: its text came through here
        return value
    if isinstance(value, str):
        return printable(value)
    return value


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _pretty(text: str | None) -> str:
    """A JSON body indented for reading; anything else as it is."""
    if not text:
        return ""
    try:
        return json.dumps(parse_json(text), ensure_ascii=False, indent=2)
    except InvalidJSON:  # not JSON, or too deep to walk: shown as it came
        return text


__all__ = ["create_app", "market_state", "start_scheduler", "token"]
