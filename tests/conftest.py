"""Shared pytest plugins: each fixture module lives in tests/fixtures/."""

pytest_plugins: list[str] = [
    "tests.fixtures.simulator",
    "tests.fixtures.cluster",
    "tests.fixtures.crds",
    "tests.fixtures.operator",
    "tests.fixtures.watching",
    "tests.fixtures.reconcile",
]
