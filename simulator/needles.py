"""Whether any of many strings may occur in a text, in time that depends on the text.

A run learns a secret from every appInfo password the merchant sends, and every string that
goes into a record or a report is redacted (or masked) of all of them: late in a run, hundreds
of ``str.replace`` calls per string, most of which find nothing. :func:`may_contain` answers
"none of them is here" first, and the callers skip the replacing, which would have left the
string as it was.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import compress
from operator import itemgetter

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
