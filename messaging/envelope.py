"""The envelope of a message (DESIGN §2): ids and context around the payload, decoded from the wire.

The wire form itself is written by `OutboxMessage.wire_properties()` and `wire_headers()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from messaging.catalogue import SCHEMA_VERSION
from messaging.correlation import clean_id, printable
from messaging.errors import InvalidEnvelopeError, UndecodableBodyError

ATTEMPT_HEADER = "x-attempt"
MAX_MESSAGE_ID_LENGTH = 128  # InboxMessage.message_id and DeadLetter.message_id
MAX_ORDER_ID_LENGTH = 64  # OutboxMessage.order_id
MAX_ATTEMPT = 2**31 - 1  # DeadLetter.attempts


@dataclass(frozen=True)
class Envelope:
    message_id: str
    routing_key: str
    payload: dict[str, Any]
    correlation_id: str = ""
    causation_id: str = ""
    order_id: str = ""
    version: int = SCHEMA_VERSION
    attempt: int = 1
    headers: dict[str, Any] = field(default_factory=dict)


def decode(body: bytes | str, properties: dict[str, Any], headers: dict[str, Any], routing_key: str) -> Envelope:
    """Build an envelope from what came off the wire, whatever it holds.

    Raises a PermanentMessageError (`undecodable_body`, `invalid_envelope`) for what can never be handled,
    and nothing else. The ids copied into logs and onto the messages this one causes are cleaned here
    (`correlation.clean_id`); the payload is checked later, against the catalogue."""
    payload = _payload_of(body)
    message_id = properties.get("message_id")
    if not message_id:
        raise InvalidEnvelopeError("message has no message_id property")
    if not usable_message_id(message_id):
        raise InvalidEnvelopeError(
            f"message_id must be 1 to {MAX_MESSAGE_ID_LENGTH} printable characters, got {printable(message_id)[:200]!r}"
        )
    message_type = properties.get("type") or routing_key
    if not isinstance(message_type, str):
        raise InvalidEnvelopeError(f"type must be text, got {printable(message_type)[:200]!r}")
    headers = dict(headers) if isinstance(headers, dict) else {}
    return Envelope(
        message_id=message_id,
        routing_key=message_type,
        payload=payload,
        correlation_id=clean_id(properties.get("correlation_id")),
        causation_id=clean_id(headers.get("causation_id")),
        order_id=clean_id(headers.get("order_id"), limit=MAX_ORDER_ID_LENGTH),
        version=bounded_int(headers.get("version"), SCHEMA_VERSION),
        attempt=attempt_number(headers.get(ATTEMPT_HEADER)),
        headers={k: v for k, v in headers.items() if k not in {"causation_id", "order_id", "version", ATTEMPT_HEADER}},
    )


def usable_message_id(value: Any) -> bool:
    """Whether `value` can be a message's id as it is: an inbox key, a column value and a log field."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_MESSAGE_ID_LENGTH and value.isprintable()


def attempt_number(value: Any) -> int:
    """The attempt count of a header of any type: 1 unless it is a number, and never beyond MAX_ATTEMPT."""
    return min(max(1, bounded_int(value, 1)), MAX_ATTEMPT)


def bounded_int(value: Any, default: int) -> int:
    """`value` as an int when it is one (or a number, or the text of one) of at most 64 bits, else `default`."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if -(2**63) <= number < 2**63 else default


def _payload_of(body: bytes | str) -> Any:
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    try:
        text = bytes(body).decode("utf-8")
    except (UnicodeDecodeError, TypeError) as error:
        raise UndecodableBodyError(f"body is not UTF-8: {error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise UndecodableBodyError(f"body is not JSON: {error}") from None
    except Exception as error:  # noqa: BLE001 - RecursionError at deep nesting, MemoryError: the body's fault
        raise UndecodableBodyError(f"body is not JSON: {type(error).__name__}: {error}") from None
