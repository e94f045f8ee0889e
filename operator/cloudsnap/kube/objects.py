"""Small readers of the API server's answers shared by the adapters."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


def api_message(exc: ApiException) -> str:
    """The API server's own message in a refusal (e.g. which user may not list what)."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def json_pointer(key: str) -> str:
    """A map key as one JSON-pointer segment (RFC 6901: ~ and / escaped)."""
    return key.replace("~", "~0").replace("/", "~1")
