"""The web console: server-rendered pages, plain HTML forms, no JavaScript framework.

Each page is a thin view over the same functions the JSON API calls (:mod:`calls`,
:mod:`notify`, :mod:`runs`) and the run history; a form posts, the page shows what happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from simulator.checks import catalog
from simulator.engine.run import TargetUnreachable
from simulator.protocol.profiles import BILLING_NAMES, PRODUCTS
from simulator.redaction import printable, redact
from simulator.server import calls, notify, play, runs
from simulator.server.inputs import MAX_ID, MAX_SEED, InvalidJSON, parse_json
from simulator.server.openapi import QUERY_ORDER_PATH, USAGE_PATH
from simulator.server.state import PROTOCOLS, MarketState, NotConfigured, SettingsError
from simulator.store import INBOUND, OUTBOX_PENDING

bp = Blueprint("console", __name__)

FORM_SETTINGS = (
    "url",
    "protocol",
    "sync_url",
    "timeout",
    "product",
    "billing",
    "optional",
    "license_call",
    "encrypt_type",
    "access_key",
    "sync_key",
    "notification_url",
    "notification_token",
    "market_ak",
    "market_sk",
    "contact",
)


def _market() -> MarketState:
    return current_app.extensions["koosim.marketplace"]


def _said(error: Exception) -> str:
    """An error's message as a page may show it: no key of the target, no control character."""
    return printable(redact(str(error), _market().secrets))


def _scenario_dirs() -> tuple[Path, ...]:
    return current_app.config["KOOSIM_SCENARIO_DIRS"]


