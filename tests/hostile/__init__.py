"""Hostile merchants: tiny servers on 127.0.0.1 that misbehave the way broken merchants do.

``server.py`` is a raw-socket server a test can make stall, trickle, reset or lie at the byte
level; ``gallery.py`` lists the hostile merchants (``GALLERY``) and what koosim must report for
each; ``tests/test_hostile.py`` runs ``koosim verify``, ``play`` and ``explore`` against every one.
"""

from __future__ import annotations

from .gallery import GALLERY, Hostile, serving
from .server import Connection, RawServer, Request, http_response

__all__ = ["GALLERY", "Connection", "Hostile", "RawServer", "Request", "http_response", "serving"]
