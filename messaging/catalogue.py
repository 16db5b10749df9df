"""The message catalogue (DESIGN §2): every routing key, its kind and its payload schema.

Incoming payloads are checked against it before any handler runs. Unknown fields are ignored; a missing or
ill-typed required field is a permanent error naming the field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from messaging.errors import InvalidPayloadError, UnknownMessageTypeError

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 64


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a UUID string"
    try:
        uuid.UUID(value)
    except ValueError:
        return "must be a UUID string"
    return None


def _short_text(value: Any) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        return "must be a non-empty string of at most 255 characters"
    return None


def _identifier(value: Any) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be a string of 1 to {MAX_ID_LENGTH} characters"
    return None


def _money(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a decimal string"
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return "must be a decimal string"
    if not amount.is_finite() or amount < 0:
        return "must be a non-negative decimal"
    return None


def _optional_uuid(value: Any) -> str | None:
    return None if value is None else _uuid(value)


def _items(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list"
    for line in value:
        if not isinstance(line, dict) or _identifier(line.get("sku")) is not None:
            return "each item needs a sku"
        quantity = line.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            return "each item needs a positive integer quantity"
    return None


def _optional_items(value: Any) -> str | None:
    return None if value == [] else _items(value)


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class MessageType:
    routing_key: str
    kind: str  # "command" or "event"
    fields: dict[str, Check]


_CATALOGUE = [
    MessageType("order.created", "event", {"order_id": _uuid, "customer_id": _identifier, "items": _items,
                                           "total": _money, "currency": _short_text}),
    MessageType("payment.process", "command", {"order_id": _uuid, "customer_id": _identifier, "amount": _money,
                                               "currency": _short_text}),
    MessageType("payment.processed", "event", {"order_id": _uuid, "payment_id": _uuid, "amount": _money}),
    MessageType("payment.failed", "event", {"order_id": _uuid, "reason": _short_text, "code": _short_text}),
    MessageType("payment.refund", "command", {"order_id": _uuid, "reason": _short_text}),
    MessageType("payment.refunded", "event", {"order_id": _uuid, "payment_id": _optional_uuid, "amount": _money}),
    MessageType("inventory.reserve", "command", {"order_id": _uuid, "items": _items}),
    MessageType("inventory.reserved", "event", {"order_id": _uuid, "reservation_id": _uuid, "items": _items}),
    MessageType("inventory.reservation_failed", "event", {"order_id": _uuid, "reason": _short_text,
                                                          "code": _short_text, "items": _items}),
    MessageType("inventory.release", "command", {"order_id": _uuid, "reason": _short_text}),
    MessageType("inventory.released", "event", {"order_id": _uuid, "items": _optional_items}),
    MessageType("order.completed", "event", {"order_id": _uuid}),
    MessageType("order.failed", "event", {"order_id": _uuid, "reason": _short_text}),
]

CATALOGUE: dict[str, MessageType] = {m.routing_key: m for m in _CATALOGUE}


def validate_payload(routing_key: str, payload: Any) -> dict:
    """Return the payload if it fits the schema of `routing_key`; raise a permanent error naming the field."""
    message_type = CATALOGUE.get(routing_key)
    if message_type is None:
        raise UnknownMessageTypeError(routing_key)
    if not isinstance(payload, dict):
        raise InvalidPayloadError("<body>", "must be a JSON object")
    for field, check in message_type.fields.items():
        if field not in payload:
            raise InvalidPayloadError(field, "is required")
        problem = check(payload[field])
        if problem is not None:
            raise InvalidPayloadError(field, problem)
    return payload
