"""The faulty-merchant gallery: the reference merchant with one realistic defect each.

Each module builds one mutant (``build(config) -> Flask``), explains the defect in its
docstring (what goes wrong, why sellers write it, how the reference merchant avoids it) and
names in ``MUTANT`` the check that must catch it. ``tests/test_gallery.py`` runs every one;
``docs/mutants.md`` is the table of contents.
"""

from __future__ import annotations

from . import (
    application_secret_swallowed,
    auth_failure_http_401,
    canonical_body_ascii_escaped,
    canonical_body_keeps_nulls,
    check_then_insert_race,
    debug_order_without_instance,
    encrypt_type_mismatch,
    expiry_only_forward,
    freeze_resend_rejected,
    html_content_type,
    license_per_resend,
    license_unknown_refreshed,
    long_instance_id,
    missing_result_msg,
    new_instance_per_resend,
    numeric_result_code,
    order_line_ignored,
    plaintext_password,
    query_single_id,
    release_resend_not_found,
    released_still_listed,
    renewal_resend_rejected,
    root_org_refused,
    slow_provisioning,
    sync_signature_unchecked,
    sync_timestamp_unchecked,
    trial_conversion_refused,
    unfreeze_after_release,
    unknown_activity_success,
    unknown_instance_crash,
    upgrade_resend_rejected,
    user_add_not_idempotent,
    user_delete_not_idempotent,
    v1_authtoken_optional,
    v1_body_sign_reserialised,
    v1_plus_decoded_as_space,
    v2_missing_timestamp_as_auth_failure,
    v2_signature_ignored,
    v2_signature_optional,
    v2_timestamp_unchecked,
)
from .base import Mutant

GALLERY: list[Mutant] = [
    module.MUTANT
    for module in (
        # security (protocol.md §2-§5)
        v2_signature_ignored,
        v2_signature_optional,
        canonical_body_ascii_escaped,
        canonical_body_keeps_nulls,
        v2_timestamp_unchecked,
        v2_missing_timestamp_as_auth_failure,
        v1_authtoken_optional,
        v1_plus_decoded_as_space,
        v1_body_sign_reserialised,
        sync_signature_unchecked,
        sync_timestamp_unchecked,
        plaintext_password,
        encrypt_type_mismatch,
        # lifecycle (§6-§7)
        released_still_listed,
        trial_conversion_refused,
        expiry_only_forward,
        debug_order_without_instance,
        unknown_instance_crash,
        unknown_activity_success,
        query_single_id,
        unfreeze_after_release,
        license_unknown_refreshed,
        # idempotency (§7-§8)
        new_instance_per_resend,
        check_then_insert_race,
        order_line_ignored,
        renewal_resend_rejected,
        freeze_resend_rejected,
        upgrade_resend_rejected,
        release_resend_not_found,
        license_per_resend,
        user_add_not_idempotent,
        user_delete_not_idempotent,
        # sync (§8)
        root_org_refused,
        application_secret_swallowed,
        # contract and timing (§6, §9, §10)
        auth_failure_http_401,
        html_content_type,
        numeric_result_code,
        missing_result_msg,
        long_instance_id,
        slow_provisioning,
    )
]

__all__ = ["GALLERY", "Mutant"]
