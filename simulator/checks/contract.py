"""Every answer, whatever the call, has the shape docs/protocol.md §3 and §10.4 and contracts/ require.

These checks send nothing: they judge every exchange the other checks produced.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from simulator.checks.base import Severity, exchange_check
from simulator.contracts import UnknownContract, allowed_result_codes, validate
from simulator.protocol import ResultCode
from simulator.protocol.vocabulary import LICENSE_ACTIVITIES
from simulator.redaction import redact_data
from simulator.transport import DEADLINE_SOURCE, DEFAULT_TIMEOUT, Exchange, Target

_KNOWN_CODES = frozenset(code.value for code in ResultCode)


def _json_object(exchange: Exchange) -> dict | None:
    body = exchange.response_json
    return body if isinstance(body, dict) else None


def _status_problem(exchange: Exchange) -> str:
    location = exchange.header("Location")
    if exchange.status is not None and 300 <= exchange.status < 400 and location:
        return f"HTTP {exchange.status} instead of 200: a redirect to {location!r}, never followed"
    return f"HTTP {exchange.status} instead of 200"


@exchange_check("contract.http-200-json", rule="§3.1, U3", severity=Severity.WARNING)
def http_200_json(exchange: Exchange, target: Target) -> str | None:
    """Every answer is HTTP 200 with Content-Type application/json (ASSUMPTION U3).

    No page states the answer's HTTP status or Content-Type; koosim expects what Huawei's sample
    merchant does, refusals included. A redirect is reported, never followed.
    """
    if not exchange.answered:
        return None  # contract.json-body or timing.deadline reports it
    if exchange.status != 200:
        return _status_problem(exchange)
    content_type = exchange.header("Content-Type") or ""
    if content_type.split(";")[0].strip().lower() != "application/json":
        return f"Content-Type is {content_type or 'missing'!r}, not application/json"
    return None


@exchange_check("contract.json-body", rule="§10.4")
def json_body(exchange: Exchange, target: Target) -> str | None:
    """Every answer arrives and its body is one JSON object (D6: the console fails one that does
    not parse); an object that names a member twice is ambiguous."""
    if exchange.timed_out:
        return None  # timing.deadline reports it
    if exchange.error is not None:
        return f"no usable HTTP answer: {exchange.error}"
    if _json_object(exchange) is None:
        problem = exchange.json_problem or "the body is not a JSON object"
        if exchange.status != 200:  # say what came instead, as contract.http-200-json does
            return f"{_status_problem(exchange)}, and {problem}"
        return problem
    repeated = exchange.repeated_members
    if repeated:
        names = ", ".join(repr(name) for name in repeated[:3])
        return f"the JSON names member {names} twice: which value counts depends on the parser"
    return None


@exchange_check("contract.result-code", rule="§3.2")
def result_code(exchange: Exchange, target: Target) -> str | None:
    """resultCode is a six-digit string from the published code list (§3.2)."""
    body = _json_object(exchange)
    if body is None:
        return None
    code = body.get("resultCode")
    if not isinstance(code, str):
        return f"resultCode is {code!r}, not a string"
    if code not in _KNOWN_CODES:
        return f"resultCode {code!r} is not one of the protocol's codes"
    return None


_ANY_ACTIVITY = frozenset({"000000", "000001", "000002", "000004", "000005"})
"""The codes the list of §3.2 ties to no activity: success and the general refusals."""
TIED_CODES = {
    "000003": frozenset({"refreshInstance", "expireInstance", "releaseInstance"}),
    "000100": frozenset({"newInstance"}),
}
"""What the code list ties to activities (docs/protocol.md §3.2 [S34]): 000003 to renewal, expiry
and release, 000100 to a new purchase. A tied code on its activity is never a finding."""
EXPECTED_ELSEWHERE = {
    "000003": frozenset(
        {"updateInstanceStatus", "instanceStatus", "upgradeInstance", "upgrade", "changeInstanceCheck"}
    ),
    "000100": frozenset({"upgradeInstance", "upgrade"}),
}
"""Where koosim also expects a code the list does not tie there (ASSUMPTION U15): an unknown
instance named by a status change, an upgrade or a change check; no resource for an upgrade."""


def expected_codes(protocol: str, activity: str) -> frozenset[str] | None:
    """The resultCodes koosim expects of ``activity`` (§3.2, U15); None: no expectation (a probe's
    unknown activity). The License and Kit answers keep their contracts' own list (§6, §7)."""
    try:
        contract = allowed_result_codes(protocol, activity)
    except UnknownContract:
        return None
    if protocol not in ("v1", "v2") or activity in LICENSE_ACTIVITIES:
        return contract
    tied = {code for code, names in TIED_CODES.items() if activity in names}
    elsewhere = {code for code, names in EXPECTED_ELSEWHERE.items() if activity in names}
    return _ANY_ACTIVITY | tied | elsewhere


