"""Who may drive the marketplace: the person who started ``koosim serve``, and nobody else.

Three locks, in the order a request meets them (``docs/server.md``, *Security model*):

1. **The Host name.** A page on an attacker's site can make a browser talk to 127.0.0.1 by
   resolving its own name there (DNS rebinding); such a request carries the attacker's name in
   ``Host``. Only loopback names (``localhost``, ``127.x.x.x``, ``::1``) and the ``--host``
   the server was started with are served; anything else is refused with 403.
2. **The token.** Every process has a secret token (random, or ``KOOSIM_SERVE_TOKEN``), printed
   at start-up in the console's address ``http://host:port/?token=…``. Opening that address puts
   it in a cookie (HttpOnly, SameSite=Strict), so the console's own links and forms carry it;
   scripts send it as ``Authorization: Bearer <token>`` or ``X-Koosim-Token: <token>``. Every page
   and every ``/api/*`` call needs it (401 without), except the marketplace APIs a merchant calls,
   which are authenticated by their signature, and the style sheet.
3. **The site.** A state-changing request that a browser marks as coming from another site
   (``Sec-Fetch-Site``, ``Origin``) is refused with 403, and so is any cross-site request to the
   marketplace APIs: merchants call them from servers, never from a web page.

Every answer also forbids framing (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``) and
sending the address to another site (``Referrer-Policy: same-origin``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode, urlsplit

from flask import Flask, jsonify, redirect, render_template, request
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from simulator.redaction import printable

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TRUSTED_SITES = frozenset({"same-origin", "none"})

TOKEN_ENV = "KOOSIM_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16
TOKEN_COOKIE = "koosim_token"
TOKEN_HEADER = "X-Koosim-Token"
TOKEN_PARAMETER = "token"
OPEN_PREFIXES = ("/api/mkp-openapi-public/", "/static/")
"""Paths served without the token: the merchant's calls (signed) and the style sheet."""
MERCHANT_PREFIX = "/api/mkp-openapi-public/"

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a browser send Origin: null on a form
    "X-Content-Type-Options": "nosniff",
}


class TokenError(ValueError):
    """``KOOSIM_SERVE_TOKEN`` is set but cannot be used; the message says why."""


def server_token(environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The token of this process, and whether it came from ``KOOSIM_SERVE_TOKEN``."""
    value = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if value is None or value == "":
        return secrets.token_urlsafe(24), False
    if len(value) < MIN_TOKEN_LENGTH or not value.isascii() or not value.isprintable() or " " in value:
        raise TokenError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without spaces"
        )
    return value, True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), ``127.x.x.x`` and ``::1``."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, token_from_env: bool) -> str | None:
    """Why ``koosim serve --host host`` must not start, or None."""
    if is_loopback(host) or token_from_env:
        return None
    return (
        f"--host {host} would let other machines reach the console, which can sign calls with the "
        f"merchant's keys: set {TOKEN_ENV} (at least {MIN_TOKEN_LENGTH} characters) to allow it, "
        "or keep the default 127.0.0.1"
    )


def console_url(host: str, port: int, token: str) -> str:
    """The address printed at start-up: opening it logs the browser in."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?{urlencode({TOKEN_PARAMETER: token})}"


def _host_name(host_header: str) -> str:
    parts = urlsplit(f"//{host_header}")
    try:
        return (parts.hostname or "").lower()
    except ValueError:
        return ""


def install(app: Flask, token: str, hosts: Iterable[str] = ()) -> None:
    """Put the three locks on every request of ``app`` and the headers on every answer."""
    served_names = {name.strip("[]").lower() for name in hosts if name}

    def host_allowed() -> bool:
        name = _host_name(request.host)
        return bool(name) and (is_loopback(name) or name in served_names)

    def presented() -> str | None:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            return authorization[7:].strip()
        return request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)

    def matches(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode("utf-8", "replace"), token.encode())

    def refuse(status: int, message: str) -> Response | tuple[Response | str, int]:
        if request.path.startswith("/api/"):
            return jsonify(error=message), status
        return render_template("missing.html", what=request.path, error=message), status

    @app.before_request
    def lock() -> Response | tuple[Response | str, int] | None:
        if request.path.startswith(MERCHANT_PREFIX):  # signed; the blueprint refuses cross-site calls
            return None
        if not host_allowed():
            return refuse(
                403,
                "this server answers only to loopback names (localhost, 127.0.0.1, ::1) and its --host; "
                "the Host header names another",
            )
        if request.path.startswith(OPEN_PREFIXES):
            return None
        if TOKEN_PARAMETER in request.args and request.method == "GET":
            if not matches(request.args[TOKEN_PARAMETER]):
                return refuse(
                    401, "the token in the address is not this server's: use the address koosim serve printed"
                )
            # logged in: keep the token in a cookie, out of the address bar and the history
            rest = {k: v for k, v in request.args.items(multi=True) if k != TOKEN_PARAMETER}
            response = redirect(request.path + (f"?{urlencode(rest)}" if rest else ""))
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response
        if not matches(presented()):
            return refuse(
                401,
                "this server needs its token: open the address koosim serve printed (…/?token=…), or send "
                f"Authorization: Bearer <token> or {TOKEN_HEADER}: <token>",
            )
        refuse_cross_site()
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def refuse_cross_site(*, all_methods: bool = False) -> None:
    """Raise Forbidden for a state-changing request (any, with ``all_methods``) from another site."""
    if request.method in SAFE_METHODS and not all_methods:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in TRUSTED_SITES:
        raise Forbidden(
            f"a {printable(site)} request may not change the marketplace (Sec-Fetch-Site): "
            "use this server's own pages"
        )
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden(
            "a request from another site (Origin) may not change the marketplace: use this server's own pages"
        )
