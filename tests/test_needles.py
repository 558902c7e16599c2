"""The shortcut redaction and masking take past strings that hold no secret: it must never
change a result, whatever the secrets and the text (``simulator/redaction.py``); and the forms
a merchant may echo a key in are all redacted, while a short secret never cuts a word."""

from __future__ import annotations

import base64
import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.redaction import (
    MIN_SECRET_CHARS,
    REDACTED,
    WINDOW,
    WINDOW_CHARS,
    _fold,
    _forms,
    mask,
    may_contain,
    redact,
    redact_data,
    redact_each,
    secret_problem,
)

# few letters, brackets and the letters of "[redacted]": secrets overlap, share beginnings and
# can reappear out of a replacement
LETTERS = st.sampled_from('ab[]redact+/"é中')
NEEDLES = st.lists(st.text(LETTERS, min_size=1, max_size=2 * WINDOW), max_size=60).map(tuple)
TEXTS = st.text(LETTERS, max_size=120)


def redacted_naively(text: str, secrets: tuple[str, ...], keep_length: bool = False) -> str:
    """What redact must give, found the slow way: every occurrence of every form of every
    secret (overlapping ones too), a short secret's only where no identifier character touches
    it, overlaps merged; no pre-filter, no combined pattern."""
    spans = []
    for secret in filter(None, secrets):
        for form in _forms(secret):
            at = text.find(form)
            while at >= 0:
                end = at + len(form)
                alone = not (at and re.match(r"\w", text[at - 1])) and not re.match(
                    r"\w", text[end : end + 1]
                )
                if len(secret) >= MIN_SECRET_CHARS or alone:
                    spans.append((at, end))
                at = text.find(form, at + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    out, at = "", 0
    for start, end in merged:
        out += text[at:start] + ("*" * (end - start) if keep_length else REDACTED)
        at = end
    return out + text[at:]


@given(NEEDLES, TEXTS, st.data())
def test_may_contain_never_misses_a_needle(needles: tuple[str, ...], text: str, data: st.DataObject) -> None:
    if needles and data.draw(st.booleans()):
        needle = data.draw(st.sampled_from(needles))
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + needle + text[at:]
    if any(needle in text for needle in needles):
        assert may_contain(text, needles)


SECRETS = st.lists(st.text(LETTERS, min_size=1, max_size=3 * WINDOW_CHARS), max_size=8).map(tuple)


@given(SECRETS, TEXTS, st.data())
def test_redact_and_mask_never_miss_a_form_the_slow_search_finds(
    secrets: tuple[str, ...], text: str, data: st.DataObject
) -> None:
    """The pre-filter (folded hints), the combined pattern and the merging change nothing."""
    for _ in range(data.draw(st.integers(0, 3))):
        if secrets:
            secret = data.draw(st.sampled_from(secrets))
            forms = sorted(_forms(secret))
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + data.draw(st.sampled_from(forms)) + text[at:]
    assert redact(text, secrets) == redacted_naively(text, secrets)
    assert mask(text, secrets) == redacted_naively(text, secrets, keep_length=True)


KEY = "echo-access-key-5f0c2b9e&<8d7a6f41>"


def _spelled(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "upper case": secret.upper(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "decimal references": "".join(f"&#{ord(c)};" for c in secret),
        "hex references": "".join(f"&#x{ord(c):x};" for c in secret),
        "named references": html.escape(secret),
        "20-character prefix": secret[:20],
        "10 characters from the middle": secret[7:17],
    }


@pytest.mark.parametrize("name", list(_spelled(KEY)))
def test_a_key_echoed_in_another_form_is_redacted(name: str) -> None:
    echoed = _spelled(KEY)[name]
    assert redact(f"the merchant said {echoed}.", (KEY,)) == f"the merchant said {REDACTED}."


@pytest.mark.parametrize("offset", range(3))
def test_a_key_inside_a_base64_text_is_redacted_at_every_alignment(offset: int) -> None:
    """Of the encoded key, only the 4-character groups it shares with its neighbours remain."""
    encoded = base64.b64encode(b"x" * offset + KEY.encode() + b"tail").decode()
    redacted = redact(encoded, (KEY,))
    before, redacted_mark, after = redacted.partition(REDACTED)
    assert redacted_mark and len(before) <= 4 and len(after) <= 4 + 8, redacted


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        ("tok", "notification.token"),
        ("secur", "--checks security.application-secret"),
        ("abc123", "order abc1234 and xabc123"),
    ],
)
def test_a_short_secret_never_cuts_into_a_word(secret: str, text: str) -> None:
    assert redact(text, (secret,)) == text


def test_a_short_secret_standing_alone_is_still_redacted() -> None:
    assert redact('{"password":"abc123"} abc123.', ("abc123",)) == f'{{"password":"{REDACTED}"}} {REDACTED}.'


@pytest.mark.parametrize("key", ["", "k", "1234567"])
def test_a_key_shorter_than_8_characters_is_refused(key: str) -> None:
    problem = secret_problem(key)
    assert problem is not None and "at least 8" in problem and "\n" not in problem
    assert secret_problem("12345678") is None


def test_masking_keeps_every_length() -> None:
    text = f"key={KEY}&prefix={KEY[:12]}"
    assert mask(text, (KEY,)) == f"key={'*' * len(KEY)}&prefix={'*' * 12}"
    assert redact_data({KEY: [text, 3]}, (KEY,), keep_length=True) == {
        "*" * len(KEY): [mask(text, (KEY,)), 3]
    }


@given(SECRETS, st.lists(TEXTS, max_size=4), st.data())
def test_redacting_several_texts_at_once_changes_nothing(
    secrets: tuple[str, ...], texts: list[str], data: st.DataObject
) -> None:
    """redact_each and redact_data look at all their strings together first: same results."""
    if secrets and texts:
        at = data.draw(st.integers(0, len(texts) - 1))
        texts[at] += data.draw(st.sampled_from(sorted(_forms(data.draw(st.sampled_from(secrets))))))
    assert redact_each(texts, secrets) == [redact(text, secrets) for text in texts]
    value = {text: [text, 1] for text in texts}
    assert redact_data(value, secrets) == {redact(t, secrets): [redact(t, secrets), 1] for t in texts}


@given(st.text())
def test_folding_lowers_ascii_letters_only(text: str) -> None:
    assert _fold(text) == "".join(char.lower() if char.isascii() else char for char in text)
