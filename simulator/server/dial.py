"""Dial tests in ``serve``: twice a marketplace day on a timer, and on demand (docs/protocol.md
§10.3, U14).

- :class:`DialService` runs a dial test (:func:`simulator.engine.dial.dial_test`) against the
  configured target, keeps it in the store's dial history (per target URL) and computes the
  delisting countdown from that history;
- its timer thread waits on the app's :class:`~simulator.clock.Clock` for each dial-test instant
  (09:00 and 15:00 marketplace time, U14) and runs one at each: with a scaled clock a day passes
  in seconds, with a frozen one only when something advances it — a test never sleeps through
  marketplace time. When the clock moved past several instants at once, each of them is played
  in order (against the merchant as it is then);
- the blueprint: ``GET /api/dial`` (history, verdict, next dial test), ``POST /api/dial`` (one
  dial test now), and the console page ``/dial`` with a "Run a dial test now" button.
"""

from __future__ import annotations

import logging
import threading
from contextlib import closing
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, flash, jsonify, redirect, render_template, url_for
from werkzeug.wrappers import Response

from simulator.clock import Clock, FrozenClock, isoformat
from simulator.engine.delisting import (
    RunVerdict,
    dial_days,
    dial_test_verdict,
    failed_orders_this_month,
    next_dial_test,
    v1_orders_verdict,
)
from simulator.engine.dial import DialTest, dial_test
from simulator.redaction import printable, redact
from simulator.server.state import MarketState, NotConfigured

bp = Blueprint("dial", __name__)

EXTENSION = "koosim.dial"
WAIT_SLICE_S = 0.25
"""The timer waits on the clock in slices this long (wall seconds) so that it notices a stop."""
HISTORY_SHOWN = 20
LOG = logging.getLogger("koosim.dial")


