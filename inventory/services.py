"""Writes of the inventory context: the catalogue, restocks, and reservations for orders."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from config.kernel import sql
from config.kernel.errors import ConflictError, NotFoundError
from inventory import queries
from inventory.models import Product, Reservation, ReservationLine, StockMovement
from messaging.locks import order_lock
from messaging.outbox import publish

logger = logging.getLogger(__name__)


class ProductExistsError(ConflictError):
    code = "product_exists"


class ProductNotFoundError(NotFoundError):
    code = "product_not_found"


class StockLimitError(ConflictError):
    code = "stock_limit_exceeded"


MAX_ON_HAND = 2_147_483_647  # what the on_hand column holds


def product_create(*, sku: str, name: str, price: Decimal, stock: int) -> Product:
    """Add a product with its opening stock. Raises ProductExistsError for a taken sku."""
    try:
        with transaction.atomic(durable=True):
            product = Product.objects.create(sku=sku, name=name, price=price, on_hand=stock)
            if stock:
                StockMovement.objects.create(product=product, kind=StockMovement.Kind.INITIAL, quantity=stock)
    except IntegrityError:
        raise ProductExistsError(f"a product with sku {sku!r} already exists", {"sku": sku}) from None
    return product


def product_restock(*, sku: str, quantity: int) -> Product:
    """Add `quantity` to the stock on hand."""
    with transaction.atomic(durable=True):
        updated = Product.objects.filter(sku=sku, on_hand__lte=MAX_ON_HAND - quantity).update(
            on_hand=F("on_hand") + quantity
        )
        if not updated:
            if not Product.objects.filter(sku=sku).exists():
                raise ProductNotFoundError(f"no product with sku {sku!r}", {"sku": sku})
            raise StockLimitError(f"on_hand of {sku!r} would pass {MAX_ON_HAND}", {"sku": sku, "limit": MAX_ON_HAND})
        StockMovement.objects.create(product_id=sku, kind=StockMovement.Kind.RESTOCK, quantity=quantity)
        return Product.objects.get(sku=sku)


def stock_reserve(*, order_id: str, items: list[dict[str, Any]]) -> Reservation:
    """Reserve every line of an order, or none: the goods leave `on_hand` at once (COMMITTED), and only a
    release gives them back. Must run in a transaction.

    Emits `inventory.reserved` or `inventory.reservation_failed` (code `out_of_stock`, `unknown_sku`, or
    `order_closed` once the order has failed). Idempotent per order: a repeat re-emits the first outcome.
    """
    order_lock("inventory", order_id)
    existing = queries.reservation_of(order_id)
    if existing is not None:
        _announce(existing, items)
        return existing
    wanted = _merge_lines(items)
    failure = _take_stock(wanted)
    if failure:
        reservation = sql.insert(Reservation(order_id=order_id, status=Reservation.Status.REJECTED, reason=failure))
        _announce(reservation, items)
    else:
        reservation = sql.insert(Reservation(order_id=order_id, status=Reservation.Status.COMMITTED))
        for sku, quantity in wanted.items():
            sql.insert(ReservationLine(reservation=reservation, product_id=sku, quantity=quantity))
            sql.insert(
                StockMovement(product_id=sku, kind=StockMovement.Kind.COMMIT, quantity=quantity, order_id=order_id)
            )
        _announce(reservation, items, lines=[{"sku": sku, "quantity": quantity} for sku, quantity in wanted.items()])
    return reservation


def _merge_lines(items: list[dict[str, Any]]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for line in items:
        wanted[line["sku"]] = wanted.get(line["sku"], 0) + int(line["quantity"])
    return dict(sorted(wanted.items()))  # a fixed lock order: no deadlocks between concurrent reservations


def _take_stock(wanted: dict[str, int]) -> str:
    """Take every line out of `on_hand` atomically; return a failure code, or "" when all were taken."""
    if len(wanted) == 1:
        taken = queries.stock_take(*next(iter(wanted.items())))  # one UPDATE: refused, it changed nothing
    else:
        with transaction.atomic():  # a savepoint: the lines taken before a refused one are given back
            taken = all(queries.stock_take(sku, quantity) for sku, quantity in wanted.items())
            if not taken:
                transaction.set_rollback(True)
    if taken:
        return ""
    known = Product.objects.filter(sku__in=wanted).count()
    return "unknown_sku" if known != len(wanted) else "out_of_stock"


def _announce(reservation: Reservation, items: list[dict[str, Any]], lines: list[dict[str, Any]] | None = None) -> None:
    """Emit the outcome of a reservation; `lines` are its lines when the caller has just written them."""
    order_id = str(reservation.order_id)
    if reservation.status in {Reservation.Status.ACTIVE, Reservation.Status.COMMITTED}:
        publish(
            "inventory.reserved",
            {
                "order_id": order_id,
                "reservation_id": str(reservation.id),
                "items": lines if lines is not None else queries.reservation_lines(reservation.id),
            },
        )
        return
    code = reservation.reason or "order_closed"
    if reservation.status == Reservation.Status.RELEASED:
        code = "order_closed"
    publish(
        "inventory.reservation_failed",
        {
            "order_id": order_id,
            "code": code,
            "reason": _FAILURE_TEXT.get(code, code),
            "items": [{"sku": i["sku"], "quantity": int(i["quantity"])} for i in items],
        },
    )


_FAILURE_TEXT = {
    "out_of_stock": "not enough stock for every line of the order",
    "unknown_sku": "a line names a product that is not in the catalogue",
    "order_closed": "the order has already failed; no stock is held for it",
}


def reservation_release(*, order_id: str, reason: str) -> None:
    """The order failed: give back any stock taken for it, and refuse any later reservation.

    Must run in a transaction; idempotent. Emits `inventory.released` when stock was given back.
    """
    order_lock("inventory", order_id)
    reservation = queries.reservation_of(order_id)
    if reservation is None:
        sql.insert(Reservation(order_id=order_id, status=Reservation.Status.RELEASED, reason=reason))
        return
    if reservation.status not in {Reservation.Status.ACTIVE, Reservation.Status.COMMITTED}:
        return
    lines = queries.reservation_lines(reservation.id)
    for line in lines:
        if reservation.status == Reservation.Status.COMMITTED:
            queries.stock_give_back(line["sku"], line["quantity"])
            sql.insert(
                StockMovement(
                    product_id=line["sku"], kind=StockMovement.Kind.RETURN, quantity=line["quantity"], order_id=order_id
                )
            )
        else:  # held by an older version, never taken
            Product.objects.filter(sku=line["sku"]).update(reserved=F("reserved") - line["quantity"])
    reservation.status = Reservation.Status.RELEASED
    reservation.reason = reason
    sql.update(reservation, ["status", "reason"])
    publish("inventory.released", {"order_id": order_id, "items": lines})
