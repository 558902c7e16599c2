"""Reading what a request carries without letting it crash the server.

``json.loads`` recurses once per level of nesting: 1000 levels (2 KB of brackets) raise
RecursionError, and 600 levels parse but break whatever walks the value next (the signer, the
contract validator, the store) after the call has gone out. Nesting is therefore measured
*before* parsing and refused past :data:`MAX_DEPTH`, far deeper than any interface's fields.
A lone surrogate (``"\\udfff"``) parses too, but cannot be encoded to UTF-8 for the wire or the
history: refused as well.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_ID = 2**63 - 1
"""The largest id SQLite stores: a larger one is no such thing (404), not an OverflowError."""
MAX_SEED = 2**63 - 1
"""Seeds go into the history as SQLite integers."""
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a JSON body may have (the interfaces need 3 or 4)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJSON(ValueError):
    """The text is not a JSON value the server accepts; the message says why."""


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def has_lone_surrogate(value: Any) -> bool:
    """True when any string in ``value`` (keys too) holds a surrogate code point."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(has_lone_surrogate, value))
    return False


def parse_json(text: str | bytes) -> Any:
    """``text`` as a JSON value; :class:`InvalidJSON` when it is not JSON, nests deeper than
    :data:`MAX_DEPTH`, uses NaN/Infinity, or holds a lone surrogate."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("not UTF-8") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise InvalidJSON(f"not JSON the server takes: arrays and objects nest deeper than {MAX_DEPTH}")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidJSON(f"not JSON: {exc}") from None
    if has_lone_surrogate(value):
        raise InvalidJSON("not JSON the server takes: a string holds a lone surrogate (\\ud800-\\udfff)")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
