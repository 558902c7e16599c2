"""simulator.protocol: the fixed vectors of protocol.md, round trips, and what must be refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re

import independent
import pytest
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from vectors import (
    AES128_KEY,
    AES256_KEY,
    CIPHERTEXT_AES128,
    CIPHERTEXT_AES256,
    IV,
    KEY,
    PLAINTEXT,
    SYNC_BODY,
    SYNC_CANONICAL,
    SYNC_SIGN,
    V1_BODY,
    V1_BODY_SIGN,
    V1_MESSAGE,
    V1_PARAMS,
    V1_TOKEN,
    V2_BODY,
    V2_CANONICAL,
    V2_INNER,
    V2_SIGNATURE,
    N,
    T,
)

from simulator.protocol import (
    TIMESTAMP_WINDOW_MS,
    BodySign,
    DecryptionError,
    EncryptType,
    ResultCode,
    canonical_body,
    decrypt,
    decrypt_client_secret,
    derive_aes_key,
    encrypt,
    encrypt_client_secret,
    is_fresh,
    parse_body_sign,
    sign_body,
    sign_sync,
    sign_v1,
    sign_v2,
    verify_body_sign,
    verify_sync,
    verify_v1,
    verify_v2,
)
from simulator.protocol.crypto import MIN_CLIENT_SECRET_LENGTH
from simulator.reference import generate_rsa_private_key, public_key_pem

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RSA = settings(FAST, max_examples=50)
"""RSA operations are slow: fewer examples."""


# --- §2 v2 signing: the vector ----------------------------------------------------------------


def test_v2_vector_canonical_body() -> None:
    assert canonical_body(V2_BODY) == V2_CANONICAL


def test_v2_vector_inner_digest() -> None:
    inner = hmac.new(KEY.encode(), canonical_body(V2_BODY).encode("utf-8"), hashlib.sha256).hexdigest()
    assert inner == V2_INNER


def test_v2_vector_signature() -> None:
    assert sign_v2(V2_BODY, KEY, T, N) == V2_SIGNATURE
    assert verify_v2(V2_BODY, KEY, T, N, V2_SIGNATURE)


def test_v2_signature_is_compared_case_insensitively() -> None:
    assert verify_v2(V2_BODY, KEY, T, N, V2_SIGNATURE.upper())


def test_v2_body_as_parsed_from_any_serialisation_verifies() -> None:
    # The marketplace may send members in any order, spaced, with \u escapes: the canonical
    # form is computed from the parsed object, not from the bytes.
    sent = json.dumps(dict(reversed(list(V2_BODY.items()))), ensure_ascii=True, indent=2)
    assert verify_v2(json.loads(sent), KEY, T, N, V2_SIGNATURE)


# --- §3 v1 authToken and Body-Sign: the vectors ------------------------------------------------


def test_v1_vector_message() -> None:
    assert independent.v1_message(V1_PARAMS) == V1_MESSAGE
    token = base64.b64encode(
        hmac.new((KEY + "20231114221320000").encode(), V1_MESSAGE.encode(), hashlib.sha256).digest()
    ).decode()
    assert token == V1_TOKEN


def test_v1_vector_auth_token() -> None:
    assert sign_v1(V1_PARAMS, KEY) == V1_TOKEN
    assert verify_v1({**V1_PARAMS, "authToken": V1_TOKEN}, KEY)


def test_v1_auth_token_is_not_part_of_its_own_message() -> None:
    assert sign_v1({**V1_PARAMS, "authToken": "anything"}, KEY) == V1_TOKEN


def test_v1_vector_body_sign() -> None:
    assert sign_body(V1_BODY, KEY) == V1_BODY_SIGN
    assert verify_body_sign(V1_BODY, V1_BODY_SIGN, KEY)


def test_body_sign_without_space_after_the_comma_verifies() -> None:
    assert verify_body_sign(V1_BODY, V1_BODY_SIGN.replace(", ", ","), KEY)


# --- §4 sync signing: the vector ---------------------------------------------------------------


def test_sync_vector_canonical_body_keeps_nested_values_as_sent() -> None:
    assert canonical_body(SYNC_BODY) == SYNC_CANONICAL


def test_sync_vector_signature() -> None:
    assert sign_sync(SYNC_BODY, KEY, T, N) == SYNC_SIGN
    assert verify_sync(SYNC_BODY, KEY, T, N, SYNC_SIGN)
    assert verify_sync(SYNC_BODY, KEY, T, N, SYNC_SIGN.upper())


# --- §5 AES: the vectors -----------------------------------------------------------------------


def test_aes_vector_keys() -> None:
    assert derive_aes_key(KEY, EncryptType.AES128).hex() == AES128_KEY
    assert derive_aes_key(KEY, EncryptType.AES256).hex() == AES256_KEY
    assert derive_aes_key(KEY, "2").hex() == AES128_KEY
    assert derive_aes_key(KEY, "1").hex() == AES256_KEY


@pytest.mark.parametrize(
    ("encrypt_type", "expected"),
    [("2", CIPHERTEXT_AES128), ("1", CIPHERTEXT_AES256)],
    ids=["encryptType-2-AES128", "encryptType-1-AES256"],
)
def test_aes_vector_ciphertexts(encrypt_type: str, expected: str) -> None:
    assert encrypt(PLAINTEXT, KEY, encrypt_type, iv=IV) == expected
    assert decrypt(expected, KEY, encrypt_type) == PLAINTEXT


def test_encrypt_type_values_follow_the_doc() -> None:
    assert EncryptType.AES256 == "1" and EncryptType.AES256.key_length == 32
    assert EncryptType.AES128 == "2" and EncryptType.AES128.key_length == 16


def test_encrypt_uses_a_fresh_alphanumeric_iv() -> None:
    first, second = encrypt(PLAINTEXT, KEY), encrypt(PLAINTEXT, KEY)
    assert first != second
    assert re.fullmatch(r"[0-9A-Za-z]{16}", first[:16])


# --- agreement with the independent implementation ---------------------------------------------

json_scalars = st.one_of(st.none(), st.text(), st.booleans(), st.integers())
nested = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)
bodies = st.dictionaries(st.text(), st.one_of(st.none(), st.text()), max_size=8)
nested_bodies = st.dictionaries(st.text(), nested, max_size=6)
keys = st.text(min_size=1)
tokens = st.text()


@FAST
@given(nested_bodies, keys, tokens, tokens)
def test_v2_and_sync_agree_with_the_independent_implementation(
    body: dict, key: str, timestamp: str, nonce: str
) -> None:
    assert canonical_body(body) == independent.canonical(body)
    assert sign_v2(body, key, timestamp, nonce) == independent.v2_signature(body, key, timestamp, nonce)
    assert sign_sync(body, key, timestamp, nonce) == independent.sync_signature(body, key, timestamp, nonce)


@FAST
@given(st.dictionaries(st.text(), st.text(), max_size=8), keys, tokens)
def test_v1_agrees_with_the_independent_implementation(params: dict, key: str, time_stamp: str) -> None:
    params = {**params, "timeStamp": time_stamp}
    assert sign_v1(params, key) == independent.v1_auth_token(params, key)


# --- round trips -------------------------------------------------------------------------------


@FAST
@given(bodies, keys, tokens, tokens)
def test_v2_round_trip(body: dict, key: str, timestamp: str, nonce: str) -> None:
    assert verify_v2(body, key, timestamp, nonce, sign_v2(body, key, timestamp, nonce))


@FAST
@given(bodies, keys, tokens, tokens)
def test_v2_signature_ignores_member_order_and_nulls(
    body: dict, key: str, timestamp: str, nonce: str
) -> None:
    reordered = dict(reversed(list(body.items())))
    without_nulls = {name: value for name, value in body.items() if value is not None}
    signature = sign_v2(body, key, timestamp, nonce)
    assert sign_v2(reordered, key, timestamp, nonce) == signature
    assert sign_v2(without_nulls, key, timestamp, nonce) == signature
    assert re.fullmatch(r"[0-9a-f]{64}", signature)


@FAST
@given(nested_bodies, keys, tokens, tokens)
def test_sync_round_trip(body: dict, key: str, timestamp: str, nonce: str) -> None:
    signature = sign_sync(body, key, timestamp, nonce)
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert verify_sync(body, key, timestamp, nonce, signature)


@FAST
@given(st.dictionaries(st.text(), st.text(), max_size=8), keys, tokens)
def test_v1_round_trip(params: dict, key: str, time_stamp: str) -> None:
    params = {**params, "timeStamp": time_stamp}
    signed = {**params, "authToken": sign_v1(params, key)}
    assert verify_v1(signed, key)


@FAST
@given(st.binary(), keys)
def test_body_sign_round_trip(body: bytes, key: str) -> None:
    header = sign_body(body, key)
    assert verify_body_sign(body, header, key)
    assert verify_body_sign(body, header.replace(", ", ","), key)
    assert independent.body_sign_ok(body, header, key)


@FAST
@given(st.text(), keys, st.sampled_from(list(EncryptType)))
def test_aes_round_trip(plaintext: str, key: str, encrypt_type: EncryptType) -> None:
    value = encrypt(plaintext, key, encrypt_type)
    assert decrypt(value, key, encrypt_type) == plaintext


@FAST
@given(
    st.text(),
    keys,
    st.sampled_from(["1", "2"]),
    st.text(alphabet="0123456789abcdefXYZ", min_size=16, max_size=16),
)
def test_aes_round_trip_with_a_given_iv(plaintext: str, key: str, encrypt_type: str, iv: str) -> None:
    value = encrypt(plaintext, key, encrypt_type, iv=iv)
    assert value.startswith(iv)
    assert decrypt(value, key, encrypt_type) == plaintext


@pytest.fixture(scope="module")
def rsa_private_key() -> bytes:
    return generate_rsa_private_key()


@pytest.fixture(scope="module")
def other_rsa_private_key() -> bytes:
    return generate_rsa_private_key()


CLIENT_SECRETS = st.text(
    alphabet=st.characters(categories=["L", "N", "P", "S"], include_characters=" "),
    min_size=MIN_CLIENT_SECRET_LENGTH,
    max_size=50,
)
"""A client secret is printable text of at least MIN_CLIENT_SECRET_LENGTH characters."""


@RSA
@given(secret=CLIENT_SECRETS)
def test_client_secret_round_trip(rsa_private_key: bytes, secret: str) -> None:
    assert len(secret.encode("utf-8")) < 200
    value = encrypt_client_secret(secret, public_key_pem(rsa_private_key))
    assert decrypt_client_secret(value, rsa_private_key) == secret


# --- what must be refused: signatures ----------------------------------------------------------


def _flip(text: str, position: int, replacement: str) -> str:
    return text[:position] + replacement + text[position + 1 :]


@st.composite
def body_and_one_character_changed(draw: st.DrawFn) -> tuple[dict, dict]:
    """A body, and a copy in which one character of one member's name or value differs."""
    body = draw(st.dictionaries(st.text(min_size=1), st.text(min_size=1), min_size=1, max_size=6))
    name = draw(st.sampled_from(sorted(body)))
    in_value = draw(st.booleans())
    text = body[name] if in_value else name
    position = draw(st.integers(0, len(text) - 1))
    replacement = draw(st.characters().filter(lambda c: c != text[position]))
    changed = dict(body)
    if in_value:
        changed[name] = _flip(text, position, replacement)
    else:
        del changed[name]
        changed[_flip(text, position, replacement)] = body[name]
    return body, changed


