"""Shared pytest plugins: each fixture module lives in tests/fixtures/."""

pytest_plugins: list[str] = []
