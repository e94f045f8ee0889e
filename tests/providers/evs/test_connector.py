"""EVS errors fall in the three error classes, with the causes the loop acts on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudsnap.evs.errors import EVSAPIError, EVSConnectionError, EVSError, EVSTimeoutError
from cloudsnap.providers.evs.connector import classify
from cloudsnap.runtime.failures import Cause, Kind


def _error(case: dict[str, Any]) -> EVSError:
    """The error a case of data/errors.yaml describes: EVS's answer, a timeout or a cut call."""
    retryable = case.get("retryable", False)
    if "timeout" in case:
        return EVSTimeoutError(case["timeout"], retryable=retryable)
    if "connection" in case:
        return EVSConnectionError(case["connection"], retryable=retryable)
    return EVSAPIError(
        case["message"], status_code=case["status"], code=case["code"], retryable=retryable
    )


def _cases() -> list[Any]:
    """data/errors.yaml as (error, operation, kind), with ids saying the call and the class."""
    params = []
    for case in yaml.safe_load((Path(__file__).parent / "data" / "errors.yaml").read_text()):
        error, operation = _error(case), case["operation"]
        name = f"{operation}-{error.code or type(error).__name__}-{case['kind']}"
        params.append(pytest.param(error, operation, Kind(case["kind"]), id=name))
    return params


@pytest.mark.parametrize(("error", "operation", "expected"), _cases())
def test_errors_fall_in_the_three_classes(error: EVSError, operation: str, expected: Kind) -> None:
    failure = classify(error, operation)
    assert failure.kind is expected
    assert failure.retryable is (expected is Kind.TRANSIENT)
    assert failure.code == (error.code or failure.code)
    refused = expected is Kind.BLOCKED and operation in ("update", "delete")
    assert (failure.cause is Cause.REFUSED) is refused
    assert failure.message.endswith(f"EVS says: {error.message}" if refused else error.message)
