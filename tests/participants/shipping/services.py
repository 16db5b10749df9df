"""The warehouse's writes: each in the handler's transaction, with its reply in the outbox."""

from __future__ import annotations

from messaging.outbox import publish
from tests.participants.shipping.models import NoDelivery, Parcel, Shipment

CLOSED = {"code": "order_closed", "reason": "the order was called back before this could be done"}


def parcel_pack(*, order_id: str) -> None:
    """Pack once; a repeat answers the same. Refused for an order already unpacked."""
    parcel, _ = Parcel.objects.select_for_update().get_or_create(
        order_id=order_id, defaults={"status": Parcel.Status.PACKED}
    )
    if parcel.status == Parcel.Status.UNPACKED:
        publish("packing.failed", {"order_id": order_id, **CLOSED})
    else:
        publish("packing.packed", {"order_id": order_id})


def parcel_unpack(*, order_id: str) -> None:
    """Undo the packing, or close the order before it; answers either way."""
    Parcel.objects.update_or_create(order_id=order_id, defaults={"status": Parcel.Status.UNPACKED})
    publish("packing.unpacked", {"order_id": order_id})


def shipment_dispatch(*, order_id: str, customer_id: str) -> None:
    """Dispatch once; a repeat answers the same. Fails for a customer the carrier does not reach, and is
    refused for an order already cancelled."""
    shipment = Shipment.objects.select_for_update().filter(order_id=order_id).first()
    if shipment is None and NoDelivery.objects.filter(customer_id=customer_id).exists():
        publish(
            "shipping.failed",
            {"order_id": order_id, "code": "undeliverable", "reason": "the carrier does not deliver to this customer"},
        )
        return
    if shipment is None:
        shipment = Shipment.objects.create(
            order_id=order_id, customer_id=customer_id, status=Shipment.Status.DISPATCHED
        )
    if shipment.status == Shipment.Status.CANCELLED:
        publish("shipping.failed", {"order_id": order_id, **CLOSED})
    else:
        publish("shipping.dispatched", {"order_id": order_id})


def shipment_cancel(*, order_id: str) -> None:
    """Call the shipment back, or close the order before it leaves; answers either way."""
    Shipment.objects.update_or_create(order_id=order_id, defaults={"status": Shipment.Status.CANCELLED})
    publish("shipping.cancelled", {"order_id": order_id})
