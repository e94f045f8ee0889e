"""Texts the operator writes into length-limited fields: cut to fit, never refused for length.

A status field's CRD ``maxLength`` counts characters (code points); the API server refuses a
whole status write with one over-long text in it, and a step whose status write is refused
records nothing. An Event's message is limited to 1024 bytes when the Event is validated the
events.k8s.io way (Kubernetes' pkg/apis/core/validation/events.go, NoteLengthLimit; core/v1
Events with an eventTime too). So every such text goes through `fit_text`, which keeps it within
a limit counted both ways: characters for a CRD field, bytes in UTF-8 for an Event.

Status models declare their text fields as ``Annotated[str, Fitted(limit)]``: the limit is the
CRD's maxLength, and the text is cut when the model is built or assigned to (status models
validate assignments) and again when it is dumped for the write (``model_copy(update=...)``
validates nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

EVENT_MESSAGE_MAX_BYTES = 1024
"""An Event's message, as events.k8s.io validates it (core/v1 Events with an eventTime too)."""
CUT_MARK = "..."
"""Ends a text that was cut, so a reader knows there was more."""


def fit_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters and ``limit`` UTF-8 bytes; otherwise its
    longest head that does with `CUT_MARK` appended (never splitting a character)."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text  # at most as many characters as bytes
    room = max(0, limit - len(CUT_MARK))
    head = encoded[:room].decode(errors="ignore")
    return head + CUT_MARK[: limit - len(head.encode())]


@dataclass(frozen=True)
class Fitted:
    """Metadata of a text field limited to ``limit`` characters (the CRD's maxLength): values
    are cut to fit by `fit_text` when validated and when serialized, never refused."""

    limit: int

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """A string schema with maxLength ``limit`` (so the CRD says it), behind a cut."""
        return core_schema.no_info_before_validator_function(
            self._cut,
            core_schema.str_schema(max_length=self.limit),
            serialization=core_schema.plain_serializer_function_ser_schema(
                self._cut, when_used="always"
            ),
        )

    def _cut(self, value: Any) -> Any:
        return fit_text(value, self.limit) if isinstance(value, str) else value
