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

import base64
import html
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import compress
from operator import itemgetter
from typing import Any
from urllib.parse import quote, quote_plus

WINDOW = 5
"""Length of the slices of a text looked up among the needles' beginnings; also the length of
the hints redaction looks up (:func:`_hints`): any 10 characters hold 5 at a multiple of 5."""


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
    text's 5-character slices are looked up among the needles' first 5 characters instead (a
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


MIN_SECRET_CHARS = 8
"""A key shorter than this is refused (:func:`secret_problem`); a shorter learned secret is
redacted only where it stands alone, never inside an identifier."""
WINDOW_CHARS = 10
"""Any run of this many characters of a secret at least this long is redacted: a merchant that
echoes a 20-character prefix of the key has leaked it as surely as the whole key."""
_CHUNK = WINDOW
"""Any WINDOW_CHARS run of a secret holds one of its _CHUNK-long pieces at offsets 0, 5, 10, …"""


def secret_problem(value: str) -> str | None:
    """Why ``value`` cannot serve as a key, or None: redacting a short key from every report
    would cut it out of ordinary words (``notification.[redacted]en``)."""
    if len(value) < MIN_SECRET_CHARS:
        return (
            f"is {len(value)} character(s) long; a key needs at least {MIN_SECRET_CHARS}, "
            "or redacting it from reports would garble ordinary text"
        )
    return None


def _fold(text: str) -> str:
    """ASCII letters lower-cased, nothing else touched: ``str.lower`` is not a per-character
    map (a final sigma lowers by context), and the pre-filter needs one."""
    if text.isascii():
        return text.lower()
    # bytes.lower() touches ASCII bytes only, and UTF-8 spells every other character in bytes
    # >= 0x80: ~100 times faster than str.translate on a body with a few Chinese characters
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def _base64_forms(raw: bytes) -> set[str]:
    """``raw`` in base64 (standard and URL-safe) alone, and the characters that encode it
    wherever it starts inside a longer encoded text: one core per offset modulo 3, without the
    groups the neighbouring bytes share."""
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms |= {whole, whole.rstrip("=")}
        for offset in range(3):
            encoded = encode(bytes(offset) + raw).decode("ascii")
            forms.add(encoded[4 if offset else 0 : 4 * ((offset + len(raw)) // 3)])
    return forms


@lru_cache(maxsize=4096)
def _forms(secret: str) -> frozenset[str]:
    """``secret`` as a merchant may echo it: raw, upper and lower case, JSON-escaped,
    URL-encoded, and for a key of at least MIN_SECRET_CHARS also hex, base64 at any alignment,
    HTML character references (decimal, hex, named) and every WINDOW_CHARS run of it."""
    cased = {secret, secret.upper(), secret.lower()}
    forms: set[str] = set()
    for variant in cased:
        forms |= {variant, json.dumps(variant)[1:-1], json.dumps(variant, ensure_ascii=False)[1:-1]}
        forms |= {encode(variant, safe=safe) for encode in (quote, quote_plus) for safe in ("", "/")}
    if len(secret) >= MIN_SECRET_CHARS:
        raw = secret.encode("utf-8", "surrogatepass")
        forms |= {raw.hex(), raw.hex().upper()} | _base64_forms(raw)
        forms |= {
            html.escape(secret),
            "".join(f"&#{ord(char)};" for char in secret),
            "".join(f"&#x{ord(char):x};" for char in secret),
            "".join(f"&#x{ord(char):X};" for char in secret),
        }
        forms |= {
            variant[at : at + WINDOW_CHARS]
            for variant in cased
            for at in range(len(variant) - WINDOW_CHARS + 1)
        }
    forms.discard("")
    return frozenset(forms)


@lru_cache(maxsize=4096)
def _hints(secret: str) -> frozenset[str]:
    """Short strings (folded by :func:`_fold`) one of which every form of ``secret`` contains:
    each form's first _CHUNK characters, and for the WINDOW_CHARS runs, the _CHUNK-long pieces of
    the secret at offsets 0, 5, 10, … (every run of 10 holds one). Few, so a text is ruled out
    fast, and short, so secrets share them."""
    cased = {secret, secret.upper(), secret.lower()}
    if len(secret) < WINDOW_CHARS:
        return frozenset(_fold(form)[:_CHUNK] for form in _forms(secret))
    runs = {
        variant[at : at + WINDOW_CHARS] for variant in cased for at in range(len(variant) - WINDOW_CHARS + 1)
    }
    hints = {_fold(form)[:_CHUNK] for form in _forms(secret) - runs}
    for variant in cased:
        hints |= {_fold(variant[at : at + _CHUNK]) for at in range(0, len(variant) - _CHUNK + 1, _CHUNK)}
    return frozenset(hints)


@lru_cache(maxsize=4096)
def _pattern(secret: str) -> re.Pattern[str]:
    """Every form of a short ``secret`` (under MIN_SECRET_CHARS), the longest first, only where it
    stands alone: never inside an identifier ("tok" stays in "notification.token"). Compiled only
    for a secret a text may hold; a longer secret's forms are found with ``str.find``."""
    return re.compile(rf"(?<!\w)(?:{_trie_pattern(_forms(secret))})(?!\w)")


def _trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching any of ``words``, the longest where several start at one
    place; shared beginnings are spelled once, so it costs little more than one word."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def spell(node: dict[str, Any]) -> str:
        chain = ""
        while len(node) == 1 and "" not in node:  # one way on: no group needed
            ((char, node),) = node.items()
            chain += re.escape(char)
        branches = [re.escape(char) + spell(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return chain
        either = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return chain + (f"(?:{either})?" if "" in node else either)  # greedy: the longer word first

    return spell(trie)


_HOLDERS: dict[str, set[str]] = {}
"""Each hint -> the secrets it stands for, over every secret seen: filled once per secret (by
:func:`_holding`), so that a new tuple of secrets costs no new index. A run learns a secret at
almost every order; rebuilding an index per tuple made redaction quadratic in the run."""
_SHORT_HINTS: set[str] = set()
"""The hints shorter than _CHUNK (secrets of a few characters): looked for one by one."""
_ENTERED: set[str] = set()
"""The secrets whose hints are in :data:`_HOLDERS` already."""
_FEW_CANDIDATES = 8
"""Up to this many candidate secrets, each is looked for in the tuple rather than in a set of
the tuple's secrets, which would cost a pass over thousands late in a run."""
_FEW_HINTS = 100
"""Up to this many hints, they are looked for one by one (``in``, ~0.5 ns a character
each); past it, the text's slices are looked up in :data:`_HOLDERS` (~100 ns a character)."""


@lru_cache(maxsize=4096)
def _holding(secret: str) -> frozenset[str]:
    """:func:`_hints` of ``secret``, entered in :data:`_HOLDERS`."""
    hints = _hints(secret)
    for hint in hints:
        _HOLDERS.setdefault(hint, set()).add(secret)
        if len(hint) < _CHUNK:
            _SHORT_HINTS.add(hint)
    return hints


class _Redactor:
    """Everything :func:`redact` needs for one tuple of secrets, built once (cached).

    Built anew whenever the run learns a secret, so building costs nothing per secret already
    known: only the secrets not seen before are entered in :data:`_HOLDERS`, and the set of this
    tuple's secrets is made only when a text holds a hint (:meth:`spans`), which few do.
    """

    def __init__(self, secrets: tuple[str, ...], previous: _Redactor | None = None) -> None:
        self.key = secrets
        self._members: frozenset[str] | None = None
        new = secrets
        if previous is not None and secrets[: len(previous.key)] == previous.key:
            new = secrets[len(previous.key) :]  # the usual case: the run learned a secret
        for secret in new:
            if secret and secret not in _ENTERED:
                _holding(secret)
                _ENTERED.add(secret)
        self.empty = not any(secrets)
        self.own = None
        hints: list[str] = []
        for secret in filter(None, secrets):
            hints += _holding(secret)
            if len(hints) > _FEW_HINTS:
                break
        else:
            self.own = _Needles(tuple(hints))

    @property
    def members(self) -> frozenset[str]:
        if self._members is None:
            self._members = frozenset(filter(None, self.key))
        return self._members

    def _hits(self, folded: str) -> Iterable[str]:
        """The hints ``folded`` holds (for many secrets, of any secret seen so far)."""
        if self.own is not None:
            if not self.own.may_occur_in(folded):
                return ()
            return [hint for hint in {*self.own.short, *self.own.long} if hint in folded]
        ends = range(_CHUNK, len(folded) + 1)
        slices = map(folded.__getitem__, map(slice, range(len(ends)), ends))
        if _HOLDERS.keys().isdisjoint(slices) and not _SHORT_HINTS:  # the usual answer, fast
            return ()
        hits = _HOLDERS.keys() & set(map(folded.__getitem__, map(slice, range(len(ends)), ends)))
        if _SHORT_HINTS:
            hits.update(hint for hint in tuple(_SHORT_HINTS) if hint in folded)
        return hits

    def candidates(self, text: str) -> set[str]:
        """The secrets of this tuple whose hints ``text`` holds: no other can occur in it, nor in
        any part of it (folding is per character)."""
        if self.empty:
            return set()
        found: set[str] = set()
        for hint in self._hits(_fold(text)):
            found.update(tuple(_HOLDERS.get(hint, ())))
        if len(found) <= _FEW_CANDIDATES:  # the usual hit, a false alarm: no set of every secret
            return {secret for secret in found if secret in self.key}
        return found & self.members

    def spans(self, text: str, candidates: set[str] | None = None) -> list[tuple[int, int]]:
        """Where ``text`` shows a secret: every occurrence of every form, overlaps merged.
        ``candidates``, when given, holds every secret that may occur in ``text``."""
        if candidates is None:
            candidates = self.candidates(text)
        if not candidates:
            return []
        found: list[tuple[int, int]] = []
        for secret in candidates:
            if len(secret) >= MIN_SECRET_CHARS:
                # Every occurrence of every form, found with str.find: a hint is often a false
                # alarm (5 hex digits of a signature), and compiling the secret's pattern to
                # rule it out cost ~6 ms, where the forms' finds cost ~2 µs.
                for form in _forms(secret):
                    at = text.find(form)
                    while at >= 0:
                        found.append((at, at + len(form)))
                        at = text.find(form, at + 1)
                continue
            search = _pattern(secret).search  # a short secret: only where it stands alone
            match = search(text)
            while match is not None:
                found.append(match.span())
                match = search(text, match.start() + 1)  # overlapping windows too
        merged: list[tuple[int, int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def replace(self, text: str, keep_length: bool, candidates: set[str] | None = None) -> str:
        spans = self.spans(text, candidates)
        if not spans:
            return text
        parts, at = [], 0
        for start, end in spans:
            parts += [text[at:start], "*" * (end - start) if keep_length else REDACTED]
            at = end
        parts.append(text[at:])
        return "".join(parts)


_CACHED: dict[tuple[str, ...], _Redactor] = {}
_CACHE_SIZE = 32


_CACHE_LOCK = threading.Lock()


def _cached_redactor(secrets: tuple[str, ...], previous: _Redactor) -> _Redactor:
    with _CACHE_LOCK:  # copies of a call sent at once redact on their own threads
        found = _CACHED.get(secrets)
        if found is None:
            found = _Redactor(secrets, previous)
            if len(_CACHED) >= _CACHE_SIZE:
                del _CACHED[next(iter(_CACHED))]  # the oldest: a run's tuples only grow
            _CACHED[secrets] = found
        return found


_LAST = _Redactor(())
"""The redactor used last: a record redacts a dozen strings with one tuple of secrets, and
looking that tuple up in the cache hashes every secret in it, thousands late in a long run."""


def _redactor(secrets: tuple[str, ...]) -> _Redactor:
    global _LAST
    last = _LAST
    if last.key is secrets:
        return last
    _LAST = last = _cached_redactor(secrets, last)
    return last


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (see :func:`_forms`) replaced by :data:`REDACTED`."""
    return _redactor(tuple(secrets)).replace(text, keep_length=False)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with what :func:`redact` would replace overwritten by as many ``*``: the same
    length, so a length rule judges the masked text as it would the original."""
    return _redactor(tuple(secrets)).replace(text, keep_length=True)


def redact_each(texts: Sequence[str], secrets: Iterable[str]) -> list[str]:
    """Each of ``texts`` redacted (:func:`redact`). One look at all of them together answers the
    usual "no secret is here": a record's dozen strings cost one pre-filter pass, not twelve."""
    redactor = _redactor(tuple(secrets))
    candidates = redactor.candidates("\n".join(texts))  # those of each text are among them
    if not candidates:
        return list(texts)
    return [redactor.replace(text, False, candidates) for text in texts]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, member in value.items():
            yield from _strings(key)
            yield from _strings(member)
    elif isinstance(value, list | tuple):
        for member in value:
            yield from _strings(member)


def redact_data(value: Any, secrets: Iterable[str], *, keep_length: bool = False) -> Any:
    """``value`` (JSON-like data) with every string in it, keys too, redacted (or masked); when
    none of its strings can hold a secret (one pre-filter pass over all of them), ``value`` itself."""
    redactor = _redactor(tuple(secrets))
    candidates = redactor.candidates("\n".join(_strings(value)))  # those of each string are among them
    if not candidates:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return redactor.replace(item, keep_length, candidates)
        if isinstance(item, Mapping):
            return {walk(key): walk(member) for key, member in item.items()}
        if isinstance(item, list | tuple):
            return [walk(member) for member in item]
        return item

    return walk(value)


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
    return readable_body(redact(body.decode("utf-8", errors="replace"), secrets), len(body))


def readable_body(text: str, size: int) -> str:
    """A body already decoded and redacted (``size`` bytes long), cut and made printable: the rest
    of :func:`body_text`, for a caller that redacts several texts at once (:func:`redact_each`)."""
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"… [{size} bytes in all]"
    return printable(text)
