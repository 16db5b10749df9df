"""The message catalogue (DESIGN §2): every routing key, its kind, its producer and its payload schema.

Incoming payloads are checked against it before any handler runs. Unknown fields are ignored; a missing or
ill-typed required field is a permanent error naming the field.

It is also the one source of the published contracts: each field check carries the JSON Schema that says the
same thing (`field_schema`), from which `messaging.contracts` builds the JSON Schema catalogue and the AsyncAPI
document. A check without a schema fails their tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.signals import setting_changed

from messaging.errors import InvalidPayloadError, UnknownMessageTypeError

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 64

Check = Callable[[Any], "str | None"]

# Each check's JSON Schema, filled by @_described beside the check itself.
_FIELD_SCHEMAS: dict[Check, dict[str, Any]] = {}

# Each schema's `title` is the field's type as the docs name it.
UUID_SCHEMA: dict[str, Any] = {
    "title": "uuid",
    "description": "a UUID in its 8-4-4-4-12 hexadecimal form",
    "type": "string",
    "format": "uuid",
}
IDENTIFIER_SCHEMA: dict[str, Any] = {
    "title": "id",
    "description": f"1 to {MAX_ID_LENGTH} characters",
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
}
# The decimal literals producers write ("20.00", "0.5", "1E+2"). Python's Decimal, which the check uses, also
# reads a few the schema leaves out (spaces around, "_" between digits, "-0"): the schema is the stricter.
MONEY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["sku", "quantity"],
    "properties": {"sku": IDENTIFIER_SCHEMA, "quantity": {"type": "integer", "minimum": 1}},
}


def _described(schema: dict[str, Any]) -> Callable[[Check], Check]:
    """Record the JSON Schema that documents a check; the check itself stays a plain function on the hot path."""

    def record(check: Check) -> Check:
        _FIELD_SCHEMAS[check] = schema
        return check

    return record


def field_schema(check: Check) -> dict[str, Any]:
    """The JSON Schema of a field check. Raises LookupError for a check that was never described."""
    try:
        return _FIELD_SCHEMAS[check]
    except KeyError:
        raise LookupError(f"the field check {getattr(check, '__name__', check)!r} has no JSON Schema") from None


@_described(UUID_SCHEMA)
def _uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a UUID string"
    try:
        uuid.UUID(value)
    except ValueError:
        return "must be a UUID string"
    return None


@_described({"title": "text", "description": "1 to 255 characters", "type": "string", "minLength": 1, "maxLength": 255})
def _short_text(value: Any) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        return "must be a non-empty string of at most 255 characters"
    return None


@_described(IDENTIFIER_SCHEMA)
def _identifier(value: Any) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be a string of 1 to {MAX_ID_LENGTH} characters"
    return None


@_described(
    {
        "title": "decimal",
        "description": 'a non-negative decimal in a string, never a JSON number: "20.00"',
        "type": "string",
        "pattern": MONEY_PATTERN,
    }
)
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


@_described({**UUID_SCHEMA, "title": "uuid or null", "description": "a uuid, or null", "type": ["string", "null"]})
def _optional_uuid(value: Any) -> str | None:
    return None if value is None else _uuid(value)


@_described(
    {
        "title": "items",
        "description": "one or more {sku, quantity}: sku an id, quantity a positive integer",
        "type": "array",
        "minItems": 1,
        "items": ITEM_SCHEMA,
    }
)
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


@_described({"title": "items or []", "description": "items, or none at all", "type": "array", "items": ITEM_SCHEMA})
def _optional_items(value: Any) -> str | None:
    return None if value == [] else _items(value)


@dataclass(frozen=True)
class MessageType:
    routing_key: str
    kind: str  # "command" or "event"
    fields: dict[str, Check]
    producer: str = ""  # the context that publishes it
    summary: str = ""  # what it means, in one sentence


_CATALOGUE = [
    MessageType(
        "order.created",
        "event",
        {"order_id": _uuid, "customer_id": _identifier, "items": _items, "total": _money, "currency": _short_text},
        producer="orders",
        summary="An order was placed; its saga starts in the same transaction.",
    ),
    MessageType(
        "payment.process",
        "command",
        {"order_id": _uuid, "customer_id": _identifier, "amount": _money, "currency": _short_text},
        producer="saga",
        summary="Charge the customer's account for the order.",
    ),
    MessageType(
        "payment.processed",
        "event",
        {"order_id": _uuid, "payment_id": _uuid, "amount": _money},
        producer="payments",
        summary="The charge succeeded.",
    ),
    MessageType(
        "payment.failed",
        "event",
        {"order_id": _uuid, "reason": _short_text, "code": _short_text},
        producer="payments",
        summary="The charge was refused; `code` says why, `reason` in words.",
    ),
    MessageType(
        "payment.refund",
        "command",
        {"order_id": _uuid, "reason": _short_text},
        producer="saga",
        summary="Refund the order's charge, if any; refuse any later charge for it.",
    ),
    MessageType(
        "payment.refunded",
        "event",
        {"order_id": _uuid, "payment_id": _optional_uuid, "amount": _money},
        producer="payments",
        summary="Nothing of the order stays charged (`payment_id` null: there was no charge to give back).",
    ),
    MessageType(
        "inventory.reserve",
        "command",
        {"order_id": _uuid, "items": _items},
        producer="saga",
        summary="Reserve the order's items.",
    ),
    MessageType(
        "inventory.reserved",
        "event",
        {"order_id": _uuid, "reservation_id": _uuid, "items": _items},
        producer="inventory",
        summary="Every item is reserved.",
    ),
    MessageType(
        "inventory.reservation_failed",
        "event",
        {"order_id": _uuid, "reason": _short_text, "code": _short_text, "items": _items},
        producer="inventory",
        summary="The items could not be reserved; `code` says why.",
    ),
    MessageType(
        "inventory.release",
        "command",
        {"order_id": _uuid, "reason": _short_text},
        producer="saga",
        summary="Give back the stock held for the order; refuse any later reservation.",
    ),
    MessageType(
        "inventory.released",
        "event",
        {"order_id": _uuid, "items": _optional_items},
        producer="inventory",
        summary="The stock held for the order was given back; `items` says what.",
    ),
    MessageType(
        "order.completed",
        "event",
        {"order_id": _uuid},
        producer="saga",
        summary="The order is paid and its items reserved.",
    ),
    MessageType(
        "order.failed",
        "event",
        {"order_id": _uuid, "reason": _short_text},
        producer="saga",
        summary="The order failed or was cancelled, after any compensation.",
    ),
]

# The field checks, by the name their schemas give their type, for the message types an app adds.
FIELD_CHECKS: dict[str, Check] = {
    "uuid": _uuid,
    "text": _short_text,
    "id": _identifier,
    "decimal": _money,
    "items": _items,
}

# Every message type known: the product's above, and those the installed apps add (`discover`).
CATALOGUE: dict[str, MessageType] = {m.routing_key: m for m in _CATALOGUE}


def register(*message_types: MessageType) -> None:
    """Add message types to the catalogue: their payloads are validated and published as the product's are.
    Raises ValueError for a routing key the catalogue has with another definition; the same one is a no-op."""
    for message_type in message_types:
        known = CATALOGUE.setdefault(message_type.routing_key, message_type)
        if known != message_type:
            raise ValueError(f"{message_type.routing_key} is in the message catalogue already, defined otherwise")


def discover() -> None:
    """Make the catalogue the product's message types and those each installed app adds: what its AppConfig's
    `message_types()` returns. Run once the apps are ready, and again when a test changes INSTALLED_APPS (in
    place: `CATALOGUE` is imported by name)."""
    from django.apps import apps

    CATALOGUE.clear()
    register(*_CATALOGUE)
    for app in apps.get_app_configs():
        given = getattr(app, "message_types", None)
        if given is not None:
            register(*given())


def _installed_apps_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "INSTALLED_APPS":
        discover()


setting_changed.connect(_installed_apps_changed, dispatch_uid="messaging.catalogue.discover")


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
