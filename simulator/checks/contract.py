"""Every answer, whatever the call, has the shape protocol.md §6 and contracts/ require.

These checks send nothing: they judge every exchange the other checks produced.
"""

from __future__ import annotations

from simulator.checks.base import exchange_check
from simulator.contracts import UnknownContract, allowed_result_codes, validate
from simulator.protocol import ResultCode
from simulator.redaction import redact_data
from simulator.transport import Exchange, Target

_KNOWN_CODES = frozenset(code.value for code in ResultCode)


def _json_object(exchange: Exchange) -> dict | None:
    body = exchange.response_json
    return body if isinstance(body, dict) else None


@exchange_check("contract.http-200-json", rule="§6")
def http_200_json(exchange: Exchange, target: Target) -> str | None:
    """Every answer is HTTP 200 with Content-Type application/json and a JSON object body.

    Refusals too: the marketplace reads resultCode, and treats anything else as a failing interface.
    A redirect is reported, never followed; an object that names a member twice is ambiguous.
    """
    if exchange.timed_out:
        return None  # timing.deadline reports it
    if exchange.error is not None:
        return f"no usable HTTP answer: {exchange.error}"
    if exchange.status != 200:
        location = exchange.response_headers.get("Location")
        if exchange.status is not None and 300 <= exchange.status < 400 and location:
            return f"HTTP {exchange.status} instead of 200: a redirect to {location!r}, never followed"
        return f"HTTP {exchange.status} instead of 200"
    content_type = exchange.response_headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        return f"Content-Type is {content_type or 'missing'!r}, not application/json"
    if _json_object(exchange) is None:
        return exchange.json_problem or "the body is not a JSON object"
    repeated = exchange.repeated_members
    if repeated:
        names = ", ".join(repr(name) for name in repeated[:3])
        return f"the JSON names member {names} twice: which value counts depends on the parser"
    return None


@exchange_check("contract.result-code", rule="§6")
def result_code(exchange: Exchange, target: Target) -> str | None:
    """resultCode is a six-digit string from §6, and one the activity may answer."""
    body = _json_object(exchange)
    if body is None:
        return None
    code = body.get("resultCode")
    if not isinstance(code, str):
        return f"resultCode is {code!r}, not a string"
    if code not in _KNOWN_CODES:
        return f"resultCode {code!r} is not one of the protocol's codes"
    try:
        allowed = allowed_result_codes(exchange.protocol, exchange.activity)
    except UnknownContract:
        return None
    if code not in allowed:
        return f"{exchange.activity} may not answer {code}; allowed: {', '.join(sorted(allowed))}"
    return None


@exchange_check("contract.result-msg", rule="§6")
def result_msg(exchange: Exchange, target: Target) -> str | None:
    """resultMsg is present and a string."""
    body = _json_object(exchange)
    if body is None or isinstance(body.get("resultMsg"), str):
        return None
    return "resultMsg is missing or not a string"


@exchange_check("contract.response-schema", rule="§10")
def response_schema(exchange: Exchange, target: Target) -> str | None:
    """The answer validates against its JSON Schema in contracts/ (fields, types, formats)."""
    body = _json_object(exchange)
    if body is None:
        return None
    try:
        violations = validate(body, exchange.protocol, exchange.activity, "response")
        if violations and target.secrets:  # only a message can leak a secret: mask, then say what is wrong
            masked = redact_data(body, target.secrets, keep_length=True)
            violations = validate(masked, exchange.protocol, exchange.activity, "response")
    except UnknownContract:
        return None  # a call with a made-up activity has no contract to meet
    if not violations:
        return None
    shown = "; ".join(f"{v.path}: {v.message}" for v in violations[:3])
    more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"{shown}{more}"


@exchange_check("timing.deadline", rule="§9")
def deadline(exchange: Exchange, target: Target) -> str | None:
    """Every answer arrives within the marketplace's deadline (ASSUMPTION: 10 s, --timeout)."""
    if exchange.timed_out:
        return f"{exchange.error} (deadline {target.timeout:g} s)"
    return None
