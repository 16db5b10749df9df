"""The saga's consumer: every participant reply goes to the table."""

from __future__ import annotations

from messaging.bus import Handler
from messaging.envelope import Envelope
from saga.definition import SagaDefinition
from saga.services import saga_handle_reply


def handle_reply(message: Envelope) -> None:
    saga_handle_reply(
        order_id=message.payload["order_id"],
        message_type=message.routing_key,
        message_id=message.message_id,
        payload=message.payload,
    )


def handlers(definition: SagaDefinition) -> dict[str, Handler]:
    """What the saga's consumer handles: every success, failure and compensation reply of every step."""
    return dict.fromkeys(definition.replies, handle_reply)