@FAST
@given(body_and_one_character_changed(), keys)
def test_v2_refuses_a_body_with_one_character_changed(pair: tuple[dict, dict], key: str) -> None:
    body, changed = pair
    assume(canonical_body(changed) != canonical_body(body))
    assert not verify_v2(changed, key, T, N, sign_v2(body, key, T, N))


@FAST
@given(body_and_one_character_changed(), keys)
def test_sync_refuses_a_body_with_one_character_changed(pair: tuple[dict, dict], key: str) -> None:
    body, changed = pair
    assume(canonical_body(changed) != canonical_body(body))
    assert not verify_sync(changed, key, T, N, sign_sync(body, key, T, N))


@FAST
@given(body_and_one_character_changed(), keys)
def test_v1_refuses_a_parameter_with_one_character_changed(pair: tuple[dict, dict], key: str) -> None:
    params, changed = (dict(p, timeStamp=T) for p in pair)
    assume(independent.v1_message(params) != independent.v1_message(changed))
    assert not verify_v1({**changed, "authToken": sign_v1(params, key)}, key)


HEX = "0123456789abcdef"
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@FAST
@given(st.data())
def test_v2_and_sync_refuse_a_signature_with_one_hex_digit_changed(data: st.DataObject) -> None:
    for sign, verify in ((sign_v2, verify_v2), (sign_sync, verify_sync)):
        signature = sign(V2_BODY, KEY, T, N)
        position = data.draw(st.integers(0, len(signature) - 1))
        digit = data.draw(st.sampled_from([d for d in HEX if d != signature[position]]))
        assert not verify(V2_BODY, KEY, T, N, _flip(signature, position, digit))