def _parse_fields(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        fields = parse_json(text)
    except InvalidJSON as exc:
        return None, f"the fields are not JSON: {exc}"
    if not isinstance(fields, dict):
        return None, 'the fields must be a JSON object: {"name": "value", …}'
    return fields, None


@bp.get("/")
def overview() -> str:
    market = _market()
    return render_template(
        "overview.html",
        settings=market.settings.public(),
        runs=market.store.history.runs(limit=8),
        pending=len(market.store.marketplace.outbox(status=OUTBOX_PENDING)),
        failing=market.store.deliveries.failing(),
        inbound=market.store.history.exchanges(direction=INBOUND, limit=5),
    )


@bp.route("/target", methods=["GET", "POST"])
def target() -> str | Response | tuple[str, int]:
    market = _market()
    if request.method == "POST":
        changes: dict[str, Any] = {name: request.form[name] for name in FORM_SETTINGS if name in request.form}
        changes["bundled"] = request.form.get("bundled") == "on"
        changes["clear_keys"] = request.form.get("clear_keys") == "on"
        try:
            market.configure(changes)
        except SettingsError as exc:
            flash(_said(exc), "error")
            return render_template(
                "target.html",
                settings=market.settings.public(),
                protocols=PROTOCOLS,
                products=PRODUCTS,
                billings=BILLING_NAMES,
            ), 400
        flash("Target saved. Keys are kept in this server's memory only.", "ok")
        return redirect(url_for("console.target"))
    return render_template(
        "target.html",
        settings=market.settings.public(),
        protocols=PROTOCOLS,
        products=PRODUCTS,
        billings=BILLING_NAMES,
    )


@bp.route("/call", methods=["GET", "POST"])
def call() -> str | tuple[str, int]:
    market = _market()
    activity = request.values.get("activity", "newInstance")
    outcome, error, status = None, None, 200
    if request.method == "POST":
        text = request.form.get("fields", "")
        fields, error = _parse_fields(text)
        if fields is not None:
            try:
                outcome = calls.send_call(market, activity, fields)
            except (calls.CallError, NotConfigured) as exc:
                error = _said(exc)
        status = 400 if error else 200
    else:
        try:
            text = json.dumps(calls.template(activity, market), ensure_ascii=False, indent=2)
        except calls.CallError as exc:
            text, error, status = "{}", str(exc), 400
    page = render_template(
        "call.html",
        activities=calls.activities(),
        activity=activity,
        fields=text,
        outcome=outcome,
        error=error,
        settings=market.settings.public(),
    )
    return page, status


@bp.get("/runs")
def run_list() -> str:
    return render_template("runs.html", runs=_market().store.history.runs(limit=100), catalog=catalog())


@bp.post("/runs")
def start_run() -> Response | tuple[str, int]:
    patterns = request.form.get("checks", "").split()
    try:
        seed = int(request.form.get("seed") or 0)
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(seed)
        run_id = runs.start_verify(_market(), patterns, seed)
    except ValueError:
        flash(f"the seed must be a whole number from 0 to {MAX_SEED}", "error")
    except (LookupError, NotConfigured) as exc:
        flash(_said(exc), "error")
    except TargetUnreachable as exc:
        flash(f"the target could not be reached: {_said(exc)}", "error")
    else:
        return redirect(url_for("console.run_page", run_id=run_id))
    return render_template("runs.html", runs=_market().store.history.runs(limit=100), catalog=catalog()), 400


@bp.get("/runs/<run_id>")
def run_page(run_id: str) -> str | tuple[str, int]:
    record = _market().store.history.run(run_id)
    if record is None:
        return render_template("missing.html", what=f"run {run_id}"), 404
    return render_template("run.html", run=record)


@bp.get("/exchanges/<exchange_id>")
def exchange_page(exchange_id: str) -> str | tuple[str, int]:
    exchange = _market().store.history.exchange(exchange_id)
    if exchange is None:
        return render_template("missing.html", what=f"exchange {exchange_id}"), 404
    return render_template("exchange.html", exchange=exchange)


@bp.route("/notify", methods=["GET", "POST"])
def notification() -> str | Response | tuple[str, int]:
    market = _market()
    if request.method == "POST":
        text = request.form.get("fields", "")
        fields, error = _parse_fields(text)
        if fields is not None:
            try:
                run_id = notify.send_notification(
                    market,
                    fields,
                    check_token=request.form.get("check_token") == "on",
                    check_repeat=request.form.get("check_repeat") == "on",
                )
            except (notify.NotificationError, NotConfigured) as exc:
                error = _said(exc)
            else:
                return redirect(url_for("console.run_page", run_id=run_id))
        page = render_template(
            "notify.html",
            fields=text,
            error=error,
            settings=market.settings.public(),
        )
        return page, 400
    text = json.dumps(notify.template(market), ensure_ascii=False, indent=2)
    return render_template(
        "notify.html",
        fields=text,
        error=None,
        settings=market.settings.public(),
    )


@bp.get("/marketplace")
def merchant_calls() -> str:
    store = _market().store
    return render_template(
        "marketplace.html",
        inbound=store.history.exchanges(direction=INBOUND, limit=100),
        usage=store.marketplace.usage(limit=100),
        query_path=QUERY_ORDER_PATH,
        usage_path=USAGE_PATH,
        market_ak=_market().settings.public()["market_ak"],
        market_sk=_market().settings.public()["market_sk"],
    )


@bp.get("/outbox")
def outbox() -> str:
    return render_template("outbox.html", messages=_market().store.marketplace.outbox(limit=100))


@bp.post(f"/outbox/<int(max={MAX_ID}):message_id>/<decision>")
def decide(message_id: int, decision: str) -> Response | tuple[str, int]:
    market = _market()
    try:
        if decision == "continue":
            outcome = calls.continue_sync(market, message_id)
            flash(f"Sync resent: {outcome.summary}.", "ok" if outcome.verdict == "passed" else "error")
        elif decision == "stop":
            calls.stop_sync(market, message_id)
            flash(f"Sync of message #{message_id} stopped.", "ok")
        else:
            return render_template("missing.html", what=f"decision {decision}"), 404
    except (calls.NoSuchMessage, calls.AlreadyDecided, NotConfigured) as exc:
        flash(_said(exc), "error")
    return redirect(url_for("console.outbox"))


@bp.get("/play")
def play_list() -> str:
    market = _market()
    return render_template(
        "play_list.html", scenarios=play.library(_scenario_dirs()), sessions=play.sessions(market)
    )


@bp.post("/play")
def play_start() -> Response | tuple[str, int]:
    market = _market()
    try:
        session = play.start(market, request.form.get("scenario", ""), _scenario_dirs())
    except (play.PlayError, NotConfigured) as exc:
        flash(_said(exc), "error")
        return render_template(
            "play_list.html", scenarios=play.library(_scenario_dirs()), sessions=play.sessions(market)
        ), 400
    return redirect(url_for("console.play_page", play_id=session.id))


@bp.get("/play/<play_id>")
def play_page(play_id: str) -> str | tuple[str, int]:
    try:
        session = play.session(_market(), play_id)
    except LookupError:
        return render_template("missing.html", what=f"scenario session {play_id}"), 404
    state = session.state()
    fields = state["next"]["fields"] if state["next"] else None
    text = json.dumps(fields, ensure_ascii=False, indent=2) if fields is not None else ""
    return render_template("play.html", play=state, fields=text, run=_market().store.history.run(play_id))


@bp.post("/play/<play_id>/<action>")
def play_action(play_id: str, action: str) -> Response | tuple[str, int]:
    try:
        session = play.session(_market(), play_id)
    except LookupError:
        return render_template("missing.html", what=f"scenario session {play_id}"), 404
    try:
        if action == "next":
            fields = None
            if request.form.get("fields", "").strip():
                fields, error = _parse_fields(request.form["fields"])
                if error:
                    raise play.PlayError(error)
            outcome = session.send_next(fields)
            flash(
                f"Step {outcome.step.id}: {'failed' if outcome.failed else 'as expected'}.",
                "error" if outcome.failed else "ok",
            )
        elif action == "resend":
            outcome = session.resend_previous()
            flash(
                f"Step {outcome.step.id} resent: {'failed' if outcome.failed else 'as expected'}.",
                "error" if outcome.failed else "ok",
            )
        elif action == "finish":
            session.finish()
            flash("Scenario finished; the run is in the history.", "ok")
        else:
            return render_template("missing.html", what=f"action {action}"), 404
    except play.PlayError as exc:
        flash(_said(exc), "error")
    return redirect(url_for("console.play_page", play_id=play_id))
