"""Signatures, freshness, Body-Sign and encrypted secrets (docs/protocol.md §2).

Which result code answers which fault (000001 for a bad signature, 000002 for a stale or
incomplete call) is an ASSUMPTION (U2, §3.2): these checks fail a merchant that *accepts* what
it must refuse, and only warn about the code it refuses with.
"""

from __future__ import annotations

from typing import Any

from simulator.checks.base import Context, Severity, check, describe
from simulator.model import expire_fields, instance_status_fields, query_fields, release_call, v1_fields
from simulator.protocol import (
    DecryptionError,
    EncryptType,
    ResultCode,
    decrypt,
    encrypt,
    parse_body_sign,
    verify_body_sign,
)
from simulator.protocol.vocabulary import app_infos
from simulator.transport import Exchange, Tamper, header_named, json_bytes, now_ms

STALE_BY_MS = 5 * 60_000
"""How far in the past a "stale" timestamp is put: well outside the 60 s window."""
WRONG_SIGNATURE = "0" * 64


def _probe_fields(ctx: Context) -> dict[str, Any]:
    """A harmless, otherwise valid call: a newInstance for a fresh order (a test order)."""
    order = ctx.orders.order(test=True)
    return order.new_instance_fields(ctx.orders.business_id())


@check("security.v2-signature-wrong", rule="§2.1", protocols=("v2",))
def v2_signature_wrong(ctx: Context) -> None:
    """A v2 call with a wrong signature is refused (000001 expected: ASSUMPTION U2).

    The signature is replaced by 64 zeros; everything else is a valid, fresh call.
    """
    exchange = ctx.send(_probe_fields(ctx), "newInstance, wrong signature", Tamper(signature=WRONG_SIGNATURE))
    ctx.refused(exchange, ResultCode.AUTH_FAILED, "a wrong signature must be refused")


@check("security.v2-signature-missing", rule="§2.1", protocols=("v2",))
def v2_signature_missing(ctx: Context) -> None:
    """A v2 call without a signature is refused (000001 expected: ASSUMPTION U2)."""
    exchange = ctx.send(
        _probe_fields(ctx), "newInstance, no signature", Tamper(omit=frozenset({"signature"}))
    )
    ctx.refused(exchange, ResultCode.AUTH_FAILED, "a call without signature must be refused")


@check("security.v2-body-tampered", rule="§2.1", protocols=("v2",))
def v2_body_tampered(ctx: Context) -> None:
    """A v2 call whose body changed after signing is refused (000001 expected: ASSUMPTION U2).

    The signature covers the original body; the body sent has one character of orderId changed.
    """
    fields = _probe_fields(ctx)
    changed = dict(fields, orderId=fields["orderId"][:-1] + ("Y" if fields["orderId"].endswith("X") else "X"))
    exchange = ctx.send(fields, "newInstance, body changed after signing", Tamper(body=json_bytes(changed)))
    ctx.refused(exchange, ResultCode.AUTH_FAILED, "a body that does not match its signature must be refused")


@check(
    "security.v2-body-key-order",
    rule="§2.1, A3, U1",
    severity=Severity.WARNING,
    protocols=("v2",),
)
def v2_body_key_order(ctx: Context) -> None:
    """A v2 body whose members arrive in another order is accepted: the signature covers the
    canonical form (members sorted ascending), not the bytes as received.

    koosim normally sends bodies already in canonical order, so hashing the received bytes
    passes unnoticed; this call sends the same members in descending order. A warning: no page
    defines the canonical form (ASSUMPTION U1; the pages disagree on the order, A3).
    """
    fields = {name: value for name, value in _probe_fields(ctx).items() if value is not None}
    reordered = json_bytes(dict(sorted(fields.items(), reverse=True)))
    exchange = ctx.send(fields, "newInstance, members in descending order", Tamper(body=reordered))
    if exchange.result_code == ResultCode.AUTH_FAILED.value:
        ctx.fail(
            "signature computed over the body as received, not the canonical form (members sorted "
            f"by name, ASSUMPTION U1): the same members in another order were refused, {describe(exchange)}",
            exchange,
        )
    else:
        ctx.expect(exchange, ResultCode.SUCCESS, "the same call with its members in another order")


@check("security.v2-timestamp-stale", rule="§2.1", protocols=("v2",))
def v2_timestamp_stale(ctx: Context) -> None:
    """A correctly signed v2 call with a timestamp 5 minutes old is refused (000002 expected:
    ASSUMPTION U2)."""
    tamper = Tamper(timestamp_ms=now_ms() - STALE_BY_MS)
    exchange = ctx.send(_probe_fields(ctx), "newInstance, timestamp 5 min old", tamper)
    ctx.refused(exchange, ResultCode.INVALID_PARAMETER, "a timestamp outside the 60 s window must be refused")


@check("security.v2-timestamp-missing", rule="§2.1", protocols=("v2",))
def v2_timestamp_missing(ctx: Context) -> None:
    """A v2 call without timestamp, or without nonce, is refused (000002 expected: ASSUMPTION U2)."""
    for name in ("timestamp", "nonce"):
        exchange = ctx.send(_probe_fields(ctx), f"newInstance, no {name}", Tamper(omit=frozenset({name})))
        ctx.refused(exchange, ResultCode.INVALID_PARAMETER, f"a call without {name} must be refused")