@FAST
@given(st.data())
def test_v1_refuses_an_auth_token_with_one_character_changed(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(V1_TOKEN) - 1))
    character = data.draw(st.sampled_from([c for c in BASE64 + "=" if c != V1_TOKEN[position]]))
    assert not verify_v1({**V1_PARAMS, "authToken": _flip(V1_TOKEN, position, character)}, KEY)


@FAST
@given(st.data())
def test_signatures_refuse_a_timestamp_or_nonce_with_one_character_changed(data: st.DataObject) -> None:
    for sign, verify in ((sign_v2, verify_v2), (sign_sync, verify_sync)):
        signature = sign(V2_BODY, KEY, T, N)
        position = data.draw(st.integers(0, len(T) - 1))
        changed_t = _flip(T, position, data.draw(st.characters().filter(lambda c, p=position: c != T[p])))
        assert not verify(V2_BODY, KEY, changed_t, N, signature)
        position = data.draw(st.integers(0, len(N) - 1))
        changed_n = _flip(N, position, data.draw(st.characters().filter(lambda c, p=position: c != N[p])))
        assert not verify(V2_BODY, KEY, T, changed_n, signature)


@FAST
@given(st.data())
def test_v1_refuses_a_changed_time_stamp(data: st.DataObject) -> None:
    stamp = V1_PARAMS["timeStamp"]
    position = data.draw(st.integers(0, len(stamp) - 1))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != stamp[position]]))
    changed = {**V1_PARAMS, "timeStamp": _flip(stamp, position, digit), "authToken": V1_TOKEN}
    assert not verify_v1(changed, KEY)


