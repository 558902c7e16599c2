"""Cross-site request forgery: a page on another site must not make a seller's browser change
the marketplace (point it at another merchant, send calls, start runs, decide outbox messages).

Browsers say where a request comes from: ``Sec-Fetch-Site`` (``same-origin`` from this server's
own pages, ``none`` when a person typed the address) and ``Origin``. A state-changing request
that a browser marks as coming from elsewhere is refused with 403 and a message saying why.
Scripts and CI (curl, requests) send neither header and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request
from werkzeug.exceptions import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TRUSTED_SITES = frozenset({"same-origin", "none"})


def refuse_cross_site() -> None:
    """A ``before_request`` hook: raise Forbidden for a state-changing request from another site."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in TRUSTED_SITES:
        raise Forbidden(
            f"a {site} request may not change the marketplace (Sec-Fetch-Site: {site}): "
            "use this server's own pages"
        )
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden(
            f"a request from {origin} may not change the marketplace at {request.host}: "
            "use this server's own pages"
        )
