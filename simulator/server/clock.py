"""The marketplace's clock in ``serve`` (docs/protocol.md §10): read it, and advance a frozen one.

- ``GET /api/clock``: which clock, marketplace and wall time;
- ``POST /api/clock/advance`` ``{"by": "1h"}``: move a frozen clock forward (409 for a clock
  that follows the wall, 400 for a duration that is not one);
- ``/clock``: the same in the console, with a form.

The clock is :attr:`MarketState.clock` (``market_state(app).clock``): every target the server
builds, every run it starts and every scheduled delivery reads it. ``serve`` runs in real time
unless ``--time-scale`` says otherwise; ``--time-scale frozen`` stops marketplace time until it is
advanced here, like Stripe's test clocks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from simulator.clock import (
    LATEST_MARKET_TIME,
    Clock,
    FrozenClock,
    ScaledClock,
    format_duration,
    isoformat,
    parse_duration,
)
from simulator.server.inputs import InvalidJSON, parse_json
from simulator.server.state import MarketState

bp = Blueprint("clock", __name__)

MAX_ADVANCE = timedelta(days=400)
"""The most one request may move the clock: a year and a bit (monthly counts, yearly orders)."""


class ClockRefused(Exception):
    """The clock cannot be advanced as asked; ``status`` says why (400 bad input, 409 not frozen)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _market() -> MarketState:
    return current_app.extensions["koosim.marketplace"]


def describe_clock(clock: Clock) -> dict[str, Any]:
    """The clock as the API and the console show it."""
    stamp = clock.stamp()
    kind = (
        "frozen" if isinstance(clock, FrozenClock) else "scaled" if isinstance(clock, ScaledClock) else "real"
    )
    return {
        "kind": kind,
        "now": isoformat(stamp.market),
        "wall": isoformat(stamp.wall),
        "scale": None if kind == "frozen" else getattr(clock, "scale", 1.0),
        "advanceable": kind == "frozen",
        "description": clock.describe(),
    }


def advance(clock: Clock, by: object) -> dict[str, Any]:
    """Advance ``clock`` (a frozen one) by the duration ``by`` (``"1h"``); raises ClockRefused."""
    if not isinstance(clock, FrozenClock):
        raise ClockRefused(
            f"the clock follows the wall ({clock.describe()}); only a frozen clock is advanced "
            "(start serve with --time-scale frozen)",
            409,
        )
    if not isinstance(by, str):
        raise ClockRefused('give "by" as a duration such as 90s, 30m, 1h or 3d', 400)
    try:
        duration = parse_duration(by)
    except ValueError as exc:
        raise ClockRefused(str(exc), 400) from None
    if duration > MAX_ADVANCE:
        raise ClockRefused(f"advance by at most {format_duration(MAX_ADVANCE)} at a time", 400)
    if clock.now() + duration > LATEST_MARKET_TIME:
        raise ClockRefused(
            f"marketplace time stops at {isoformat(LATEST_MARKET_TIME)}: "
            f"it is {isoformat(clock.now())}, so advance by less than {format_duration(duration)}",
            400,
        )
    clock.advance(duration)
    return {**describe_clock(clock), "advanced_by": format_duration(duration)}


@bp.get("/api/clock")
def api_clock() -> Response:
    return jsonify(describe_clock(_market().clock))


@bp.post("/api/clock/advance")
def api_advance() -> Response | tuple[Response, int]:
    body: Any = None
    if request.is_json:
        try:
            body = parse_json(request.get_data())
        except InvalidJSON as exc:
            return jsonify(error=f"the body must be a JSON object: {exc}"), 400
    if not isinstance(body, dict):
        return jsonify(error='the body must be a JSON object such as {"by": "1h"}'), 400
    try:
        return jsonify(advance(_market().clock, body.get("by")))
    except ClockRefused as exc:
        return jsonify(error=str(exc)), exc.status


@bp.route("/clock", methods=["GET", "POST"])
def console_clock() -> str | Response | tuple[str, int]:
    clock = _market().clock
    if request.method == "POST":
        try:
            advanced = advance(clock, request.form.get("by", ""))
        except ClockRefused as exc:
            flash(str(exc), "error")
            return render_template("clock.html", clock=describe_clock(clock)), exc.status
        flash(f"Marketplace time advanced by {advanced['advanced_by']}: now {advanced['now']}.", "ok")
        return redirect(url_for("clock.console_clock"))
    return render_template("clock.html", clock=describe_clock(clock))
