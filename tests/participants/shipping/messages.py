"""The warehouse's messages, for the catalogue: the saga's commands to it, and its replies."""

from __future__ import annotations

from messaging.catalogue import FIELD_CHECKS, MessageType

UUID, TEXT, ID, ITEMS = (FIELD_CHECKS[name] for name in ("uuid", "text", "id", "items"))
FAILURE = {"order_id": UUID, "code": TEXT, "reason": TEXT}

MESSAGE_TYPES = [
    MessageType(
        "packing.pack",
        "command",
        {"order_id": UUID, "items": ITEMS},
        producer="saga",
        summary="Pack the order's items.",
    ),
    MessageType("packing.packed", "event", {"order_id": UUID}, producer="shipping", summary="The parcel is packed."),
    MessageType(
        "packing.failed",
        "event",
        FAILURE,
        producer="shipping",
        summary="The parcel could not be packed; `code` says why.",
    ),
    MessageType(
        "packing.unpack",
        "command",
        {"order_id": UUID, "reason": TEXT},
        producer="saga",
        summary="Unpack the order's parcel, if any; refuse any later packing for it.",
    ),
    MessageType(
        "packing.unpacked",
        "event",
        {"order_id": UUID},
        producer="shipping",
        summary="Nothing of the order stays packed.",
    ),
    MessageType(
        "shipping.dispatch",
        "command",
        {"order_id": UUID, "customer_id": ID},
        producer="saga",
        summary="Send the order's parcel to the customer.",
    ),
    MessageType("shipping.dispatched", "event", {"order_id": UUID}, producer="shipping", summary="The parcel left."),
    MessageType(
        "shipping.failed",
        "event",
        FAILURE,
        producer="shipping",
        summary="The parcel could not be sent; `code` says why.",
    ),
    MessageType(
        "shipping.cancel",
        "command",
        {"order_id": UUID, "reason": TEXT},
        producer="saga",
        summary="Call the parcel back, if it left; refuse any later dispatch for the order.",
    ),
    MessageType(
        "shipping.cancelled",
        "event",
        {"order_id": UUID},
        producer="shipping",
        summary="Nothing of the order is on its way.",
    ),
]
