"""AES-CBC/PKCS5 for sensitive fields, keyed the way the marketplace's Java code derives it.

A value travels as ``IV + base64(ciphertext)`` where the IV is 16 alphanumeric characters used
as the IV bytes. The key is what Java's ``KeyGenerator("AES")`` produces when initialised with a
``SecureRandom("SHA1PRNG")`` seeded by the access key (protocol.md §5); we replay that generator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
from enum import StrEnum
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

IV_LENGTH = 16
_IV_ALPHABET = string.ascii_letters + string.digits


class EncryptType(StrEnum):
    """The ``encryptType`` a merchant declares in its newInstance answer."""

    AES256 = "1"
    AES128 = "2"

    @property
    def key_length(self) -> int:
        return 32 if self is EncryptType.AES256 else 16


class DecryptionError(ValueError):
    """The value is not ``IV + base64(AES-CBC ciphertext)`` under the given key."""


def _sha1prng_bytes(seed: bytes, count: int) -> bytes:
    """The first ``count`` bytes of Java's SHA1PRNG seeded once with ``seed``."""
    state = bytearray(hashlib.sha1(seed).digest())
    output = bytearray()
    while len(output) < count:
        block = hashlib.sha1(state).digest()
        output += block
        _advance_state(state, block)
    return bytes(output[:count])


def _advance_state(state: bytearray, block: bytes) -> None:
    """state = state + block + 1 (mod 2**160), byte-wise as Java adds signed bytes."""
    carry = 1
    changed = False
    for i, (s, b) in enumerate(zip(state, block, strict=True)):
        total = _signed(s) + _signed(b) + carry
        new = total & 0xFF
        changed |= new != s
        state[i] = new
        carry = total >> 8  # arithmetic shift, as Java's >> on an int
    if not changed:
        state[0] = (state[0] + 1) & 0xFF


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def derive_aes_key(access_key: str, encrypt_type: EncryptType | str) -> bytes:
    """The AES key the marketplace derives from ``access_key`` for ``encrypt_type``."""
    length = EncryptType(encrypt_type).key_length
    return _sha1prng_bytes(access_key.encode("utf-8"), length)


def random_iv() -> str:
    return "".join(secrets.choice(_IV_ALPHABET) for _ in range(IV_LENGTH))


def encrypt(
    plaintext: str,
    access_key: str,
    encrypt_type: EncryptType | str = EncryptType.AES256,
    iv: str | None = None,
) -> str:
    """Encrypt ``plaintext`` as ``IV + base64(AES-CBC-PKCS5(plaintext))``; a fresh IV unless given."""
    iv = random_iv() if iv is None else iv
    if len(iv) != IV_LENGTH or not iv.isascii():
        raise ValueError(f"the IV must be {IV_LENGTH} ASCII characters")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(access_key, encrypt_type, iv).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return iv + base64.b64encode(ciphertext).decode("ascii")


def decrypt(value: str, access_key: str, encrypt_type: EncryptType | str = EncryptType.AES256) -> str:
    """Reverse :func:`encrypt`; raises :class:`DecryptionError` for anything that does not decrypt."""
    if len(value) <= IV_LENGTH or not value[:IV_LENGTH].isascii():
        raise DecryptionError("too short to hold a 16-character IV and a ciphertext")
    iv, encoded = value[:IV_LENGTH], value[IV_LENGTH:]
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("the ciphertext after the IV is not base64") from exc
    if not ciphertext or len(ciphertext) % 16:
        raise DecryptionError("the ciphertext is not a whole number of AES blocks")
    decryptor = _cipher(access_key, encrypt_type, iv).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError as exc:  # bad padding or not UTF-8: wrong key or wrong encryptType
        raise DecryptionError("bad padding or not UTF-8: wrong key or encryptType") from exc


def _cipher(access_key: str, encrypt_type: EncryptType | str, iv: str) -> Cipher[modes.CBC]:
    key = derive_aes_key(access_key, encrypt_type)
    return Cipher(algorithms.AES(key), modes.CBC(iv.encode("ascii")))


# --- applicationSync clientSecret: RSA with the merchant's public key ----------------------


MIN_CLIENT_SECRET_LENGTH = 8
"""The shortest clientSecret accepted as decrypted (see :func:`decrypt_client_secret`)."""


RSA_KEY_BITS = 3072
"""The reference key's size: "秘钥长度>=3072bit" (docs/protocol.md §2.8, ASSUMPTION U26)."""


def _oaep() -> asym_padding.OAEP:
    """OAEP as Huawei's sample merchant decrypts it: ``RSA/ECB/OAEPPadding`` with SHA-256 and
    MGF1 over SHA-1 (Java's default MGF1 digest) (docs/protocol.md §2.8, [X1], U26)."""
    return asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=None)


def generate_rsa_private_key() -> bytes:
    """A fresh 3072-bit RSA key (PKCS#8 PEM) for decrypting applicationSync client secrets (§2.8)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(private_key_pem: bytes) -> bytes:
    """The PEM public key that goes with a PEM private key."""
    return (
        load_rsa_private_key(private_key_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@lru_cache(maxsize=8)
def load_rsa_public_key(pem: bytes) -> RSAPublicKey:
    """Parse a PEM RSA public key; ValueError names the problem with anything else."""
    key = load_pem_public_key(pem)
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"the public key is {type(key).__name__.removeprefix('_')}, not an RSA key")
    return key


@lru_cache(maxsize=8)
def load_rsa_private_key(pem: bytes) -> RSAPrivateKey:
    """Parse a PEM RSA private key (no passphrase); ValueError names the problem with anything else."""
    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return key


def encrypt_client_secret(secret: str, public_key_pem: bytes) -> str:
    """RSA-OAEP (SHA-256, MGF1-SHA1) over UTF-8, base64-encoded (docs/protocol.md §2.8, U26)."""
    ciphertext = load_rsa_public_key(public_key_pem).encrypt(secret.encode("utf-8"), _oaep())
    return base64.b64encode(ciphertext).decode("ascii")


def decrypt_client_secret(value: str, private_key_pem: bytes) -> str:
    """Reverse :func:`encrypt_client_secret`; :class:`DecryptionError` when it cannot.

    A result only counts as a secret when it is printable UTF-8 of at least
    :data:`MIN_CLIENT_SECRET_LENGTH` characters.
    """
    private_key = load_rsa_private_key(private_key_pem)
    try:
        ciphertext = base64.b64decode(value, validate=True)
        plain = private_key.decrypt(ciphertext, _oaep()).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("the clientSecret does not decrypt with this private key") from exc
    if len(plain) < MIN_CLIENT_SECRET_LENGTH or not plain.isprintable():
        raise DecryptionError("the clientSecret does not decrypt to a printable secret")
    return plain
