"""One call before the catalog that tells the three first-hour mistakes from a merchant's bugs.

A wrong access key makes every call of the catalog answer 000001, a wrong path makes every call
a 404: hundreds of findings that all say the same thing. :func:`preflight` sends one correctly
signed call and, when its answer is one of those patterns, returns the one line that names the
cause; otherwise None and the catalog runs (and judges that answer's faults itself).

The call is a ``queryInstance`` of an instance that does not exist: every merchant must answer
it (the catalog's checks query), and it changes nothing, so the merchant the catalog then meets
is the one it would have met without the preflight (a ``newInstance``, even a test order's, would
leave an order behind and shift a stateful merchant's answers). It is deliberately plain (ASCII
values, no null field) so that a merchant whose signature check has one faulty corner
(non-ASCII escaping, nulls kept in the canonical form) still passes it: such a merchant has a bug
the catalog names, not a wrong key.
"""

from __future__ import annotations

from simulator.model import OrderFactory, query_fields
from simulator.transport import Exchange, Target, Transport

__all__ = ["diagnose", "preflight"]

REFUSED_SIGNATURE = "000001"


def preflight(target: Target, *, seed: int = 0) -> tuple[str | None, Exchange]:
    """Send the preflight call; return the diagnosis (None: nothing obvious) and its exchange."""
    fields = query_fields(OrderFactory(f"preflight-{seed}").unknown_instance_id())
    transport = Transport(target)
    try:
        exchange = transport.send(fields, label="preflight")
    finally:
        transport.close()
    return diagnose(exchange, target), exchange


def diagnose(exchange: Exchange, target: Target) -> str | None:
    """The cause an answer makes obvious, as one line; None when it looks like a produce interface."""
    if not exchange.answered:
        return None  # a timeout or a dropped connection is the catalog's to judge, call by call
    if exchange.status in (404, 405) and exchange.result_code is None:  # a resultCode: it is the interface
        return (
            f"nothing answers at this path (HTTP {exchange.status}): the produce interface URL is "
            f"the one the seller console names, e.g. https://host/produceAPI (koosim called {target.url})"
        )
    # A 5xx page is a gateway or a crash behind the right URL: the catalog's to judge, call by call.
    if (exchange.status or 0) < 500 and _is_web_page(exchange.response_body):
        return (
            f"a web page, not the produce interface, answers at {target.url} (HTTP {exchange.status}, "
            "HTML): point --url at the produce interface, not at the site"
        )
    if exchange.result_code == REFUSED_SIGNATURE:
        return (
            "the merchant refuses our signature (resultCode 000001 for a correctly signed queryInstance): "
            "check KOOSIM_ACCESS_KEY matches the seller console's key"
            + ("" if target.protocol == "v2" else " and --protocol is the generation it implements")
        )
    return None


def _is_web_page(body: bytes) -> bool:
    """An HTML document (the site's home page, an SPA's index.html, a login page), not JSON
    served with a wrong content type."""
    head = body.lstrip()[:200].lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return True
    return head.startswith(b"<") and b"<html" in body[:2000].lower()
