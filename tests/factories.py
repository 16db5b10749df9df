"""Plain builders for test data. Random identifiers keep tests from sharing data."""

from __future__ import annotations

import uuid
from decimal import Decimal

from inventory.models import Product
from inventory.services import product_create
from payments.models import Account
from payments.services import account_create

# An order id no test creates. Fixed, not drawn at import: a test id made from it must be the same in every
# pytest-xdist worker, which each collect the tests.
UNKNOWN_ORDER = "0f5b7f0e-3c1d-4a6b-9e2f-7d8c9b0a1e2f"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_product(*, stock: int = 10, price: str = "10.00", sku: str | None = None) -> Product:
    return product_create(sku=sku or unique("SKU"), name="Test product", price=Decimal(price), stock=stock)


def make_account(*, balance: str = "100.00", customer_id: str | None = None) -> Account:
    return account_create(customer_id=customer_id or unique("cust"), balance=Decimal(balance))
