"""生产接口消息 (production-interface messages, docs/protocol.md §10.5): every delivery that failed
at least once — its 异常信息 in the debugging FAQ's words, the attempts made, the next one, its
state (pending / parked / cancelled / delivered) — and the manual 重新启动, in the console
(``/messages``) and the JSON API (``/api/messages``).

A blueprint of its own beside :mod:`~simulator.server.console` and :mod:`~simulator.server.api`;
the token guard (:mod:`~simulator.server.guard`) covers it like every page.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from simulator.delivery import NothingToRestart
from simulator.redaction import printable, redact
from simulator.server import deliveries
from simulator.server.inputs import MAX_ID
from simulator.server.state import MarketState
from simulator.store.deliveries import STATES

bp = Blueprint("messages", __name__)


def _market() -> MarketState:
    return current_app.extensions["koosim.marketplace"]


def _said(error: Exception) -> str:
    return printable(redact(str(error), _market().secrets))


def _state() -> str | None:
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        raise _BadState(f"state must be one of {', '.join(STATES)}")
    return state


def _limit() -> int:
    try:
        return max(1, min(int(request.args.get("limit", "100")), 500))
    except ValueError:
        raise _BadState("limit must be a whole number") from None


class _BadState(ValueError):
    pass


@bp.errorhandler(_BadState)
def _bad(error: Exception) -> tuple[Response, int]:
    return jsonify(error=_said(error)), 400


@bp.errorhandler(deliveries.NoSuchDelivery)
def _missing(error: Exception) -> tuple[Response, int]:
    return jsonify(error=_said(error)), 404


@bp.errorhandler(NothingToRestart)
def _conflict(error: Exception) -> tuple[Response, int]:
    return jsonify(error=_said(error)), 409


# --- the JSON API --------------------------------------------------------------------------------


@bp.get("/api/messages")
def api_messages() -> Response:
    market = _market()
    return jsonify(
        messages=deliveries.messages(market, state=_state(), limit=_limit()),
        clock=market.clock.describe(),
        now=market.clock.stamp().as_dict(),
    )


@bp.get(f"/api/messages/<int(max={MAX_ID}):delivery_id>")
def api_message(delivery_id: int) -> Response:
    return jsonify(deliveries.get_message(_market(), delivery_id))


@bp.post(f"/api/messages/<int(max={MAX_ID}):delivery_id>/restart")
def api_restart(delivery_id: int) -> Response:
    return jsonify(deliveries.restart(_market(), delivery_id))


# --- the console page ----------------------------------------------------------------------------


@bp.get("/messages")
def page() -> str:
    market = _market()
    try:
        state = _state()
    except _BadState:
        state = None
    return render_template(
        "messages.html",
        messages=deliveries.messages(market, state=state, limit=100),
        state=state,
        states=STATES,
        clock=market.clock.describe(),
        now=market.clock.stamp().as_dict(),
    )


@bp.post(f"/messages/<int(max={MAX_ID}):delivery_id>/restart")
def restart(delivery_id: int) -> WerkzeugResponse:
    try:
        shown = deliveries.restart(_market(), delivery_id)
    except (deliveries.NoSuchDelivery, NothingToRestart) as exc:
        flash(_said(exc), "error")
    else:
        flash(
            f"重新启动 #{delivery_id}: {shown['summary']}", "ok" if shown["state"] == "delivered" else "error"
        )
    return redirect(url_for("messages.page"))
