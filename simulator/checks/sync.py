"""User-authorization sync (联营 Kit): its own signature, and idempotent adds and deletes
(docs/protocol.md §2.4, §7).

The ``x-sign`` scheme koosim authenticates Kit calls with is on no page (ASSUMPTION U25, A37):
the checks of that scheme are warnings, as are those of applicationSync (U26) and of tenantSync
idempotency (U45). authSync's idempotency is stated [S54][S55]: an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.checks.base import Context, Severity, check
from simulator.checks.security import STALE_BY_MS, WRONG_SIGNATURE, body_sign_problem
from simulator.model import TENANT_DOMAIN, kit_user, org_info, single_org_fields
from simulator.protocol import ResultCode, encrypt_client_secret
from simulator.protocol.vocabulary import ADD, CANCEL, DELETE, MODIFY
from simulator.transport import Tamper, now_ms

RESENDS = 3


def _tenant(ctx: Context) -> dict[str, str]:
    """A tenant of a freshly created instance: the scope every sync call names."""
    instance_id = ctx.new_instance().instance_id
    return {"instanceId": instance_id, "tenantId": f"tenant-{instance_id[-12:]}"}


def _auth_body(scope: dict[str, str], flag: int) -> dict[str, object]:
    return {
        **scope,
        "appId": "app-koosim-001",
        "userList": [kit_user("alice", "Alice", role="admin")],
        "flag": flag,
    }


@check(
    "security.sync-signature-wrong", rule="§2.4, U25", severity=Severity.WARNING, needs=("kit", "newInstance")
)
def sync_signature_wrong(ctx: Context) -> None:
    """A user-sync call with a wrong or missing x-sign is refused with 000001."""
    scope = _tenant(ctx)
    wrong = ctx.sync(
        "authSync", _auth_body(scope, ADD), "authSync, wrong x-sign", Tamper(signature=WRONG_SIGNATURE)
    )
    ctx.expect(wrong, ResultCode.AUTH_FAILED, "a wrong x-sign must be refused")
    missing = ctx.sync(
        "authSync", _auth_body(scope, ADD), "authSync, no x-sign", Tamper(omit=frozenset({"x-sign"}))
    )
    ctx.expect(missing, ResultCode.AUTH_FAILED, "a call without x-sign must be refused")


@check(
    "security.sync-timestamp-stale", rule="§2.4, U25", severity=Severity.WARNING, needs=("kit", "newInstance")
)
def sync_timestamp_stale(ctx: Context) -> None:
    """A correctly signed user-sync call 5 minutes old, or without x-nonce, is refused with 000002."""
    scope = _tenant(ctx)
    stale = Tamper(timestamp_ms=now_ms() - STALE_BY_MS)
    exchange = ctx.sync("authSync", _auth_body(scope, ADD), "authSync, x-timestamp 5 min old", stale)
    ctx.expect(
        exchange, ResultCode.INVALID_PARAMETER, "an x-timestamp outside the 60 s window must be refused"
    )
    no_nonce = Tamper(omit=frozenset({"x-nonce"}))
    exchange = ctx.sync("authSync", _auth_body(scope, ADD), "authSync, no x-nonce", no_nonce)
    ctx.expect(exchange, ResultCode.INVALID_PARAMETER, "a call without x-nonce must be refused")


@check("idempotency.user-sync-add", rule="§7.4", needs=("kit", "newInstance"))
def user_sync_add(ctx: Context) -> None:
    """Adding the same user to the same instance, tenant and application again succeeds each time."""
    body = _auth_body(_tenant(ctx), ADD)
    for n in range(1 + RESENDS):
        exchange = ctx.sync("authSync", body, f"authSync add (copy {n + 1})")
        ctx.expect(exchange, ResultCode.SUCCESS, "a repeated add of the same user must succeed")


@check("idempotency.user-sync-delete", rule="§7.4", needs=("kit", "newInstance"))
def user_sync_delete(ctx: Context) -> None:
    """Deleting the same user again succeeds each time, and so does adding it back afterwards."""
    scope = _tenant(ctx)
    ctx.require(
        ctx.sync("authSync", _auth_body(scope, ADD), "authSync add"), ResultCode.SUCCESS, "add a user"
    )
    for n in range(1 + RESENDS):
        exchange = ctx.sync("authSync", _auth_body(scope, DELETE), f"authSync delete (copy {n + 1})")
        ctx.expect(exchange, ResultCode.SUCCESS, "a repeated delete of the same user must succeed")
    again = ctx.sync("authSync", _auth_body(scope, ADD), "authSync add after delete")
    ctx.expect(again, ResultCode.SUCCESS, "adding a deleted user back must succeed")


@check("idempotency.user-sync-delete-unscoped", rule="§7.4", needs=("kit",))
def user_sync_delete_unscoped(ctx: Context) -> None:
    """A delete succeeds for an instance the merchant never created and a user it never added.

    The authSync pages: repeated deletes succeed, and **a delete must not depend on the instance
    from the subscription call existing** [S54][S55]: the marketplace may delete users of an
    instance already released, or never provisioned here. Cancelling an authorisation (flag 3)
    follows the same rule.
    """
    unknown = ctx.orders.unknown_instance_id()
    scope = {"instanceId": unknown, "tenantId": f"tenant-{unknown[-12:]}"}
    for flag, label in ((DELETE, "delete"), (CANCEL, "cancel authorisation")):
        exchange = ctx.sync("authSync", _auth_body(scope, flag), f"authSync {label}, instance never created")
        ctx.expect(
            exchange,
            ResultCode.SUCCESS,
            f"an authSync {label} for an instance the merchant never created must succeed (§7.4: a delete "
            "must not depend on the subscription's instance)",
        )


@check("sync.empty-instance", rule="§7.1, A40", needs=("kit",))
def empty_instance(ctx: Context) -> None:
    """Kit calls with an empty instanceId (and tenantSync's empty orderId) are accepted.

    ``instanceId`` is marked M, yet the same cell says it is sent **empty** when the seller applies
    for application credentials (A40): a merchant must not refuse ``""`` on these calls.
    """
    scope = {"instanceId": "", "tenantId": "tenant-koosim-credentials"}
    tenant = {
        **scope,
        "orderId": "",
        "tenantCode": "koosim-credentials",
        "name": "koosim 凭证申请",
        "domainName": TENANT_DOMAIN,
    }
    steps: list[tuple[str, Mapping[str, Any], str]] = [
        ("tenantSync", {**tenant, "flag": ADD}, "tenantSync add, empty instanceId and orderId"),
        ("authSync", _auth_body(scope, ADD), "authSync add, empty instanceId"),
        ("singleOrgSync", single_org_fields(scope, ADD), "singleOrgSync add, empty instanceId"),
        ("allOrgSync", {**scope, "orgInfo": org_info()}, "allOrgSync, empty instanceId"),
        ("authSync", _auth_body(scope, DELETE), "authSync delete, empty instanceId"),
    ]
    for call, body, label in steps:
        ctx.expect(ctx.sync(call, body, label), ResultCode.SUCCESS, f"{label} must be accepted (A40)")


@check("security.sync-body-sign", rule="§2.4, A37, U25", severity=Severity.WARNING, needs=("kit",))
def sync_body_sign(ctx: Context) -> None:
    """Kit answers carry a Body-Sign over the exact bytes, as V1 answers do.

    The older tenantSync page's example answer carries a ``Body-Sign: sign_type="HM…`` header
    [S56] (cut off); which key signs it is not stated (U25, A37): koosim accepts the seller's
    access key (the V1 rule, §2.3) or the sync key. A warning at most.
    """
    scope = {"instanceId": "", "tenantId": "tenant-koosim-body-sign"}
    tenant = {**scope, "orderId": "", "tenantCode": "acme", "name": "Acme", "domainName": TENANT_DOMAIN}
    exchanges = [
        ctx.sync("tenantSync", {**tenant, "flag": ADD}, "tenantSync add"),
        ctx.sync("tenantSync", {**tenant, "flag": DELETE}, "tenantSync delete"),
    ]
    answered = [e for e in exchanges if e.answered]
    if not answered:
        ctx.skip("neither tenantSync add nor delete was answered: no Body-Sign to judge")
    for exchange in answered:
        keys = [key for key in (ctx.target.access_key, ctx.target.sync_key) if key]
        problems = [body_sign_problem(exchange, key) for key in keys]
        if all(problems):
            ctx.fail(
                f"{exchange.label}: {problems[0]} (the tenantSync page's example answer is signed [S56]; "
                "the key is ASSUMPTION U25: the access key or the sync key is accepted)",
                exchange,
            )


@check("sync.directory", rule="§7.2, U45", severity=Severity.WARNING, needs=("kit", "newInstance"))
def directory(ctx: Context) -> None:
    """tenantSync, singleOrgSync and allOrgSync adds and deletes are accepted, resends included."""
    scope = _tenant(ctx)
    tenant = {
        **scope,
        "orderId": "CS-koosim-sync",
        "tenantCode": "acme",
        "name": "Acme 有限公司",
        "domainName": TENANT_DOMAIN,
    }
    all_orgs = {**scope, "orgInfo": org_info()}
    steps: list[tuple[str, Mapping[str, Any], str]] = [
        ("tenantSync", {**tenant, "flag": ADD}, "tenantSync add"),
        ("tenantSync", {**tenant, "flag": ADD}, "tenantSync add (resend)"),
        ("singleOrgSync", single_org_fields(scope, ADD), "singleOrgSync add"),
        ("singleOrgSync", single_org_fields(scope, MODIFY), "singleOrgSync modify"),
        ("singleOrgSync", single_org_fields(scope, DELETE), "singleOrgSync delete"),
        ("singleOrgSync", single_org_fields(scope, DELETE), "singleOrgSync delete (resend)"),
        ("allOrgSync", all_orgs, "allOrgSync"),
        ("allOrgSync", all_orgs, "allOrgSync (resend)"),
        ("tenantSync", {**tenant, "flag": DELETE}, "tenantSync delete"),
        ("tenantSync", {**tenant, "flag": DELETE}, "tenantSync delete (resend)"),
    ]
    for call, body, label in steps:
        ctx.expect(ctx.sync(call, body, label), ResultCode.SUCCESS, f"{label} must succeed")


@check("sync.application-secret", rule="§7.3, U26", severity=Severity.WARNING, needs=("kit", "newInstance"))
def application_secret(ctx: Context) -> None:
    """applicationSync with a clientSecret under the merchant's RSA key succeeds; a bad one gets 000101.

    Needs the merchant's RSA public key (KOOSIM_RSA_PUBLIC_KEY); skipped without it.
    """
    if not ctx.target.rsa_public_key:
        ctx.skip("no RSA public key configured (KOOSIM_RSA_PUBLIC_KEY)")
    scope = _tenant(ctx)
    app = {**scope, "appId": "app-koosim-001", "name": "koosim app", "clientId": "client-001", "flag": ADD}
    good = dict(app, clientSecret=encrypt_client_secret("s3cret-client", ctx.target.rsa_public_key))
    ctx.expect(
        ctx.sync("applicationSync", good, "applicationSync"), ResultCode.SUCCESS, "a valid clientSecret"
    )
    bad = dict(app, clientSecret="bm90IGVuY3J5cHRlZA==")
    exchange = ctx.sync("applicationSync", bad, "applicationSync, undecryptable clientSecret")
    ctx.expect(exchange, ResultCode.SECRET_PROBLEM, "a clientSecret that does not decrypt must get 000101")
