"""The open APIs' result codes and HTTP statuses (protocol.md §8.4) and the gateway's (§2.5).

Unlike a merchant's six-digit ``resultCode`` (§3.2), the marketplace's open APIs answer
``MKT.xxxx`` codes with the HTTP status the zh error-code table prints beside each one [S63],
including 500 for parameter validation (A55): a merchant must read ``resultCode``, not only the
status. Gateway-level refusals (signature, date) are ``APIGW.0303`` (A51).
"""

from __future__ import annotations

from enum import StrEnum


class MktCode(StrEnum):
    """An open-API ``resultCode`` of §8.4, with its published HTTP status."""

    SUCCESS = "MKT.0000"
    INTERNAL_ERROR = "MKT.0999"
    INVALID_PARAMETER = "MKT.0100"
    UNDEFINED_PARAMETER = "MKT.0101"
    OTHER_PARAMETER_ERROR = "MKT.0199"
    NOT_ALLOWED = "MKT.0150"
    NO_RIGHT = "MKT.0151"
    AUTH_FAILED = "MKT.0154"
    RATE_LIMITED = "MKT.0250"
    INSTANCE_NOT_FOUND = "MKT.9001"
    INVALID_USAGE = "MKT.9002"
    TOO_MANY_RECORDS = "MKT.9003"
    BEGIN_TIME_OUT_OF_RANGE = "MKT.9004"

    @property
    def status(self) -> int:
        """The HTTP status the table prints for this code."""
        return _TABLE[self][0]

    @property
    def meaning(self) -> str:
        return _TABLE[self][1]

    @property
    def carries_extra_info(self) -> bool:
        """Whether a failure answer with this code has an ``extra_info`` member (§8.4)."""
        return self in _EXTRA_INFO


_TABLE: dict[MktCode, tuple[int, str]] = {
    MktCode.SUCCESS: (200, "success"),
    MktCode.INTERNAL_ERROR: (500, "other internal error"),
    MktCode.INVALID_PARAMETER: (500, "an input parameter failed validation"),
    MktCode.UNDEFINED_PARAMETER: (400, "undefined or extra parameter, or a mandatory one missing"),
    MktCode.OTHER_PARAMETER_ERROR: (400, "other request-parameter error"),
    MktCode.NOT_ALLOWED: (401, "operation not allowed"),
    MktCode.NO_RIGHT: (401, "no right to call the API"),
    MktCode.AUTH_FAILED: (401, "authentication failed, invalid token"),
    MktCode.RATE_LIMITED: (406, "call-rate limit exceeded"),
    MktCode.INSTANCE_NOT_FOUND: (500, "instance ID does not exist"),
    MktCode.INVALID_USAGE: (500, "invalid usage entities"),
    MktCode.TOO_MANY_RECORDS: (500, "too many usage records"),
    MktCode.BEGIN_TIME_OUT_OF_RANGE: (500, "a record's begin time is outside the last 21 days"),
}

_EXTRA_INFO = frozenset(
    {
        MktCode.INVALID_PARAMETER,
        MktCode.NOT_ALLOWED,
        MktCode.RATE_LIMITED,
        MktCode.INSTANCE_NOT_FOUND,
        MktCode.INVALID_USAGE,
        MktCode.BEGIN_TIME_OUT_OF_RANGE,
    }
)
"""§8.4 also names MKT.9005 among the codes with ``extra_info``, but the table has no row for it."""

GATEWAY_AUTH_FAILED = "APIGW.0303"
"""The gateway's code for a wrong key, wrong signature or expired date (§2.5, A51)."""

GATEWAY_AUTH_STATUS = 401
"""ASSUMPTION U40: the pages do not show the HTTP status of ``APIGW.0303``."""
