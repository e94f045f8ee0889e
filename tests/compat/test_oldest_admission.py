"""The admission tests of tests/api, every accept and refuse case, against the oldest supported
kube-apiserver: the CRDs' schemas and CEL rules (transition rules, `fieldPath`, `reason`,
`bytes()`, `duration()`) must mean the same there as on the pinned release.

The test functions are the same objects as in tests/api; collected here, they get this
directory's `cluster` and `cloudsnap_crds`.
"""

from __future__ import annotations

import pytest

from tests.api.test_admission import (
    test_claim_name_change_is_refused,
    test_class_admission_and_defaults,
    test_class_columns_and_the_category,
    test_explain_describes_the_fields,
    test_immutable_field_change_is_refused,
    test_invalid_manifest_is_refused,
    test_name_and_description_stay_updatable,
    test_printer_columns_and_wait,
    test_snapshot_id_change_is_refused,
    test_status_is_a_subresource_with_its_own_schema,
    test_the_example_is_admitted,
    test_unknown_field_is_refused_with_strict_validation,
    test_valid_manifests_are_accepted_with_defaults,
)
from tests.api.test_schedule_admission import (
    test_columns_and_category,
    test_cron_shapes_are_accepted,
    test_examples_are_accepted,
    test_invalid_schedule_is_refused,
    test_valid_schedule_is_stored_with_defaults,
)

pytestmark = pytest.mark.usefixtures("cloudsnap_crds")

__all__ = [
    "test_claim_name_change_is_refused",
    "test_class_admission_and_defaults",
    "test_class_columns_and_the_category",
    "test_columns_and_category",
    "test_cron_shapes_are_accepted",
    "test_examples_are_accepted",
    "test_explain_describes_the_fields",
    "test_immutable_field_change_is_refused",
    "test_invalid_manifest_is_refused",
    "test_invalid_schedule_is_refused",
    "test_name_and_description_stay_updatable",
    "test_printer_columns_and_wait",
    "test_snapshot_id_change_is_refused",
    "test_status_is_a_subresource_with_its_own_schema",
    "test_the_example_is_admitted",
    "test_unknown_field_is_refused_with_strict_validation",
    "test_valid_manifests_are_accepted_with_defaults",
    "test_valid_schedule_is_stored_with_defaults",
]
