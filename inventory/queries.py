"""The written-out statements of the inventory context: those every order runs (config/kernel/sql.py says why
they skip the ORM's building, and how they keep its meaning)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from config.kernel import sql
from inventory.models import Product, Reservation, ReservationLine


def reservation_of(order_id: str) -> Reservation | None:
    """The order's reservation (its id, status and reason), or None when nothing was asked for it yet."""
    found = sql.select_one(
        Reservation, ["id", "status", "reason"], "order_id = %s", [sql.adapt(Reservation, "order_id", order_id)]
    )
    return None if found is None else sql.loaded(Reservation, order_id=order_id, **found)


def reservation_lines(reservation_id: uuid.UUID) -> list[dict[str, Any]]:
    """The reservation's lines, `{"sku", "quantity"}`, by sku."""
    lines = sql.select(
        ReservationLine,
        ["product_id", "quantity"],
        "reservation_id = %s ORDER BY product_id",
        [sql.adapt(ReservationLine, "reservation_id", reservation_id)],
    )
    return [{"sku": line["product_id"], "quantity": line["quantity"]} for line in lines]


def stock_take(sku: str, quantity: int) -> bool:
    """Take `quantity` of the sku out of `on_hand` if that much is available; False (nothing changed) when it
    is not, or when there is no such sku. The guard is re-checked under the row lock: available stock never
    goes negative."""
    return bool(sql.execute(_TAKE, [quantity, sku, quantity]))


def stock_give_back(sku: str, quantity: int) -> None:
    """Goods taken for an order that failed come back: `quantity` onto the stock on hand."""
    sql.execute(_GIVE_BACK, [quantity, sku])


def catalogue_prices(skus: list[str]) -> dict[str, Decimal]:
    """The price of each of `skus` that is in the catalogue."""
    rows = sql.select(Product, ["sku", "price"], f"sku IN ({sql.placeholders(skus)})", skus) if skus else []
    return {row["sku"]: row["price"] for row in rows}


_PRODUCT = sql.table(Product)
_TAKE = f"UPDATE {_PRODUCT} SET on_hand = on_hand - %s WHERE sku = %s AND on_hand - reserved >= %s"
_GIVE_BACK = f"UPDATE {_PRODUCT} SET on_hand = on_hand + %s WHERE sku = %s"
