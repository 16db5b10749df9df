"""The envelope of a message (DESIGN §2): ids and context around the payload, decoded from the wire.

The wire form itself is written by `OutboxMessage.wire_properties()` and `wire_headers()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from messaging.catalogue import SCHEMA_VERSION
from messaging.errors import UndecodableBodyError

ATTEMPT_HEADER = "x-attempt"


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
    """Build an envelope from what came off the wire; raise UndecodableBodyError when the body is not JSON."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UndecodableBodyError(f"body is not UTF-8: {error}") from None
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise UndecodableBodyError(f"body is not JSON: {error}") from None
    message_id = properties.get("message_id")
    if not message_id or not isinstance(message_id, str):
        raise UndecodableBodyError("message has no message_id property")
    headers = dict(headers or {})
    attempt = max(1, _int_or(headers.get(ATTEMPT_HEADER), 1))
    return Envelope(
        message_id=message_id,
        routing_key=properties.get("type") or routing_key,
        payload=payload,
        correlation_id=str(properties.get("correlation_id") or ""),
        causation_id=str(headers.get("causation_id") or ""),
        order_id=str(headers.get("order_id") or ""),
        version=_int_or(headers.get("version"), SCHEMA_VERSION),
        attempt=attempt,
        headers={k: v for k, v in headers.items() if k not in {"causation_id", "order_id", "version", ATTEMPT_HEADER}},
    )


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
