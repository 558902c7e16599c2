"""The shortcut redaction and masking take past strings that hold no secret: it must never
change a result, whatever the secrets and the text (``simulator/redaction.py``)."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from simulator.redaction import REDACTED, WINDOW, may_contain, redact

# few letters, brackets and the letters of "[redacted]": secrets overlap, share beginnings and
# can reappear out of a replacement
LETTERS = st.sampled_from('ab[]redact+/"é中')
NEEDLES = st.lists(st.text(LETTERS, min_size=1, max_size=2 * WINDOW), max_size=60).map(tuple)
TEXTS = st.text(LETTERS, max_size=120)


def replaced_one_by_one(text: str, secrets: tuple[str, ...]) -> str:
    """What redact did before the shortcut: every spelling of every secret, in turn."""
    for secret in secrets:
        spellings = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
        spellings |= {encode(secret, safe=safe) for encode in (quote, quote_plus) for safe in ("", "/")}
        for spelling in sorted(spellings, key=len, reverse=True):
            text = text.replace(spelling, REDACTED)
    return text


@given(NEEDLES, TEXTS, st.data())
def test_may_contain_never_misses_a_needle(needles: tuple[str, ...], text: str, data: st.DataObject) -> None:
    if needles and data.draw(st.booleans()):
        needle = data.draw(st.sampled_from(needles))
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + needle + text[at:]
    if any(needle in text for needle in needles):
        assert may_contain(text, needles)


@given(NEEDLES, TEXTS, st.data())
def test_redact_is_the_replacements_one_by_one(
    secrets: tuple[str, ...], text: str, data: st.DataObject
) -> None:
    if secrets and data.draw(st.booleans()):
        secret = data.draw(st.sampled_from(secrets))
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from([secret, quote(secret), json.dumps(secret)])) + text[at:]
    assert redact(text, secrets) == replaced_one_by_one(text, secrets)