def test_signatures_refuse_the_wrong_key() -> None:
    assert not verify_v2(V2_BODY, KEY + "x", T, N, V2_SIGNATURE)
    assert not verify_sync(SYNC_BODY, KEY + "x", T, N, SYNC_SIGN)
    assert not verify_v1({**V1_PARAMS, "authToken": V1_TOKEN}, KEY + "x")
    assert not verify_body_sign(V1_BODY, V1_BODY_SIGN, KEY + "x")


@pytest.mark.parametrize("signature", [None, "", "not-hex", V2_SIGNATURE[:-1], V2_SIGNATURE + "0"])
def test_v2_and_sync_refuse_missing_or_malformed_signatures(signature: str | None) -> None:
    assert not verify_v2(V2_BODY, KEY, T, N, signature)
    assert not verify_sync(SYNC_BODY, KEY, T, N, signature)


def test_v1_refuses_a_missing_token_or_time_stamp() -> None:
    assert not verify_v1(V1_PARAMS, KEY)
    assert not verify_v1({**V1_PARAMS, "authToken": ""}, KEY)
    without_stamp = {name: value for name, value in V1_PARAMS.items() if name != "timeStamp"}
    assert not verify_v1({**without_stamp, "authToken": V1_TOKEN}, KEY)


@pytest.mark.parametrize("verify", ["v2", "sync", "v1", "body_sign"])
def test_verifiers_return_false_for_a_non_ascii_signature(verify: str) -> None:
    forged = "é" * 64
    outcome = {
        "v2": lambda: verify_v2(V2_BODY, KEY, T, N, forged),
        "sync": lambda: verify_sync(SYNC_BODY, KEY, T, N, forged),
        "v1": lambda: verify_v1({**V1_PARAMS, "authToken": forged}, KEY),
        "body_sign": lambda: verify_body_sign(V1_BODY, f'sign_type="HMAC-SHA256", signature="{forged}"', KEY),
    }[verify]()
    assert outcome is False


