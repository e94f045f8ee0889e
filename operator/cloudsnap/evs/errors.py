"""The one exception family every EVS client call raises, and the parsing of EVS error answers.

The operator decides what to do from ``retryable`` and ``code`` alone, so every failure, whatever
came back on the wire (any of EVS's three error shapes, an HTML page from a proxy, half a body, no
answer at all), ends up as one of these with those two attributes filled in as well as possible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

# The API gateway's "over the rate limit": the call never reached EVS.
THROTTLED_CODE = "APIG.0308"
# Codes that name a passing condition even though their HTTP status says "client error".
RETRYABLE_CODES = frozenset({THROTTLED_CODE, "EVS.2068"})
# Messages are shown in status and events: keep them readable and bounded.
MAX_MESSAGE_CHARS = 512
_TAG = re.compile(r"<[^>]*>")
_GATEWAY_KEYS = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))


class EVSError(Exception):
    """Any failure of an EVS call: what happened, and whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.retryable = retryable

    def __str__(self) -> str:
        parts = [self.code or type(self).__name__]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        text = f"{' '.join(parts)}: {self.message}"
        return f"{text} [request {self.request_id}]" if self.request_id else text


class EVSAPIError(EVSError):
    """The server answered with an error status."""

    @property
    def throttled(self) -> bool:
        """The gateway refused the call over its rate limit, before it reached EVS: it did
        nothing, so sending it again is safe whatever it was."""
        return is_throttled(self.status_code or 0, self.code)


class EVSResponseError(EVSError):
    """A success status whose body we could not read; the state on the server is unknown."""


class EVSTimeoutError(EVSError):
    """No complete answer in time; the request may or may not have been applied."""


class EVSConnectionError(EVSError):
    """The request could not be sent or its answer was cut off."""


class EVSNotSent(EVSError):
    """The client's guard kept the request from leaving (this replica may not act now):
    certainly not applied, and worth retrying once the guard allows it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def is_throttled(status_code: int, code: str | None) -> bool:
    """HTTP 429, or the gateway's throttling code in whatever status."""
    return status_code == 429 or code == THROTTLED_CODE


def is_retryable(status_code: int, code: str | None) -> bool:
    """5xx, 429 and the throttled/locked codes pass by themselves; other answers will not change."""
    return status_code >= 500 or status_code == 429 or code in RETRYABLE_CODES


def _text(value: Any) -> str | None:
    """A scalar JSON value as text; containers and null say nothing useful."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _find_error(body: Mapping[str, Any], depth: int = 0) -> tuple[str | None, str | None]:
    """(code, message) from the gateway shape, the ``error`` shape or a keyed/nested one.

    Same search order as the official SDK: known key pairs at this level first, then each nested
    object in turn.
    """
    for code_key, message_key in _GATEWAY_KEYS:
        if code_key in body or message_key in body:
            code, message = _text(body.get(code_key)), _text(body.get(message_key))
            if code or message:
                return code, message
    if depth < 4:
        for value in body.values():
            if isinstance(value, dict):
                code, message = _find_error(value, depth + 1)
                if code or message:
                    return code, message
    return None, None


def summarize_body(body: bytes) -> str:
    """A short printable excerpt of an answer that is not JSON (an HTML page, a truncated body)."""
    text = _TAG.sub(" ", body[:4096].decode("utf-8", errors="replace"))
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:200]


def parse_error(status_code: int, body: bytes) -> tuple[str | None, str, str | None]:
    """(code, message, request id in the body) of an error answer, never raising on any body."""
    request_id: str | None = None
    code: str | None = None
    message: str | None = None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict):
        code, message = _find_error(document)
        request_id = _text(document.get("request_id"))
    if not message:
        try:
            reason = HTTPStatus(status_code).phrase
        except ValueError:
            reason = "Unknown status"
        excerpt = "" if isinstance(document, dict) else summarize_body(body)
        message = f"{reason}: {excerpt}" if excerpt else reason
    return code, message[:MAX_MESSAGE_CHARS], request_id
