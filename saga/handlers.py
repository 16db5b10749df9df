"""The saga's consumer: every participant reply goes to the table."""

from __future__ import annotations

from messaging.envelope import Envelope
from saga import transitions as t
from saga.services import saga_handle_reply


def handle_reply(message: Envelope) -> None:
    saga_handle_reply(order_id=message.payload["order_id"], message_type=message.routing_key,
                      message_id=message.message_id, payload=message.payload)


HANDLERS = {
    t.PAYMENT_PROCESSED: handle_reply,
    t.PAYMENT_FAILED: handle_reply,
    t.PAYMENT_REFUNDED: handle_reply,
    t.INVENTORY_RESERVED: handle_reply,
    t.INVENTORY_RESERVATION_FAILED: handle_reply,
}
