"""What every faulty merchant of the gallery is made of, and the few ways one is altered.

A mutant is the reference merchant (``simulator.reference.create_app``) with one defect put in
by the smallest change that reproduces what real sellers get wrong. The alterations stay inside
the app object a mutant builds: a ``Merchant`` subclass in ``app.extensions``, a wrapped view in
``app.view_functions``, an ``after_request`` hook. Nothing at module level is patched, so any
number of mutants (and the reference merchant) can live in one process without leaking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from simulator.checks import Verdict
from simulator.protocol import ResultCode, sign_body
from simulator.reference import MerchantConfig, create_app
from simulator.reference.activities import Merchant, answer
from simulator.reference.produce import json_response, read_json_object
from simulator.reference.store import MerchantStore

MERCHANT = "koosim.merchant"
"""Where ``create_app`` keeps the merchant's business logic."""


@dataclass(frozen=True)
class Mutant:
    """One faulty merchant, the check that must catch it, and how to run that check fast."""

    name: str
    build: Callable[[MerchantConfig], Flask]
    catches: str
    """The check id whose verdict must be :attr:`verdict`."""
    evidence: str
    """A phrase the check's findings must contain: the defect, in the check's own words."""
    rule: str
    """Where protocol.md states the rule the defect breaks."""
    protocol: str = "v2"
    verdict: Verdict = Verdict.FAILED
    drivers: tuple[str, ...] = ()
    """Active checks run first to produce exchanges, for a per-exchange (contract.*, timing.*) check."""
    controls: tuple[str, ...] = ()
    """Neighbouring checks that must still pass: the defect is this one, not a broken merchant."""
    timeout: float = 5.0
    """The marketplace's per-call deadline for this run, in seconds."""
    xfail: str | None = None
    """Why the catalog does not catch this mutant yet (a check bug or gap), or None."""
    market: bool = False
    """Run with koosim's open API, the merchant configured to call it (``MerchantConfig.market_url``)."""
    billing: str | None = None
    """The billing profile to run under (``--billing``), when the defect needs one."""

    @property
    def selection(self) -> list[str]:
        return [*self.drivers, *self.controls, self.catches]


def mutant(module: str, build: Callable[[MerchantConfig], Flask], **details: Any) -> Mutant:
    """A :class:`Mutant` named after its module (``__name__``)."""
    return Mutant(name=module.rsplit(".", 1)[-1], build=build, **details)


# --- altering the business logic -----------------------------------------------------------


def install_merchant(app: Flask, merchant_class: type[Merchant]) -> None:
    """Replace the app's merchant with a ``merchant_class`` over the same store and keys."""
    current: Merchant = app.extensions[MERCHANT]
    carried = {f.name: getattr(current, f.name) for f in dataclasses.fields(Merchant)}
    app.extensions[MERCHANT] = merchant_class(**carried)


def with_merchant(merchant_class: type[Merchant]) -> Callable[[MerchantConfig], Flask]:
    """A mutant's ``build``: the reference merchant's app answering through ``merchant_class``."""

    def build(config: MerchantConfig) -> Flask:
        app = create_app(config)
        install_merchant(app, merchant_class)
        return app

    return build


def install_store(app: Flask, store: MerchantStore) -> None:
    """Give the app's merchant (and with it the sync views) ``store`` in place of its own.

    Call it before the app serves anything: the new store starts from what its database holds.
    """
    merchant: Merchant = app.extensions[MERCHANT]
    merchant.store.close()
    merchant.store = store


# --- altering the HTTP layer ---------------------------------------------------------------


def wrap_view(
    app: Flask, endpoint: str, wrapper: Callable[[Callable[..., Response]], Callable[..., Response]]
) -> None:
    """Put ``wrapper(original view)`` in place of one view of this app only."""
    app.view_functions[endpoint] = wrapper(app.view_functions[endpoint])


def answer_body(response: Response) -> dict[str, Any] | None:
    """The JSON object a merchant's response carries, or None."""
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def rewrite_answers(app: Flask, rewrite: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Pass every JSON answer through ``rewrite`` (None: leave it) before it goes on the wire.

    A v1 answer is signed again over the new bytes, as the merchant's own serialiser would: the
    mutant keeps a correct Body-Sign so that its only defect is the one ``rewrite`` puts in.
    """

    @app.after_request
    def _rewrite(response: Response) -> Response:
        body = answer_body(response)
        changed = None if body is None else rewrite(body)
        if changed is None:
            return response
        payload = json.dumps(changed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        response.set_data(payload)
        if "Body-Sign" in response.headers:
            response.headers["Body-Sign"] = sign_body(payload, app.config["KOOSIM_ACCESS_KEY"])
        return response


def verify_v2_with_own_canonical_form(
    app: Flask, access_key: str, canonical: Callable[[dict[str, Any]], str]
) -> None:
    """Make the app refuse with 000001 a v2 call whose signature does not match over ``canonical(body)``.

    This is a merchant that implements protocol.md §2 itself, with its own idea of the canonical
    body. The reference merchant's own verification still runs afterwards, so where the two
    forms agree the call is treated exactly as before.
    """

    def verifier(view: Callable[[], Response]) -> Callable[[], Response]:
        def produce_v2() -> Response:
            body, timestamp, nonce = (
                read_json_object(),
                request.args.get("timestamp"),
                request.args.get("nonce"),
            )
            if body is not None and timestamp and nonce:
                inner = _hex_hmac(access_key, canonical(body))
                expected = _hex_hmac(access_key, access_key + nonce + timestamp + inner)
                if (request.args.get("signature") or "").lower() != expected:
                    return json_response(answer(ResultCode.AUTH_FAILED, "signature verification failed"))
            return view()

        return produce_v2

    wrap_view(app, "produce.produce_v2", verifier)


def _hex_hmac(key: str, message: str) -> str:
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def activity_of_request() -> str | None:
    """The activity the current produce call names (v2 JSON body or v1 query string)."""
    if request.method == "GET":
        return request.args.get("activity")
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        return None
    return body.get("activity") if isinstance(body, dict) else None


def refuse_calls(
    app: Flask,
    endpoint: str,
    reason: Callable[[dict[str, Any]], str | None],
    code: ResultCode = ResultCode.INVALID_PARAMETER,
) -> None:
    """Answer ``code`` to every call of ``endpoint`` for which ``reason(fields)`` names one.

    ``fields`` are the call's query parameters (v1 GET) or its JSON body (v2, sync). Answers
    are signed with Body-Sign as the reference merchant signs them (produce and Kit), so the
    defect is only the refusal; every other call goes to the reference merchant unchanged.
    """

    def refusing(view: Callable[..., Response]) -> Callable[..., Response]:
        def refuse_or_serve(*args: Any, **kwargs: Any) -> Response:
            fields = request.args.to_dict() if request.method == "GET" else read_json_object()
            why = None if fields is None else reason(fields)
            if why is None:
                return view(*args, **kwargs)
            return json_response(answer(code, why), sign_with=app.config["KOOSIM_ACCESS_KEY"])

        return refuse_or_serve

    wrap_view(app, endpoint, refusing)
