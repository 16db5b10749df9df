"""The correlation context: which request or message the current code is working for.

The HTTP middleware and the consumers set it; `outbox.publish()` stamps it on every message, and the log
filter adds it to every log line, in every process.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Callable, Iterator

from django.http import HttpRequest, HttpResponse

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


def new_id() -> str:
    return str(uuid.uuid4())


class CorrelationIdMiddleware:
    """Reads `x-correlation-id` (or makes one), binds it for the request and echoes it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(CORRELATION_HEADER, "")
        value = incoming if _VALID_ID.match(incoming) else new_id()
        with bound(correlation_id=value, causation_id=None, message_id=None, order_id=None, saga_state=None):
            response = self.get_response(request)
        response[CORRELATION_HEADER] = value
        return response


class LogContextFilter(logging.Filter):
    """Adds the context fields to each record; JSON logs carry only the ones that are known."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS.items():
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True
