"""Reads of the inventory context."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from inventory import queries
from inventory.models import Product, Reservation


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("sku")


def product_get(*, sku: str) -> Product | None:
    return Product.objects.filter(sku=sku).first()


def product_prices(*, skus: list[str]) -> dict[str, Decimal]:
    """The catalogue price of each known sku; unknown skus are absent."""
    # Written out: every order placed asks it.
    return queries.catalogue_prices(skus)


def orders_holding_stock(order_id: str | None = None) -> QuerySet:
    """The ids of the orders that still have stock taken or held for them (`order_id`: that order, if it
    does): for the saga's sweep, which asks again a failed order's release that was lost."""
    held = Reservation.objects.filter(status__in=[Reservation.Status.COMMITTED, Reservation.Status.ACTIVE])
    if order_id is not None:
        held = held.filter(order_id=order_id)
    return held.values("order_id")
