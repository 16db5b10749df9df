"""The warehouse's consumer: one handler per command, each calling one service."""

from __future__ import annotations

from messaging.envelope import Envelope
from tests.participants.shipping import services


def handle_pack(message: Envelope) -> None:
    services.parcel_pack(order_id=message.payload["order_id"])


def handle_unpack(message: Envelope) -> None:
    services.parcel_unpack(order_id=message.payload["order_id"])


def handle_dispatch(message: Envelope) -> None:
    services.shipment_dispatch(order_id=message.payload["order_id"], customer_id=message.payload["customer_id"])


def handle_cancel(message: Envelope) -> None:
    services.shipment_cancel(order_id=message.payload["order_id"])


HANDLERS = {
    "packing.pack": handle_pack,
    "packing.unpack": handle_unpack,
    "shipping.dispatch": handle_dispatch,
    "shipping.cancel": handle_cancel,
}