@exchange_check("contract.result-code-per-activity", rule="§3.2, U15", severity=Severity.WARNING)
def result_code_per_activity(exchange: Exchange, target: Target) -> str | None:
    """resultCode is one koosim expects of the activity (ASSUMPTION U15: the code list ties codes
    to activities only for 000003 — renewal, expiry, release — and 000100 — a new purchase)."""
    code = exchange.result_code
    if code is None or code not in _KNOWN_CODES:
        return None
    allowed = expected_codes(exchange.protocol, exchange.activity)
    if allowed is None or code in allowed:
        return None
    return (
        f"{exchange.activity} answered {code}, which koosim does not expect of it (expected: "
        f"{', '.join(sorted(allowed))}; ASSUMPTION U15: the code list ties 000003 only to renewal, "
        "expiry and release and 000100 only to a new purchase)"
    )


RESULT_MSG_LIMIT = 255
"""resultMsg: optional, String, at most 255 characters (docs/protocol.md §3.1)."""


@exchange_check("contract.result-msg", rule="§3.1")
def result_msg(exchange: Exchange, target: Target) -> str | None:
    """resultMsg, when present, is a string of at most 255 characters.

    The tables mark it optional (O, String, 255): an answer without it is fine.
    """
    body = _json_object(exchange)
    if body is None or body.get("resultMsg") is None:
        return None
    message = body["resultMsg"]
    if not isinstance(message, str):
        return f"resultMsg is a {type(message).__name__}, not a string"
    if len(message) > RESULT_MSG_LIMIT:
        return f"resultMsg is {len(message)} characters long; at most {RESULT_MSG_LIMIT} are allowed"
    return None


FRONT_END_URL_LIMIT = 512
"""appInfo.frontEndUrl: at most 512 characters (docs/protocol.md §4.1, §10.4 D5)."""
INSTANCE_ID_LIMIT = 64
"""InstanceInfo.instanceId: at most 64 characters (docs/protocol.md §4.5)."""


def _present(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _new_instance_members(body: dict) -> list[str]:
    problems = []
    if not _present(body.get("instanceId")):
        problems.append("a successful newInstance answer must carry instanceId")
    app_info = body.get("appInfo")
    url = app_info.get("frontEndUrl") if isinstance(app_info, dict) else None
    if not _present(url):
        problems.append("a successful newInstance answer must carry appInfo.frontEndUrl")
    elif len(url) > FRONT_END_URL_LIMIT:
        problems.append(f"appInfo.frontEndUrl is {len(url)} characters long; at most {FRONT_END_URL_LIMIT}")
    return problems


def _query_instance_members(body: dict) -> list[str]:
    info = body.get("info")
    if info is None:
        return []
    if not isinstance(info, list):
        return ["info is not a list of InstanceInfo"]
    problems = []
    for index, item in enumerate(info):
        if not isinstance(item, dict):
            problems.append(f"info[{index}] is not an InstanceInfo object")
            continue
        instance_id = item.get("instanceId")
        if not _present(instance_id):
            problems.append(f"info[{index}] carries no instanceId")
        elif len(instance_id) > INSTANCE_ID_LIMIT:
            problems.append(
                f"info[{index}].instanceId is {len(instance_id)} characters; at most {INSTANCE_ID_LIMIT}"
            )
        usage = item.get("usageInfo", item.get("UsageInfo"))
        for entry in usage if isinstance(usage, list) else [usage] if usage is not None else []:
            missing = [
                name
                for name in ("usageValue", "statisticalTime")
                if not isinstance(entry, dict) or entry.get(name) in (None, "")
            ]
            if missing:
                problems.append(f"info[{index}] returns a UsageInfo without {' and '.join(missing)}")
    return problems


_MEMBERS = {"newInstance": _new_instance_members, "queryInstance": _query_instance_members}


@exchange_check("contract.console-members", rule="§10.4")
def console_members(exchange: Exchange, target: Target) -> str | None:
    """A successful answer carries the members the marketplace's debugging requires (D4, D5).

    newInstance: instanceId and appInfo.frontEndUrl (at most 512 characters) (§4.1);
    queryInstance: instanceId in every InstanceInfo, and usageValue + statisticalTime in every
    UsageInfo returned (§4.5). The console fails a call without them [S32].
    """
    body = _json_object(exchange)
    members = _MEMBERS.get(exchange.activity)
    if body is None or members is None or body.get("resultCode") != "000000":
        return None
    return "; ".join(members(body)) or None


@exchange_check("contract.response-schema", rule="§4")
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


@exchange_check("timing.deadline", rule="§3.3")
def deadline(exchange: Exchange, target: Target) -> str | None:
    """Every answer arrives within the marketplace's published deadline of 5 seconds.

    The V2 overall requirements [S24] give 5 s (A1); ``--timeout`` changes how long koosim
    waits, and an answer later than 5 s is reported even when koosim waited longer.
    """
    if exchange.timed_out:
        return f"{exchange.error} (deadline {target.timeout:g} s)"
    if exchange.answered and exchange.elapsed > DEFAULT_TIMEOUT:
        return (
            f"answered after {exchange.elapsed:.1f} s; the marketplace waits {DEFAULT_TIMEOUT:g} s "
            f"({DEADLINE_SOURCE})"
        )
    return None
