"""The saga's consumer: every participant reply goes to the table."""

from __future__ import annotations

from messaging.bus import Handler, compensation
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


@compensation
def handle_compensation_reply(message: Envelope) -> None:
    """A reply that ends an undo (a refund done): it goes before the replies of new work, as its command did."""
    handle_reply(message)


def handlers(definition: SagaDefinition) -> dict[str, Handler]:
    """What the saga's consumer handles: every success, failure and compensation reply of every step."""
    return {
        reply: handle_compensation_reply if reply in definition.compensation_replies else handle_reply
        for reply in definition.replies
    }
