"""Reads of the orders context."""

from __future__ import annotations

from django.db.models import QuerySet

from orders.models import Order


def order_get(*, order_id: str) -> Order | None:
    return Order.objects.prefetch_related("lines").filter(id=order_id).first()


def order_list(*, status: str | None = None, customer_id: str | None = None) -> QuerySet[Order]:
    orders = Order.objects.prefetch_related("lines").order_by("-created_at", "id")
    if status:
        orders = orders.filter(status=status)
    if customer_id:
        orders = orders.filter(customer_id=customer_id)
    return orders