def test_verifiers_return_false_for_a_body_that_is_not_utf8_encodable() -> None:
    body = json.loads('{"activity":"\\ud800"}')
    assert verify_v2(body, KEY, T, N, V2_SIGNATURE) is False
    assert verify_sync(body, KEY, T, N, SYNC_SIGN) is False


# --- what must be refused: Body-Sign -----------------------------------------------------------


@FAST
@given(st.binary(min_size=1), keys, st.data())
def test_body_sign_refuses_a_body_with_one_byte_changed(body: bytes, key: str, data: st.DataObject) -> None:
    header = sign_body(body, key)
    position = data.draw(st.integers(0, len(body) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[position]))
    changed = body[:position] + bytes([new_byte]) + body[position + 1 :]
    assert not verify_body_sign(changed, header, key)
    assert not independent.body_sign_ok(changed, header, key)


def test_body_sign_refuses_another_sign_type_and_missing_headers() -> None:
    assert not verify_body_sign(V1_BODY, V1_BODY_SIGN.replace("HMAC-SHA256", "HMAC-SHA1"), KEY)
    assert not verify_body_sign(V1_BODY, None, KEY)
    assert not verify_body_sign(V1_BODY, "", KEY)


def test_parse_body_sign_accepts_both_spacings() -> None:
    expected = BodySign("HMAC-SHA256", "x")
    assert parse_body_sign('sign_type="HMAC-SHA256", signature="x"') == expected
    assert parse_body_sign('sign_type="HMAC-SHA256",signature="x"') == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        'sign_type="HMAC-SHA256"',
        'signature="x"',
        'sign_type=HMAC-SHA256, signature="x"',
        'sign_type="HMAC-SHA256"; signature="x"',
        'sign_type="HMAC-SHA256", signature="x", ',
    ],
)
def test_parse_body_sign_rejects_garbage(header: str | None) -> None:
    assert parse_body_sign(header) is None


# --- what must be refused: AES -----------------------------------------------------------------


@FAST
@given(st.text(), keys, keys, st.sampled_from(list(EncryptType)))
def test_aes_decrypt_with_the_wrong_key_never_yields_the_plaintext(
    plaintext: str, key: str, wrong_key: str, encrypt_type: EncryptType
) -> None:
    # A wrong key yields random blocks; about 1 in 256 of them end in valid PKCS#7 padding
    # and may even be UTF-8, so decrypt cannot always notice. It raises DecryptionError almost
    # always, and must never hand back the plaintext.
    assume(key != wrong_key)
    value = encrypt(plaintext, key, encrypt_type)
    try:
        result = decrypt(value, wrong_key, encrypt_type)
    except DecryptionError:
        return
    assert result != plaintext


