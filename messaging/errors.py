"""How a failure to handle a message is classed: retry it later, or dead-letter it now."""

from __future__ import annotations

from django.db import DatabaseError, InterfaceError, OperationalError


class PermanentMessageError(Exception):
    """Handling can never succeed: the message goes to the dead letters at once, with `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class UndecodableBodyError(PermanentMessageError):
    def __init__(self, detail: str):
        super().__init__("undecodable_body", detail)


class InvalidEnvelopeError(PermanentMessageError):
    """An AMQP property the consumer relies on is missing or unusable (the message_id, the type)."""

    def __init__(self, detail: str):
        super().__init__("invalid_envelope", detail)


class UnknownMessageTypeError(PermanentMessageError):
    def __init__(self, routing_key: str):
        super().__init__("unknown_type", f"no handler for {routing_key!r} here")


class InvalidPayloadError(PermanentMessageError):
    def __init__(self, field: str, problem: str):
        super().__init__("invalid_payload", f"{field}: {problem}")
        self.field = field


class TransientMessageError(Exception):
    """Handling may succeed later (a lock, a connection): retried with backoff."""


def is_transient(error: BaseException) -> bool:
    """Database outages, lock timeouts and deadlocks pass; everything else unexpected does not."""
    if isinstance(error, (TransientMessageError, OperationalError, InterfaceError)):
        return True
    if isinstance(error, DatabaseError):
        # Serialization failures and deadlocks (PostgreSQL SQLSTATE 40001 / 40P01) pass on retry.
        sqlstate = getattr(getattr(error, "__cause__", None), "sqlstate", None)
        return sqlstate in {"40001", "40P01", "55P03", "57014"}
    return isinstance(error, (ConnectionError, TimeoutError))