@check("security.v1-authtoken-wrong", rule="§2.2", protocols=("v1",))
def v1_authtoken_wrong(ctx: Context) -> None:
    """A v1 call with a wrong or missing authToken is refused (000001 expected: ASSUMPTION U18)."""
    wrong = ctx.send(_probe_fields(ctx), "newInstance, wrong authToken", Tamper(signature="AAAA" * 11))
    ctx.refused(wrong, ResultCode.AUTH_FAILED, "a wrong authToken must be refused", "U18")
    missing = ctx.send(_probe_fields(ctx), "newInstance, no authToken", Tamper(omit=frozenset({"authToken"})))
    ctx.refused(missing, ResultCode.AUTH_FAILED, "a call without authToken must be refused", "U18")
    # Every V1 activity the product has verifies the token (docs/protocol.md §2.2, §5.1), not
    # only the subscription.
    created = ctx.new_instance()
    order, instance_id = created.order, created.instance_id
    for fields in (
        order.refresh_fields(instance_id, ctx.orders.expire_time(days=60)),
        order.upgrade_fields(instance_id),
        expire_fields(instance_id, order.order_id),
        instance_status_fields(instance_id, "FREEZE"),
        release_call("v1", instance_id, order.order_id),
    ):
        if not ctx.applies(fields):
            continue
        activity = v1_fields(fields)["activity"]
        exchange = ctx.send(fields, f"{activity}, wrong authToken", Tamper(signature="AAAA" * 11))
        ctx.refused(
            exchange, ResultCode.AUTH_FAILED, f"{activity} with a wrong authToken must be refused", "U18"
        )


@check("security.v1-timestamp-stale", rule="§2.2, U17", severity=Severity.WARNING, protocols=("v1",))
def v1_timestamp_stale(ctx: Context) -> None:
    """A correctly signed v1 call whose timeStamp is 5 minutes old is refused.

    No page publishes a V1 freshness window (ASSUMPTION U17): a merchant accepting a replayed
    old call gets a warning, never a failure.
    """
    tamper = Tamper(timestamp_ms=now_ms() - STALE_BY_MS)
    exchange = ctx.send(_probe_fields(ctx), "newInstance, timeStamp 5 min old", tamper)
    if exchange.result_code == ResultCode.SUCCESS.value:
        ctx.fail(
            "a v1 call with a timeStamp 5 minutes old was accepted (ASSUMPTION U17: no page states a "
            "V1 window; an old authToken can be replayed)",
            exchange,
        )


@check("security.v1-authtoken-encoded-values", rule="§2.2", protocols=("v1",))
def v1_authtoken_encoded_values(ctx: Context) -> None:
    """A v1 call whose values hold '+', '/' and '=' is accepted when its authToken is right.

    The token is over URL-decoded values (§2.2); a '+' left unencoded arrives as a space [S33].
    The name is plain text; a merchant that turns '+' into a space, or signs the encoded form,
    refuses valid calls. (Encrypted e-mail and mobile values: security.v1-encrypted-values.)
    """
    fields = _probe_fields(ctx)
    fields["customerName"] = "a+b/c=d 测试"
    exchange = ctx.send(fields, "newInstance, values with + / =")
    ctx.expect(
        exchange, ResultCode.SUCCESS, "a correctly signed call with '+' in its values must be accepted"
    )


@check("security.v1-encrypted-values", rule="§2.7, U20", severity=Severity.WARNING, protocols=("v1",))
def v1_encrypted_values(ctx: Context) -> None:
    """A v1 call with the e-mail and mobile encrypted under the seller's encryptType is accepted.

    The values are IV + base64 AES-CBC with the key derived from the access key, AES-256 for
    encryptType 1 and AES-128 for 2 (``--encrypt-type``); the scheme and the choice are ASSUMPTION
    U20. A refusal names the encryption, not the '+' of the base64 (that is
    security.v1-authtoken-encoded-values).
    """
    encrypt_type = EncryptType(ctx.target.encrypt_type)
    fields = _probe_fields(ctx)
    fields["email"] = encrypt("buyer+tag@example.com", ctx.target.access_key, encrypt_type)
    fields["mobilePhone"] = encrypt("+8613800000000", ctx.target.access_key, encrypt_type)
    cipher = "AES-256" if encrypt_type is EncryptType.AES256 else "AES-128"
    exchange = ctx.send(fields, f"newInstance, e-mail and mobile encrypted ({cipher})")
    ctx.expect(
        exchange,
        ResultCode.SUCCESS,
        f"a call whose e-mail and mobile are encrypted with encryptType {encrypt_type.value} ({cipher}) "
        "must be accepted (ASSUMPTION U20: the encryption scheme)",
    )