@FAST
@given(st.text(min_size=1), keys)
def test_aes_decrypt_with_the_wrong_encrypt_type_never_yields_the_plaintext(plaintext: str, key: str) -> None:
    for used, wrong in ((EncryptType.AES256, EncryptType.AES128), (EncryptType.AES128, EncryptType.AES256)):
        value = encrypt(plaintext, key, used)
        try:
            result = decrypt(value, key, wrong)
        except DecryptionError:
            continue
        assert result != plaintext


def test_aes_decrypt_with_the_wrong_key_or_type_raises_for_the_vector() -> None:
    with pytest.raises(DecryptionError):
        decrypt(CIPHERTEXT_AES256, KEY + "x", "1")
    with pytest.raises(DecryptionError):
        decrypt(CIPHERTEXT_AES256, KEY, "2")
    with pytest.raises(DecryptionError):
        decrypt(CIPHERTEXT_AES128, KEY, "1")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        IV,
        IV + "not base64!",
        IV + "wY6Pgfqxrl//dezrq9KbkA",  # padding stripped
        IV + base64.b64encode(b"fifteen bytes..").decode(),  # not a whole block
        IV + base64.b64encode(bytes(16)).decode(),  # decrypts to bad padding
        "密" * 16 + base64.b64encode(bytes(16)).decode(),  # a non-ASCII IV
        IV + "wY6Pgfqxrl//dezrq9KbkA==密",
    ],
)
def test_aes_decrypt_of_garbage_raises_decryption_error(value: str) -> None:
    with pytest.raises(DecryptionError):
        decrypt(value, KEY, "2")


@FAST
@given(st.text(), st.sampled_from(["1", "2"]))
def test_aes_decrypt_of_arbitrary_text_raises_nothing_but_decryption_error(
    value: str, encrypt_type: str
) -> None:
    # Arbitrary text is almost never a ciphertext; when it is, a str comes back. Any other
    # exception (IndexError, binascii.Error, UnicodeEncodeError, ...) fails the test.
    with contextlib.suppress(DecryptionError):
        assert isinstance(decrypt(value, KEY, encrypt_type), str)


def test_decryption_error_is_a_value_error() -> None:
    assert issubclass(DecryptionError, ValueError)


def test_encrypt_refuses_a_malformed_iv() -> None:
    with pytest.raises(ValueError):
        encrypt(PLAINTEXT, KEY, "1", iv="short")
    with pytest.raises(ValueError):
        encrypt(PLAINTEXT, KEY, "1", iv="密" * 16)


# --- what must be refused: RSA clientSecret ----------------------------------------------------


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"too short for RSA").decode(), "密"])
def test_client_secret_garbage_raises_decryption_error(rsa_private_key: bytes, value: str) -> None:
    with pytest.raises(DecryptionError):
        decrypt_client_secret(value, rsa_private_key)


@RSA
@given(secret=st.text(max_size=50))
def test_client_secret_with_the_wrong_key_never_yields_the_plaintext(
    rsa_private_key: bytes, other_rsa_private_key: bytes, secret: str
) -> None:
    # OpenSSL >= 3.2 answers a bad PKCS#1 v1.5 padding with a synthetic plaintext (implicit
    # rejection), so a wrong key "decrypts" now and then; see the xfail test below.
    value = encrypt_client_secret(secret, public_key_pem(rsa_private_key))
    try:
        result = decrypt_client_secret(value, other_rsa_private_key)
    except DecryptionError:
        return
    assert result != secret


