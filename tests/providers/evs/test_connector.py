"""EVS errors fall in the three error classes, with the causes the loop acts on."""

from __future__ import annotations

import pytest

from cloudsnap.evs.errors import EVSAPIError, EVSConnectionError, EVSTimeoutError
from cloudsnap.providers.evs.connector import classify
from cloudsnap.runtime.failures import Cause, Kind


@pytest.mark.parametrize(
    ("error", "operation", "kind"),
    [
        (EVSAPIError("boom", status_code=500, code="EVS.5500", retryable=True), "create", "t"),
        (EVSAPIError("slow", status_code=429, code="APIG.0308", retryable=True), "list", "t"),
        (EVSTimeoutError("no answer", retryable=True), "create", "t"),
        (EVSConnectionError("reset", retryable=True), "show", "t"),
        (EVSAPIError("bad id", status_code=400, code="EVS.1002"), "create", "i"),
        (EVSAPIError("bad body", status_code=400, code="EVS.1013"), "create", "i"),
        (EVSAPIError("malformed", status_code=400, code="EVS.5400"), "create", "i"),
        (EVSAPIError("no disk", status_code=404, code="EVS.5404"), "create", "b"),
        (EVSAPIError("quota", status_code=413, code="EVS.5413"), "create", "b"),
        (EVSAPIError("signature", status_code=401, code="APIG.0301"), "list", "b"),
        (EVSAPIError("forbidden", status_code=403, code="EVS.5403"), "create", "b"),
        (
            EVSAPIError(
                "Invalid volume: Volume v status must be available, but current status is: in-use.",
                status_code=400,
                code="EVS.5400",
            ),
            "create",
            "b",
        ),
        # A change of a snapshot refused for its state is retried; one refused for what the
        # request says is not (docs/evs.md, "Refusals").
        (EVSAPIError("status", status_code=400, code="EVS.1047"), "delete", "b"),
        (EVSAPIError("a valid status", status_code=400, code="EVS.5400"), "delete", "b"),
        (EVSAPIError("conflict", status_code=409, code="EVS.0409"), "delete", "b"),
        (EVSAPIError("invalid snapshot_id!", status_code=400, code="EVS.2045"), "delete", "i"),
        (EVSAPIError("locked", status_code=400, code="EVS.2068", retryable=True), "delete", "t"),
        (EVSAPIError("busy", status_code=400, code="EVS.2043"), "update", "b"),
        (EVSAPIError("sdrs", status_code=400, code="EVS.2089"), "update", "b"),
        (EVSAPIError("Invalid snapshot: x busy", status_code=400, code="EVS.5400"), "update", "b"),
        (EVSAPIError("name too long", status_code=400, code="EVS.5400"), "update", "i"),
        (EVSAPIError("bad body", status_code=400, code="EVS.1052"), "update", "i"),
        (EVSAPIError("conflict", status_code=409, code="EVS.0409"), "create", "i"),
    ],
)
def test_errors_fall_in_the_three_classes(error: EVSAPIError, operation: str, kind: str) -> None:
    expected = {"t": Kind.TRANSIENT, "i": Kind.INVALID, "b": Kind.BLOCKED}[kind]
    failure = classify(error, operation)
    assert failure.kind is expected
    assert failure.retryable is (expected is Kind.TRANSIENT)
    assert failure.code == (error.code or failure.code)
    refused = expected is Kind.BLOCKED and operation in ("update", "delete")
    assert (failure.cause is Cause.REFUSED) is refused
    assert failure.message.endswith(f"EVS says: {error.message}" if refused else error.message)
