"""Small readers of the API server's answers shared by the adapters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


def api_message(exc: ApiException) -> str:
    """The API server's own message in a refusal (e.g. which user may not list what)."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def unless_missing(call: Callable[[], T]) -> T | None:
    """``call()``'s answer, or None where the API server has no such object (404)."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def json_pointer(key: str) -> str:
    """A map key as one JSON-pointer segment (RFC 6901: ~ and / escaped)."""
    return key.replace("~", "~0").replace("/", "~1")
