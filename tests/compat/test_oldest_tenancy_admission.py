"""The chart's tenancy admission policies (tests/deploy/test_admission.py), every case, against
the oldest supported kube-apiserver: ValidatingAdmissionPolicies with a CloudSnapshotClass as the
param (paramRef by selector), namespaceObject and messageExpression must refuse and admit there
what they do on the pinned release.

The test functions and fixtures are the same objects as in tests/deploy; collected here, they
get this directory's `cluster` and `cloudsnap_crds`.
"""

from __future__ import annotations

from tests.deploy.test_admission import (
    labelled,
    make_class,
    policies,
    test_a_class_not_offered_to_the_namespace_is_refused_at_admission,
    test_objects_made_before_a_class_was_narrowed_can_still_be_written,
    test_restores_by_snapshot_id_follow_their_class_at_admission,
    test_sources_the_class_does_not_allow_are_refused_at_admission,
)

__all__ = [
    "labelled",
    "make_class",
    "policies",
    "test_a_class_not_offered_to_the_namespace_is_refused_at_admission",
    "test_objects_made_before_a_class_was_narrowed_can_still_be_written",
    "test_restores_by_snapshot_id_follow_their_class_at_admission",
    "test_sources_the_class_does_not_allow_are_refused_at_admission",
]