class DialService:
    """Dial tests of one app's target: on demand (:meth:`run_now`) and on a timer (:meth:`start`)."""

    def __init__(self, market: MarketState, clock: Clock) -> None:
        self.market = market
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self.completed = 0
        """Dial tests the timer has run (whatever their outcome, or a skip for want of a target)."""
        self.last_problem: str | None = None

    # --- one dial test -------------------------------------------------------------------------

    def run_now(self, at: datetime | None = None) -> DialTest:
        """Run a dial test against the configured target and keep it; NotConfigured when there
        is none. ``at``: the marketplace instant it is stamped with (the timer's due instant),
        default now."""
        target = self.market.target()
        test = dial_test(target, _AtClock(self.clock, at) if at is not None else self.clock)
        record = test.as_dict(target.secrets)
        self.market.store.dial.add(
            record["url"], test.market_at, test.at.wall.timestamp(), test.passed, record
        )
        return test

    def url(self) -> str | None:
        """The history key of the configured target: its URL as stored (redacted)."""
        settings = self.market.settings
        return None if not settings.url else redact(settings.url, settings.secrets)

    def verdict(self, url: str | None = None) -> RunVerdict:
        """The dial-test countdown of ``url`` (default: the configured target) and, for a V1
        target, this month's orders cancelled automatically against the V1 limit (§10.3)."""
        url = url or self.url()
        results = self.market.store.dial.results(url) if url else []
        verdicts = [dial_test_verdict(dial_days(results))]
        settings = self.market.settings
        if settings.protocol == "v1" and settings.url and url == self.url():
            cancelled = self.market.store.deliveries.cancellations(settings.url)
            verdicts.append(v1_orders_verdict(failed_orders_this_month(cancelled, self.clock.now())))
        return RunVerdict(tuple(verdicts))

    def status(self) -> dict[str, Any]:
        url = self.url()
        history = self.market.store.dial.recent(url, limit=HISTORY_SHOWN) if url else []
        return {
            "target": url,
            "now": isoformat(self.clock.now()),
            "next_dial_test": isoformat(next_dial_test(self.clock.now())),
            "timer": self.running,
            "delisting": self.verdict(url).as_dict(),
            "history": history,
        }

    # --- the timer -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the timer thread (once). A frozen clock that jumps on every wait would make it
        spin through marketplace time: refused."""
        if isinstance(self.clock, FrozenClock) and self.clock.waits == "jump":
            raise ValueError(
                "the dial-test timer needs a clock that waits (a frozen clock with waits='block')"
            )
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="koosim-dial-timer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop the timer (:meth:`MarketState.close` calls it: every app's timer ends with it)."""
        self.stop()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait (wall ``timeout``) until the timer has run ``count`` dial tests in all (tests)."""
        with self._done:
            return self._done.wait_for(lambda: self.completed >= count, timeout=timeout)

    def _loop(self) -> None:
        due = next_dial_test(self.clock.now())
        while not self._stop.is_set():
            if not self.clock.sleep_until(due, wall_timeout=WAIT_SLICE_S):
                continue
            if self._stop.is_set():
                return
            try:
                self.run_now(at=due)
                self.last_problem = None
            except NotConfigured as exc:  # no target yet: nothing to probe at this instant
                self.last_problem = str(exc)
            except Exception as exc:  # a damaged history file must not kill the timer
                self.last_problem = printable(
                    redact(f"{type(exc).__name__}: {exc}", self.market.secrets), one_line=True
                )
                LOG.warning("dial test not run: %s", self.last_problem)
            with self._done:
                self.completed += 1
                self._done.notify_all()
            due = next_dial_test(due)


class _AtClock(Clock):
    """The app's clock, read as if it were ``at``: a dial test the timer runs for an instant the
    clock has already passed is stamped with that instant."""

    def __init__(self, clock: Clock, at: datetime) -> None:
        super().__init__(clock.wall_source)
        self._at = at

    def now(self) -> datetime:
        return self._at

    def sleep_until(self, instant: datetime, *, wall_timeout: float | None = None) -> bool:
        return True

    def describe(self) -> str:
        return f"marketplace time: {isoformat(self._at)}"


def install(app: Flask) -> DialService:
    """Give ``app`` its dial-test service (over the marketplace's clock, ``MarketState.clock``)
    and register the blueprint."""
    market: MarketState = app.extensions["koosim.marketplace"]
    service = DialService(market, market.clock)
    market.on_close(closing(service))  # the timer stops with the app, whoever built it
    app.extensions[EXTENSION] = service
    app.register_blueprint(bp)
    return service


def service(app: Flask) -> DialService:
    """The dial-test service of an app made by :func:`simulator.server.create_app`."""
    return app.extensions[EXTENSION]


def _service() -> DialService:
    return service(current_app)


def _said(error: Exception) -> str:
    return printable(redact(str(error), _service().market.secrets))


@bp.get("/api/dial")
def api_status() -> Response:
    return jsonify(_service().status())


@bp.post("/api/dial")
def api_run() -> Response | tuple[Response, int]:
    dial = _service()
    try:
        test = dial.run_now()
    except NotConfigured as exc:
        return jsonify(error=_said(exc)), 409
    secrets = dial.market.secrets
    return jsonify(
        {
            "dial_test": test.as_dict(secrets),
            "summary": printable(redact(test.summary(), secrets)),
            "delisting": dial.verdict().as_dict(),
            "next_dial_test": isoformat(next_dial_test(dial.clock.now())),
        }
    )


@bp.get("/dial")
def page() -> str:
    dial = _service()
    return render_template("dial.html", status=dial.status(), clock=dial.clock.describe())


@bp.post("/dial")
def run_from_console() -> Response:
    dial = _service()
    try:
        test = dial.run_now()
        flash(printable(redact(test.summary(), dial.market.secrets)), "ok" if test.passed else "error")
    except NotConfigured as exc:
        flash(_said(exc), "error")
    return redirect(url_for("dial.page"))
