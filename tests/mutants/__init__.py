"""The faulty-merchant gallery: the reference merchant with one realistic defect each.

Each module builds one mutant (``build(config) -> Flask``), explains the defect in its
docstring (what goes wrong, why sellers write it, how the reference merchant avoids it) and
names in ``MUTANT`` the check that must catch it. ``tests/test_gallery.py`` runs every one;
``docs/mutants.md`` is the table of contents.
"""

from __future__ import annotations

from . import (
    answers_in_six_seconds,
    application_secret_swallowed,
    auth_failure_http_401,
    canonical_body_ascii_escaped,
    canonical_body_keeps_nulls,
    check_then_insert_race,
    client_secret_pkcs1_only,
    debug_order_without_instance,
    encrypt_type_mismatch,
    expiry_only_forward,
    freeze_resend_rejected,
    handles_only_upgrade,
    html_content_type,
    instance_per_order_only,
    kit_refuses_integer_flags,
    license_customer_id_64,
    license_per_resend,
    license_unknown_refreshed,
    long_instance_id,
    lowercase_body_sign,
    new_instance_busy_at_first,
    new_instance_per_resend,
    no_front_end_url,
    numeric_result_code,
    order_line_ignored,
    pending_forever,
    plaintext_password,
    product_instance_per_resend,
    query_order_signed_wrongly,
    query_single_id,
    reads_order_from_new_instance,
    recall_changes_instance_id,
    release_resend_not_found,
    released_still_listed,
    renewal_by_order_id,
    renewal_resend_rejected,
    result_msg_too_long,
    root_org_refused,
    slow_provisioning,
    sync_signature_unchecked,
    sync_timestamp_unchecked,
    trial_conversion_refused,
    unfreeze_after_release,
    unknown_activity_success,
    unknown_instance_crash,
    upgrade_resend_rejected,
    usage_for_unknown_instance,
    user_add_not_idempotent,
    user_delete_not_idempotent,
    v1_authtoken_optional,
    v1_body_sign_reserialised,
    v1_demands_order_line_id,
    v1_plus_decoded_as_space,
    v1_without_expire_instance,
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
        license_customer_id_64,
        new_instance_busy_at_first,
        # idempotency (§7-§8)
        new_instance_per_resend,
        check_then_insert_race,
        order_line_ignored,
        renewal_resend_rejected,
        freeze_resend_rejected,
        upgrade_resend_rejected,
        release_resend_not_found,
        license_per_resend,
        instance_per_order_only,
        product_instance_per_resend,
        user_add_not_idempotent,
        user_delete_not_idempotent,
        # sync (§8)
        root_org_refused,
        application_secret_swallowed,
        # contract and timing (§6, §9, §10)
        auth_failure_http_401,
        html_content_type,
        numeric_result_code,
        result_msg_too_long,
        long_instance_id,
        slow_provisioning,
        # the published rules (issue 17: docs/protocol.md §2-§7)
        reads_order_from_new_instance,
        handles_only_upgrade,
        renewal_by_order_id,
        no_front_end_url,
        v1_demands_order_line_id,
        v1_without_expire_instance,
        kit_refuses_integer_flags,
        client_secret_pkcs1_only,
        answers_in_six_seconds,
        lowercase_body_sign,
        # the conversation (issue 16: docs/protocol.md §4.1-c, §5.1, §8, §10.2)
        pending_forever,
        recall_changes_instance_id,
        query_order_signed_wrongly,
        usage_for_unknown_instance,
    )
]

__all__ = ["GALLERY", "Mutant"]
