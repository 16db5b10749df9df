"""Reads of the orders context."""

from __future__ import annotations

from django.db.models import QuerySet

from orders import queries
from orders.models import Order
from orders.queries import OrderView


def order_get(*, order_id: str) -> Order | None:
    return Order.objects.prefetch_related("lines").filter(id=order_id).first()


def order_list(*, status: str | None = None, customer_id: str | None = None) -> QuerySet[Order]:
    orders = Order.objects.prefetch_related("lines").order_by("-created_at", "id")
    if status:
        orders = orders.filter(status=status)
    if customer_id:
        orders = orders.filter(customer_id=customer_id)
    return orders


def order_view(*, order_id: str) -> OrderView | None:
    """The order's status page: the order, its lines and its saga's timeline, as plain values. The status read
    is the API's most frequent request (every waiting client asks it again and again): no ORM query is built
    for it, and no model is instantiated (orders/queries.py)."""
    return queries.order_status_page(order_id)


def orders_ended(*, order_ids: list[str]) -> set[str]:
    """Which of `order_ids` have ended (any status but PENDING)."""
    ended: set[str] = set()
    for start in range(0, len(order_ids), 500):  # SQLite's limit on a statement's parameters, with room
        chunk = order_ids[start : start + 500]
        found = Order.objects.filter(id__in=chunk).exclude(status=Order.Status.PENDING).values_list("id", flat=True)
        ended.update(str(order_id) for order_id in found)
    return ended
