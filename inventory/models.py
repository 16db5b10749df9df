"""Products with their stock, the reservations held for orders, and every movement of stock."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q


class Product(models.Model):
    sku = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    on_hand = models.PositiveIntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(reserved__lte=F("on_hand")), name="product_available_not_negative"),
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_not_negative"),
        ]

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def __str__(self) -> str:
        return self.sku


class StockMovement(models.Model):
    """Every change of `on_hand`: the opening stock, restocks, goods taken for an order (COMMIT) and goods
    given back when that order failed (RETURN)."""

    class Kind(models.TextChoices):
        INITIAL = "INITIAL"
        RESTOCK = "RESTOCK"
        COMMIT = "COMMIT"
        RETURN = "RETURN"

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.PositiveIntegerField()
    order_id = models.UUIDField(null=True, blank=True, db_index=True)
    at = models.DateTimeField(auto_now_add=True)


class Reservation(models.Model):
    """Stock taken for one order. One per order: a RELEASED or REJECTED one refuses a later reservation.

    COMMITTED: the goods have left `on_hand` for the order; a release gives them back. ACTIVE: held in
    `reserved` but not taken, as versions before 2026-12 reserved; migration 0002 took those.
    """

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        COMMITTED = "COMMITTED"
        RELEASED = "RELEASED"
        REJECTED = "REJECTED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order_id = models.UUIDField(unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"reservation {self.order_id} {self.status}"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reservation_lines")
    quantity = models.PositiveIntegerField()
