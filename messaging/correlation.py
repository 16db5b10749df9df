"""The correlation context: which request or message the current code is working for.

The HTTP middleware and the consumers set it; `outbox.publish()` stamps it on every message, and the log
filter adds it to every log line, in every process.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

from config.kernel.modes import EitherMode

CORRELATION_HEADER = "x-correlation-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)
message_id: ContextVar[str | None] = ContextVar("message_id", default=None)
order_id: ContextVar[str | None] = ContextVar("order_id", default=None)
saga_state: ContextVar[str | None] = ContextVar("saga_state", default=None)

_FIELDS = {
    "correlation_id": correlation_id,
    "causation_id": causation_id,
    "message_id": message_id,
    "order_id": order_id,
    "saga_state": saga_state,
}


@contextlib.contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Set context fields for the duration of a block (a request or one message's handling)."""
    tokens = [(_FIELDS[name], _FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def snapshot() -> dict[str, str | None]:
    """The context fields as they are now: `bound(**snapshot())` restores them later, e.g. on commit."""
    return {name: var.get() for name, var in _FIELDS.items()}


def new_id() -> str:
    return str(uuid.uuid4())


MAX_ID_LENGTH = 128  # the outbox's correlation_id and causation_id columns; well inside AMQP's 255 bytes
_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def printable(value: Any) -> str:
    """`value` as text that stays on one log line: whatever is not printable (newlines, control and format
    characters, lone surrogates) is backslash-escaped; bytes that are not UTF-8 are escaped too."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else _text_of(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def clean_id(value: Any, *, limit: int = MAX_ID_LENGTH) -> str:
    """An id from outside (an AMQP property or header) made safe where it enters: printable ASCII only, the
    rest escaped, at most `limit` characters, so that it can neither forge a log line nor overflow a column
    or an AMQP property when it is copied onto the messages it causes. None and "" give ""."""
    if value is None:
        return ""
    text = printable(value).encode("ascii", "backslashreplace").decode("ascii")
    return text[:limit]


def _text_of(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a value too deep or too odd for str() is named by its type
        return f"<{type(value).__name__}>"


def _escaped(char: str) -> str:
    code = ord(char)
    if code in _ESCAPES:
        return _ESCAPES[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class CorrelationIdMiddleware(EitherMode):
    """Reads `x-correlation-id` (or makes one), binds it for the request and echoes it in the response; called
    under WSGI, awaited under ASGI (config/kernel/middleware.py says why)."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._awaited(request)
        value = self.correlation_of(request)
        with bound(correlation_id=value, causation_id=None, message_id=None, order_id=None, saga_state=None):
            response = self.get_response(request)
        response[CORRELATION_HEADER] = value
        return response

    async def _awaited(self, request: HttpRequest) -> HttpResponse:
        value = self.correlation_of(request)
        with bound(correlation_id=value, causation_id=None, message_id=None, order_id=None, saga_state=None):
            response = await self.get_response(request)
        response[CORRELATION_HEADER] = value
        return response

    @staticmethod
    def correlation_of(request: HttpRequest) -> str:
        incoming = request.headers.get(CORRELATION_HEADER, "")
        return incoming if _VALID_ID.match(incoming) else new_id()


class LogContextFilter(logging.Filter):
    """Adds the context fields to each record; JSON logs carry only the ones that are known."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS.items():
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True
