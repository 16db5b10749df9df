"""What the warehouse did for each order: a parcel packed (or unpacked), a shipment dispatched (or cancelled)."""

from __future__ import annotations

from django.db import models

# Named, so that the tests may import the models while the app is not installed (it is, only while they run).
LABEL = "shipping"


class Parcel(models.Model):
    class Status(models.TextChoices):
        PACKED = "PACKED"
        UNPACKED = "UNPACKED"  # undone, or closed before it was packed: a later packing.pack is refused

    order_id = models.UUIDField(primary_key=True)
    status = models.CharField(max_length=16, choices=Status.choices)

    class Meta:
        app_label = LABEL


class Shipment(models.Model):
    class Status(models.TextChoices):
        DISPATCHED = "DISPATCHED"
        CANCELLED = "CANCELLED"  # called back, or closed before it left: a later shipping.dispatch is refused

    order_id = models.UUIDField(primary_key=True)
    customer_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices)

    class Meta:
        app_label = LABEL


class NoDelivery(models.Model):
    """A customer the carrier does not deliver to: a dispatch for them fails."""

    customer_id = models.CharField(max_length=64, primary_key=True)

    class Meta:
        app_label = LABEL
