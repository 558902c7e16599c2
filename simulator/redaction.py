"""The one place secrets and hostile bytes are made safe for any output.

:func:`redact` scrubs the target's keys (and what a run decrypts) from a string, in every
spelling a merchant may echo them; :func:`printable` spells out control characters a terminal
or an XML parser would obey; :func:`body_text` does both to a body, cut to a readable length.

Whether any of many strings may occur in a text is answered in time that depends on the text:

A run learns a secret from every appInfo password the merchant sends, and every string that
goes into a record or a report is redacted (or masked) of all of them: late in a run, hundreds
of ``str.replace`` calls per string, most of which find nothing. :func:`may_contain` answers
"none of them is here" first, and the callers skip the replacing, which would have left the
string as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain, compress
from operator import itemgetter
from urllib.parse import quote, quote_plus

WINDOW = 6
"""Length of the slices of a text looked up among the needles' beginnings."""


class _Needles:
    def __init__(self, needles: tuple[str, ...]) -> None:
        # built anew whenever the run learns a secret: C-level iteration throughout
        self.short = tuple(compress(needles, map(WINDOW.__gt__, map(len, needles))))
        self.long = tuple(compress(needles, map(WINDOW.__le__, map(len, needles))))
        self.starts = frozenset(map(itemgetter(slice(WINDOW)), self.long))

    def may_occur_in(self, text: str) -> bool:
        # map() over C callables: a generator expression would cost twice as much per step
        if self.short and any(map(text.__contains__, self.short)):
            return True
        # Looking for each needle costs ~30 ns + 0.5 ns a character; looking a slice up, ~100 ns
        # a character: the slices pay off past 50 needles (short texts) to 200 (long ones).
        if len(self.long) * (60 + len(text)) <= 200 * len(text):
            return any(map(text.__contains__, self.long))
        ends = range(WINDOW, len(text) + 1)
        return not self.starts.isdisjoint(map(text.__getitem__, map(slice, range(len(ends)), ends)))


@lru_cache(maxsize=32)
def _needles(needles: tuple[str, ...]) -> _Needles:
    return _Needles(needles)


def may_contain(text: str, needles: tuple[str, ...]) -> bool:
    """False only when none of ``needles`` occurs in ``text``.

    Looking for each needle costs a pass over the text per needle; with many needles, the
    text's 6-character slices are looked up among the needles' first 6 characters instead (a
    shared beginning is a maybe, never a no). Cached per tuple of needles.
    """
    return _needles(needles).may_occur_in(text)


REDACTED = "[redacted]"
MAX_BODY_CHARS = 4000
"""Bodies longer than this are cut in reports: a merchant may answer megabytes of garbage."""

_HOSTILE = (
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 (but tab, LF, CR), DEL, C1 (U+009B is a CSI)
    "\u00ad\u061c\u180e"  # soft hyphen, Arabic letter mark, Mongolian vowel separator
    "\u200b-\u200f"  # zero-width space / non-joiner / joiner, LRM, RLM
    "\u2028-\u202e"  # line and paragraph separators, bidi embeddings and overrides
    "\u2060-\u206f"  # word joiner, invisible operators, bidi isolates (U+2066-2069), deprecated formats
    "\ufeff\ufff9-\ufffb"  # zero-width no-break space (BOM), interlinear annotations
    "\ud800-\udfff\ufffe\uffff"  # lone surrogates, non-characters
    "\U000e0000-\U000e007f"  # tag characters
)
_UNPRINTABLE = re.compile(f"[{_HOSTILE}]")
"""Characters a terminal obeys (escape sequences start with ESC or a C1 control), that XML 1.0
forbids or HTML calls parse errors, and the invisible ones that make a text read other than it is
(bidi overrides and isolates, zero-width characters): all spelled out as escapes."""
_UNPRINTABLE_LINE = re.compile(f"[\t\n\r{_HOSTILE}]")


@lru_cache(maxsize=4096)
def _spellings(secret: str) -> tuple[str, ...]:
    """A secret as a merchant may echo it: raw, JSON-escaped, URL-encoded; the longest first."""
    spellings = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]} | {
        encode(secret, safe=safe) for encode in (quote, quote_plus) for safe in ("", "/")
    }
    return tuple(sorted(spellings, key=len, reverse=True))


@lru_cache(maxsize=32)
def _replacements(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every spelling of every secret, in the order :func:`redact` replaces them (cached: a run
    redacts every string of every exchange with the same secrets)."""
    return tuple(chain.from_iterable(map(_spellings, filter(None, secrets))))


def redact(text: str, secrets: Iterable[str]) -> str:
    replacements = _replacements(tuple(secrets))
    if not may_contain(text, replacements):  # what the replacements would leave
        return text
    for spelling in replacements:
        text = text.replace(spelling, REDACTED)
    return text


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with the characters of :data:`_UNPRINTABLE` written as ``\\xNN`` / ``\\uNNNN``.

    The one function every merchant- or user-supplied string goes through before any output (a
    terminal, a page, a report): merchants answer garbage bytes; a report must show them, and
    must stay a well-formed file. ``one_line`` also spells out tab, CR and LF, for a value shown
    on one line (a resultCode, an id, a URL), where a CR would let it overwrite what came before.
    """
    return (_UNPRINTABLE_LINE if one_line else _UNPRINTABLE).sub(_escape, text)


def body_text(body: bytes, secrets: Iterable[str]) -> str:
    """A body as text a person can read: UTF-8 (undecodable bytes shown as �), redacted, cut,
    control characters spelled out (a console shows it, and a terminal obeys escape sequences)."""
    text = redact(body.decode("utf-8", errors="replace"), secrets)  # before the cut: no half key
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"… [{len(body)} bytes in all]"
    return printable(text)
