"""Logging set-up: text or JSON lines, one level for us and kopf alike, secrets redacted.

Redaction happens in the formatter, on the final line, so it covers every logger (kopf's and the
HTTP libraries' included), exception tracebacks and values interpolated from any argument. Known
secret values (every value read from a credentials Secret) are replaced verbatim; patterns catch
what looks like a credential even when its value was never registered (signatures, tokens).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
_MIN_SECRET_LENGTH = 6
_PATTERNS = [
    # Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=<hex>
    re.compile(r"(?i)(signature=)[0-9a-f]{16,}"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\n]+"),
    re.compile(r"(?i)(x-(?:auth|security|subject)-token['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"),
    re.compile(
        r"(?i)((?:secret_?key|securityToken|security_token|password)['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
]


class Redactor:
    """Knows the secret values in use and removes them, and credential-like text, from strings."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Remember a secret value, also in base64 as a Secret body carries it; too-short values
        are ignored (they would mangle unrelated text)."""
        if len(value) >= _MIN_SECRET_LENGTH:
            encoded = base64.b64encode(value.encode()).decode()
            with self._lock:
                self._values = self._values | {value, encoded}

    def __call__(self, text: str) -> str:
        """``text`` without any known secret or credential-looking value."""
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text


REDACTOR = Redactor()


class TextFormatter(logging.Formatter):
    """Human-readable lines, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Format as usual, then redact the whole line."""
        return REDACTOR(super().format(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, message, object, exception), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": REDACTOR(record.getMessage()),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["object"] = {k: ref.get(k) for k in ("namespace", "name") if ref.get(k)}
        if record.exc_info:
            entry["exception"] = REDACTOR(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: REDACTOR(str(value)))


def configure(level: str, fmt: str) -> None:
    """Send every logger (ours, kopf's, libraries') to stderr in ``fmt`` at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Per-request chatter of the HTTP stacks is noise even at DEBUG, and the Kubernetes client
    # logs whole response bodies (Secrets included) at DEBUG. kopf's per-object logger says
    # "Handler ... succeeded" for every watch event; our own step log says what was done.
    for noisy in ("httpx", "httpcore", "urllib3", "aiohttp.access", "kubernetes", "kopf.objects"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
