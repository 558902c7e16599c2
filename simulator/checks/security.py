"""Signatures, freshness and encrypted secrets (protocol.md §2-§5)."""

from __future__ import annotations

from simulator.checks.base import Context, check
from simulator.model import query_fields
from simulator.protocol import DecryptionError, EncryptType, ResultCode, decrypt, encrypt, verify_body_sign
from simulator.transport import Tamper, json_bytes, now_ms

STALE_BY_MS = 5 * 60_000
"""How far in the past a "stale" timestamp is put: well outside the 60 s window."""
WRONG_SIGNATURE = "0" * 64


def _probe_fields(ctx: Context) -> dict[str, str]:
    """A harmless, otherwise valid call: a newInstance for a fresh order (a test order)."""
    order = ctx.orders.order(test=True)
    return order.new_instance_fields(ctx.orders.business_id())


@check("security.v2-signature-wrong", rule="§2", protocols=("v2",))
def v2_signature_wrong(ctx: Context) -> None:
    """A v2 call with a wrong signature is refused with 000001.

    The signature is replaced by 64 zeros; everything else is a valid, fresh call.
    """
    exchange = ctx.send(_probe_fields(ctx), "newInstance, wrong signature", Tamper(signature=WRONG_SIGNATURE))
    ctx.expect(exchange, ResultCode.AUTH_FAILED, "a wrong signature must be refused")


@check("security.v2-signature-missing", rule="§2", protocols=("v2",))
def v2_signature_missing(ctx: Context) -> None:
    """A v2 call without a signature is refused with 000001."""
    exchange = ctx.send(
        _probe_fields(ctx), "newInstance, no signature", Tamper(omit=frozenset({"signature"}))
    )
    ctx.expect(exchange, ResultCode.AUTH_FAILED, "a call without signature must be refused")


@check("security.v2-body-tampered", rule="§2", protocols=("v2",))
def v2_body_tampered(ctx: Context) -> None:
    """A v2 call whose body changed after signing is refused with 000001.

    The signature covers the original body; the body sent has one character of orderId changed.
    """
    fields = _probe_fields(ctx)
    changed = dict(fields, orderId=fields["orderId"][:-1] + ("Y" if fields["orderId"].endswith("X") else "X"))
    exchange = ctx.send(fields, "newInstance, body changed after signing", Tamper(body=json_bytes(changed)))
    ctx.expect(exchange, ResultCode.AUTH_FAILED, "a body that does not match its signature must be refused")


@check("security.v2-timestamp-stale", rule="§2", protocols=("v2",))
def v2_timestamp_stale(ctx: Context) -> None:
    """A correctly signed v2 call with a timestamp 5 minutes old is refused with 000002."""
    tamper = Tamper(timestamp_ms=now_ms() - STALE_BY_MS)
    exchange = ctx.send(_probe_fields(ctx), "newInstance, timestamp 5 min old", tamper)
    ctx.expect(exchange, ResultCode.INVALID_PARAMETER, "a timestamp outside the 60 s window must be refused")


@check("security.v2-timestamp-missing", rule="§2", protocols=("v2",))
def v2_timestamp_missing(ctx: Context) -> None:
    """A v2 call without timestamp, or without nonce, is refused with 000002."""
    for name in ("timestamp", "nonce"):
        exchange = ctx.send(_probe_fields(ctx), f"newInstance, no {name}", Tamper(omit=frozenset({name})))
        ctx.expect(exchange, ResultCode.INVALID_PARAMETER, f"a call without {name} must be refused")


@check("security.v1-authtoken-wrong", rule="§3", protocols=("v1",))
def v1_authtoken_wrong(ctx: Context) -> None:
    """A v1 call with a wrong or missing authToken is refused with 000001."""
    wrong = ctx.send(_probe_fields(ctx), "newInstance, wrong authToken", Tamper(signature="AAAA" * 11))
    ctx.expect(wrong, ResultCode.AUTH_FAILED, "a wrong authToken must be refused")
    missing = ctx.send(_probe_fields(ctx), "newInstance, no authToken", Tamper(omit=frozenset({"authToken"})))
    ctx.expect(missing, ResultCode.AUTH_FAILED, "a call without authToken must be refused")


@check("security.v1-authtoken-encoded-values", rule="§3", protocols=("v1",))
def v1_authtoken_encoded_values(ctx: Context) -> None:
    """A v1 call whose values hold '+', '/' and '=' is accepted when its authToken is right.

    Encrypted fields are base64, so '+' is common; the token is over URL-decoded values. A
    merchant that turns '+' into a space, or signs the encoded form, refuses valid calls.
    """
    fields = _probe_fields(ctx)
    fields["email"] = encrypt("buyer+tag@example.com", ctx.target.access_key, EncryptType.AES256)
    fields["customerName"] = "a+b/c=d 测试"
    exchange = ctx.send(fields, "newInstance, values with + / =")
    ctx.expect(
        exchange, ResultCode.SUCCESS, "a correctly signed call with '+' in its values must be accepted"
    )


@check("security.v1-body-sign", rule="§3", protocols=("v1",))
def v1_body_sign(ctx: Context) -> None:
    """Every v1 answer carries a Body-Sign header that verifies over the exact bytes sent."""
    created = ctx.new_instance()
    ctx.send(query_fields(created.instance_id), "queryInstance")
    for exchange in (e for e in ctx.exchanges if e.answered):
        header = exchange.response_headers.get("Body-Sign")
        if header is None:
            ctx.fail(f"{exchange.label}: the answer has no Body-Sign header", exchange)
        elif not verify_body_sign(exchange.response_body, header, ctx.target.access_key):
            ctx.fail(f"{exchange.label}: Body-Sign does not verify over the answer's bytes", exchange)


@check("security.appinfo-encrypted", rule="§5")
def appinfo_encrypted(ctx: Context) -> None:
    """appInfo userName and password are IV + base64 AES-CBC under the declared encryptType.

    They must decrypt with the key derived from the access key; a plaintext or wrongly keyed
    secret fails. The decrypted values are never shown.
    """
    exchange = ctx.new_instance().exchange
    declared = exchange.answer_field("encryptType")
    if declared not in {t.value for t in EncryptType}:
        ctx.abort(f"encryptType must be '1' (AES-256) or '2' (AES-128), got {declared!r}", exchange)
    app_info = exchange.answer_field("appInfo")
    if not isinstance(app_info, dict):
        ctx.abort("newInstance answered no appInfo object", exchange)
    for name in ("userName", "password"):
        value = app_info.get(name)
        if not isinstance(value, str) or not value:
            ctx.fail(f"appInfo.{name} is missing", exchange)
            continue
        try:
            decrypt(value, ctx.target.access_key, declared)
        except DecryptionError as problem:
            ctx.fail(f"appInfo.{name} does not decrypt with encryptType {declared}: {problem}", exchange)
