"""CloudSnapshotClass spec.allowedNamespaces: names, and a label selector with Kubernetes'
semantics."""

from __future__ import annotations

import pytest

from cloudsnap.api.models import AllowedNamespaces, Selector

LABELS = {"tenant": "a", "tier": "prod"}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({}, True),
        ({"matchLabels": {"tenant": "a"}}, True),
        ({"matchLabels": {"tenant": "b"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["dev"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "tenant", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "tenant", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"tenant": "a"},
                "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}],
            },
            False,
        ),
    ],
)
def test_selector_semantics(selector: dict[str, object], selected: bool) -> None:
    assert Selector.model_validate(selector).matches(LABELS) is selected


def test_names_or_selector_admit() -> None:
    allowed = AllowedNamespaces.model_validate(
        {"names": ["ops"], "selector": {"matchLabels": {"tenant": "a"}}}
    )
    assert allowed.admits("ops", None)
    assert allowed.admits("team-a", LABELS)
    assert not allowed.admits("team-b", {"tenant": "b"})
    assert not allowed.admits("gone", None)  # a namespace not known is admitted by name only


def test_empty_allowed_namespaces_admit_none() -> None:
    assert not AllowedNamespaces().admits("default", {})