def garbage_that_decrypts(private_key_pem: bytes, attempts: int = 5000) -> str | None:
    """A random RSA-sized ciphertext this key turns into a UTF-8 string instead of an error."""
    key = load_pem_private_key(private_key_pem, password=None)
    for _ in range(attempts):
        ciphertext = os.urandom(key.key_size // 8)
        try:
            key.decrypt(ciphertext, asym_padding.PKCS1v15()).decode("utf-8")
        except ValueError:
            continue
        return base64.b64encode(ciphertext).decode()
    return None


def test_client_secret_garbage_always_raises(rsa_private_key: bytes) -> None:
    garbage = garbage_that_decrypts(rsa_private_key)
    if garbage is None:
        pytest.skip("this OpenSSL rejects bad PKCS#1 v1.5 padding explicitly")
    with pytest.raises(DecryptionError):
        decrypt_client_secret(garbage, rsa_private_key)


# --- timestamps and result codes ---------------------------------------------------------------

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("timestamp", "fresh"),
    [
        (str(NOW), True),
        (str(NOW - 59_000), True),
        (str(NOW + 59_000), True),
        (str(NOW - 60_000), True),
        (str(NOW - 61_000), False),
        (str(NOW + 61_000), False),
        (NOW - 59_000, True),
        (None, False),
        ("abc", False),
        ("", False),
    ],
)
def test_is_fresh(timestamp: str | int | None, fresh: bool) -> None:
    assert is_fresh(timestamp, now_ms=NOW) is fresh


def test_timestamp_window_is_sixty_seconds() -> None:
    assert TIMESTAMP_WINDOW_MS == 60_000


EXPECTED_CODES = {
    "SUCCESS": "000000",
    "AUTH_FAILED": "000001",
    "INVALID_PARAMETER": "000002",
    "INSTANCE_NOT_FOUND": "000003",
    "PROCESSING": "000004",
    "INTERNAL_ERROR": "000005",
    "NO_RESOURCE": "000100",
    "SECRET_PROBLEM": "000101",
}


def test_result_codes_are_the_documented_six_digit_strings() -> None:
    assert {code.name: code.value for code in ResultCode} == EXPECTED_CODES
    for code in ResultCode:
        assert isinstance(code.value, str) and re.fullmatch(r"[0-9]{6}", code.value)
        assert json.dumps({"resultCode": code}) == f'{{"resultCode": "{code.value}"}}'


def test_result_codes_have_meanings() -> None:
    for code in ResultCode:
        assert isinstance(code.meaning, str) and code.meaning.strip()
    assert ResultCode.SUCCESS.meaning == "success"
    assert ResultCode.AUTH_FAILED.meaning == "authentication failed"
    assert ResultCode.INVALID_PARAMETER.meaning == "invalid parameter"
    assert ResultCode.INSTANCE_NOT_FOUND.meaning == "instance does not exist"
    assert ResultCode("000101") is ResultCode.SECRET_PROBLEM


# --- the canonical form is Jackson's (docs/protocol.md §2.1, U1) ---------------------------


def test_canonical_body_escapes_control_characters_with_upper_case_hex_as_jackson_does() -> None:
    # Jackson writes \u001F; Python's json writes \u001f. The short escapes are the same.
    assert canonical_body({"a": "x\x1fy\x01\n\t"}) == '{"a":"x\\u001Fy\\u0001\\n\\t"}'
    # An escaped backslash followed by "u001f" is text, not an escape: left alone.
    assert canonical_body({"a": "\\u001f"}) == '{"a":"\\\\u001f"}'


def test_canonical_body_orders_keys_by_utf16_code_units_as_java_does() -> None:
    # U+1F600 is the surrogate pair D83D DE00, which Java sorts before U+FFFF; code points would not.
    assert canonical_body({"\uffff": "1", "\U0001f600": "2"}) == '{"\U0001f600":"2","\uffff":"1"}'
    assert canonical_body({"\uffff": "1", "\U0001f600": "2"}) == independent.canonical(
        {"\uffff": "1", "\U0001f600": "2"}
    )
