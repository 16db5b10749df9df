"""Reads of the inventory context."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from config import sql
from inventory.models import Product


def product_list() -> QuerySet[Product]:
    return Product.objects.order_by("sku")


def product_get(*, sku: str) -> Product | None:
    return Product.objects.filter(sku=sku).first()


def product_prices(*, skus: list[str]) -> dict[str, Decimal]:
    """The catalogue price of each known sku; unknown skus are absent."""
    # Written out: every order placed asks it.
    rows = sql.select(Product, ["sku", "price"], f"sku IN ({sql.placeholders(skus)})", skus) if skus else []
    return {row["sku"]: row["price"] for row in rows}
