"""The KooGallery wire protocol as pure functions: no I/O, no imports from the rest of the package.

Everything that canonicalises, signs, verifies or encrypts lives here once; the simulated
marketplace and the bundled reference merchant both call it, so they cannot drift apart.
"""

from simulator.protocol.codes import ResultCode
from simulator.protocol.crypto import (
    DecryptionError,
    EncryptType,
    decrypt,
    decrypt_client_secret,
    derive_aes_key,
    encrypt,
    encrypt_client_secret,
    generate_rsa_private_key,
    load_rsa_public_key,
    public_key_pem,
)
from simulator.protocol.signing import (
    TIMESTAMP_WINDOW_MS,
    BodySign,
    canonical_body,
    canonical_query,
    format_v1_timestamp,
    is_fresh,
    parse_body_sign,
    sign_body,
    sign_openapi,
    sign_sync,
    sign_v1,
    sign_v2,
    verify_body_sign,
    verify_openapi,
    verify_sync,
    verify_v1,
    verify_v2,
)

__all__ = [
    "TIMESTAMP_WINDOW_MS",
    "BodySign",
    "DecryptionError",
    "EncryptType",
    "ResultCode",
    "canonical_body",
    "canonical_query",
    "decrypt",
    "decrypt_client_secret",
    "derive_aes_key",
    "encrypt",
    "encrypt_client_secret",
    "format_v1_timestamp",
    "generate_rsa_private_key",
    "is_fresh",
    "load_rsa_public_key",
    "parse_body_sign",
    "public_key_pem",
    "sign_body",
    "sign_openapi",
    "sign_sync",
    "sign_v1",
    "sign_v2",
    "verify_body_sign",
    "verify_openapi",
    "verify_sync",
    "verify_v1",
    "verify_v2",
]
