"""The JSON API behind the console, for CI and scripts: everything a person does in the
browser, a script can do here (docs/server.md lists every endpoint with examples).

Errors are JSON ``{"error": "…"}`` with a 4xx status naming the problem: 400 for a malformed
request, 403 for a state-changing request a browser sent from another site (see
:mod:`~simulator.server.guard`), 404 for an unknown run, exchange or message, 409 when the
server is not configured for what was asked (no target yet, no sync key), the target cannot be
reached, or the message was already decided.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from simulator.engine.run import TargetUnreachable
from simulator.redaction import printable, redact
from simulator.server import apidoc, calls, notify, play, runs
from simulator.server.inputs import MAX_ID, MAX_SEED, InvalidJSON, parse_json
from simulator.server.state import MarketState, NotConfigured, SettingsError
from simulator.store import INBOUND

bp = Blueprint("api", __name__, url_prefix="/api")


class BadRequest(Exception):
    """The request cannot be served as sent; 400 with this message."""


class NotFound(Exception):
    """No such thing; 404 with this message."""


def _market() -> MarketState:
    return current_app.extensions["koosim.marketplace"]


def _scenario_dirs() -> tuple[Path, ...]:
    return current_app.config["KOOSIM_SCENARIO_DIRS"]


def _error(status: int, message: str) -> tuple[Response, int]:
    # messages quote what the caller or the merchant sent: never a key, never a control byte
    return jsonify(error=printable(redact(message, _market().secrets))), status


def _json_object() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("the body must be a JSON object (Content-Type: application/json)")
    try:
        body = parse_json(request.get_data())
    except InvalidJSON as exc:
        raise BadRequest(f"the body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (Content-Type: application/json)")
    return body


def _limit() -> int:
    try:
        return max(1, min(int(request.args.get("limit", "50")), 500))
    except ValueError:
        raise BadRequest("limit must be a whole number") from None


@bp.errorhandler(BadRequest)
@bp.errorhandler(SettingsError)
@bp.errorhandler(calls.CallError)
@bp.errorhandler(notify.NotificationError)
@bp.errorhandler(play.PlayError)
def _bad_request(error: Exception) -> tuple[Response, int]:
    return _error(400, str(error))


@bp.errorhandler(NotConfigured)
@bp.errorhandler(calls.AlreadyDecided)
def _conflict(error: Exception) -> tuple[Response, int]:
    return _error(409, str(error))


@bp.errorhandler(TargetUnreachable)
def _unreachable(error: TargetUnreachable) -> tuple[Response, int]:
    return _error(409, f"the target could not be reached: {error}")


@bp.errorhandler(calls.NoSuchMessage)
@bp.errorhandler(NotFound)
def _not_found(error: Exception) -> tuple[Response, int]:
    return _error(404, str(error))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(apidoc.document())


# --- the target ------------------------------------------------------------------------------


@bp.get("/target")
def get_target() -> Response:
    return jsonify(_market().settings.public())


@bp.route("/target", methods=["PUT", "POST"])
def put_target() -> Response:
    return jsonify(_market().configure(_json_object()).public())


# --- single calls ----------------------------------------------------------------------------


@bp.get("/activities")
def list_activities() -> Response:
    return jsonify(calls.activities())


@bp.get("/activities/<activity>/template")
def activity_template(activity: str) -> Response:
    return jsonify(activity=activity, fields=calls.template(activity, _market()))


@bp.post("/calls")
def send_call() -> Response:
    body = _json_object()
    outcome = calls.send_call(_market(), body.get("activity"), body.get("fields", {}))
    return jsonify(outcome.as_json())


# --- verify runs and the history -------------------------------------------------------------


@bp.post("/runs")
def start_run() -> tuple[Response, int]:
    body = _json_object() if request.get_data() else {}
    patterns = body.get("checks", [])
    seed = body.get("seed", 0)
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise BadRequest("checks must be a list of glob strings")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise BadRequest(f"seed must be an integer from 0 to {MAX_SEED}")
    try:
        run_id = runs.start_verify(_market(), patterns, seed)
    except LookupError as exc:
        raise BadRequest(str(exc)) from None
    return jsonify(run_id=run_id, url=url_for("api.get_run", run_id=run_id)), 202


@bp.get("/runs")
def list_runs() -> Response:
    return jsonify(runs=_market().store.history.runs(limit=_limit(), kind=request.args.get("kind")))


def _run(run_id: str) -> dict[str, Any]:
    record = _market().store.history.run(run_id)
    if record is None:
        raise NotFound(f"no run {run_id!r}")
    return record


@bp.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    return jsonify(_run(run_id))


@bp.get("/runs/<run_id>/exchanges")
def run_exchanges(run_id: str) -> Response:
    return jsonify(exchanges=_run(run_id)["exchanges"])


@bp.get("/exchanges/<exchange_id>")
def get_exchange(exchange_id: str) -> Response:
    exchange = _market().store.history.exchange(exchange_id)
    if exchange is None:
        raise NotFound(f"no exchange {exchange_id!r}")
    return jsonify(exchange)


# --- what merchants sent the marketplace -----------------------------------------------------


@bp.get("/inbound")
def inbound() -> Response:
    return jsonify(exchanges=_market().store.history.exchanges(direction=INBOUND, limit=_limit()))


@bp.get("/usage")
def usage() -> Response:
    return jsonify(usage_records=_market().store.marketplace.usage(limit=_limit()))


# --- order notification ----------------------------------------------------------------------


@bp.get("/notifications/template")
def notification_template() -> Response:
    return jsonify(fields=notify.template(_market()))


@bp.post("/notifications")
def send_notification() -> Response:
    body = _json_object()
    check_token, check_repeat = body.get("check_token", True), body.get("check_repeat", True)
    if not isinstance(check_token, bool):
        raise BadRequest("check_token must be true or false")
    if not isinstance(check_repeat, bool):
        raise BadRequest("check_repeat must be true or false")
    run_id = notify.send_notification(
        _market(), body.get("fields"), check_token=check_token, check_repeat=check_repeat
    )
    return jsonify(_market().store.history.run(run_id))


# --- the outbox of failed user syncs ---------------------------------------------------------


@bp.get("/outbox")
def outbox() -> Response:
    return jsonify(
        messages=_market().store.marketplace.outbox(status=request.args.get("status"), limit=_limit())
    )


@bp.get(f"/outbox/<int(max={MAX_ID}):message_id>")
def outbox_message(message_id: int) -> Response:
    message = _market().store.marketplace.outbox_message(message_id)
    if message is None:
        raise NotFound(f"no outbox message {message_id}")
    return jsonify(message)


@bp.post(f"/outbox/<int(max={MAX_ID}):message_id>/continue")
def continue_sync(message_id: int) -> Response:
    outcome = calls.continue_sync(_market(), message_id)
    return jsonify(message=_market().store.marketplace.outbox_message(message_id), call=outcome.as_json())


@bp.post(f"/outbox/<int(max={MAX_ID}):message_id>/stop")
def stop_sync(message_id: int) -> Response:
    calls.stop_sync(_market(), message_id)
    return jsonify(message=_market().store.marketplace.outbox_message(message_id))


# --- scenarios, step by step -----------------------------------------------------------------


@bp.get("/scenarios")
def scenarios() -> Response:
    return jsonify(scenarios=play.library(_scenario_dirs()))


@bp.post("/plays")
def start_play() -> tuple[Response, int]:
    session = play.start(_market(), _json_object().get("scenario"), _scenario_dirs())
    return jsonify(session.state()), 201


def _session(play_id: str) -> play.PlaySession:
    try:
        return play.session(_market(), play_id)
    except LookupError as exc:
        raise NotFound(str(exc)) from None


@bp.get("/plays/<play_id>")
def get_play(play_id: str) -> Response:
    return jsonify(_session(play_id).state())


@bp.post("/plays/<play_id>/next")
def play_next(play_id: str) -> Response:
    session = _session(play_id)
    body = _json_object() if request.get_data() else {}
    fields = body.get("fields")
    if fields is not None and not isinstance(fields, dict):
        raise BadRequest("fields must be a JSON object")
    session.send_next(fields)
    return jsonify(session.state())


@bp.post("/plays/<play_id>/resend")
def play_resend(play_id: str) -> Response:
    session = _session(play_id)
    session.resend_previous()
    return jsonify(session.state())


@bp.post("/plays/<play_id>/finish")
def play_finish(play_id: str) -> Response:
    session = _session(play_id)
    session.finish()
    return jsonify(session.state() | {"run": _market().store.history.run(play_id)})