@check("security.v1-body-sign", rule="§2.3", protocols=("v1",))
def v1_body_sign(ctx: Context) -> None:
    """Every v1 answer carries a Body-Sign header that verifies over the exact bytes sent.

    The marketplace's debugging requires the exact name ``Body-Sign`` and the quoted members
    ``sign_type="HMAC-SHA256", signature="…"`` [S32][S49].
    """
    created = ctx.new_instance()
    if ctx.applies(query_fields(created.instance_id)):
        ctx.send(query_fields(created.instance_id), "queryInstance")
    for exchange in (e for e in ctx.exchanges if e.answered):
        problem = body_sign_problem(exchange, ctx.target.access_key)
        if problem is not None:
            ctx.fail(f"{exchange.label}: {problem}", exchange)


@check("security.v2-body-sign", rule="§2.3, A8", protocols=("v2",))
def v2_body_sign(ctx: Context) -> None:
    """A v2 answer's Body-Sign, when present, is exact and verifies; its absence is a warning.

    No V2 page documents an answer header, yet the requirements page says answers are signed
    (A8): a missing Body-Sign is a warning; a present one is checked as on v1 (exact name,
    quoted members, HMAC-SHA256 over the exact bytes), and a wrong one fails [S32].
    """
    created = ctx.new_instance()
    ctx.send(query_fields(created.instance_id), "queryInstance")
    answered = [e for e in ctx.exchanges if e.answered]
    unsigned = [e for e in answered if header_named(e.response_headers, "Body-Sign") is None]
    for exchange in answered:
        if exchange not in unsigned:
            problem = body_sign_problem(exchange, ctx.target.access_key)
            if problem is not None:
                ctx.fail(f"{exchange.label}: {problem}", exchange)
    if unsigned:
        ctx.warn(
            f"{len(unsigned)} v2 answer(s) carry no Body-Sign header: the requirements page says answers "
            "are signed and the debugging console looks for it, no V2 interface page shows one (A8)",
            *unsigned[:1],
        )


@check("security.appinfo-encrypted", rule="§2.7, U20", severity=Severity.WARNING)
def appinfo_encrypted(ctx: Context) -> None:
    """appInfo userName and password, when returned, are IV + base64 AES-CBC under encryptType.

    They must decrypt with the key derived from the access key; a plaintext or wrongly keyed
    secret is reported. The members and the scheme are ASSUMPTIONs (U16, U20): a warning. An
    answer without userName and password has nothing to encrypt. Decrypted values are never shown.
    """
    exchange = ctx.new_instance().exchange
    for problem in appinfo_problems(exchange, ctx.target.access_key):
        ctx.fail(problem, exchange)


# --- the rules about one answer, shared by every judge (the catalog, play, serve, the plugin) ----


def encrypt_type_problem(declared: Any) -> str | None:
    """Why an answer's ``encryptType`` names no cipher, if it does not (protocol.md §5)."""
    if declared in {encrypt_type.value for encrypt_type in EncryptType}:
        return None
    return f"encryptType must be '1' (AES-256) or '2' (AES-128), got {declared!r}"


def appinfo_problems(exchange: Exchange, access_key: str) -> list[str]:
    """Why the appInfo secrets of a newInstance or queryInstance answer (one appInfo per
    ``info[]`` item) do not decrypt under the declared encryptType; empty when they all do.

    The decrypted values are never part of a message.
    """
    if exchange.result_code != ResultCode.SUCCESS:
        return [f"no appInfo to decrypt: {describe(exchange)}"]
    secrets = [
        (name, app_info[name])
        for app_info in app_infos(exchange.response_json)
        if isinstance(app_info, dict)
        for name in ("userName", "password")
        if app_info.get(name) not in (None, "")
    ]
    if not secrets:
        return []  # nothing returned that needs encrypting (U16: the members are not published)
    declared = exchange.answer_field("encryptType")
    wrong_type = encrypt_type_problem(declared)
    if wrong_type is not None:
        return [wrong_type]
    problems = []
    for name, value in secrets:
        if not isinstance(value, str):
            problems.append(f"appInfo.{name} is not a string")
        else:
            try:
                decrypt(value, access_key, declared)
            except DecryptionError as problem:
                problems.append(f"appInfo.{name} does not decrypt with encryptType {declared}: {problem}")
    return problems


BODY_SIGN = "Body-Sign"
"""The answer header's name, in the exact case the marketplace's debugging requires [S32]."""


def body_sign_problem(exchange: Exchange, access_key: str) -> str | None:
    """Why an answer's Body-Sign header does not vouch for the exact bytes sent, if it does not
    (docs/protocol.md §2.3): absent, sent in another letter case, malformed, or wrong."""
    if not exchange.answered:
        return f"no answer to verify: {exchange.error}"
    found = header_named(exchange.response_headers, BODY_SIGN)
    if found is None:
        return "the answer has no Body-Sign header"
    sent_as, header = found
    if sent_as != BODY_SIGN:
        return f"sent as {sent_as}; the marketplace's debugging requires the exact case {BODY_SIGN}"
    if parse_body_sign(header) is None:
        return 'Body-Sign is not of the form sign_type="HMAC-SHA256", signature="…" (quotes required)'
    if not verify_body_sign(exchange.response_body, header, access_key):
        return "Body-Sign does not verify over the answer's bytes"
    return None
