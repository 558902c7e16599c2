"""Result codes every merchant answer carries (protocol.md §6)."""

from __future__ import annotations

from enum import StrEnum


class ResultCode(StrEnum):
    """A merchant's ``resultCode``: always a six-digit string, always with HTTP 200."""

    SUCCESS = "000000"
    AUTH_FAILED = "000001"
    INVALID_PARAMETER = "000002"
    INSTANCE_NOT_FOUND = "000003"
    PROCESSING = "000004"
    INTERNAL_ERROR = "000005"
    NO_RESOURCE = "000100"
    SECRET_PROBLEM = "000101"

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @classmethod
    def describe(cls, code: str) -> str:
        """``resultCode 000003 (instance does not exist)``, or says the code is not the protocol's."""
        try:
            return f"resultCode {code} ({cls(code).meaning})"
        except ValueError:
            return f"resultCode {code!r} (not a protocol code)"


_MEANINGS = {
    ResultCode.SUCCESS: "success",
    ResultCode.AUTH_FAILED: "authentication failed",
    ResultCode.INVALID_PARAMETER: "invalid parameter",
    ResultCode.INSTANCE_NOT_FOUND: "instance does not exist",
    ResultCode.PROCESSING: "processing, ask again later",
    ResultCode.INTERNAL_ERROR: "other internal error",
    ResultCode.NO_RESOURCE: "no resource available",
    ResultCode.SECRET_PROBLEM: "application secret cannot be decrypted",
}

RETRYABLE_CODES = frozenset({ResultCode.PROCESSING.value, ResultCode.INTERNAL_ERROR.value})
"""The resultCodes koosim resends after: ``000004`` (processing) and ``000005`` (other internal
error); the V2 resend schedule itself is ASSUMPTION U11 (docs/protocol.md §10.1)."""
