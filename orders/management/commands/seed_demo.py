"""Seeds a demo catalogue and demo accounts, once; running it again changes nothing."""

from decimal import Decimal

from django.core.management.base import BaseCommand

from inventory.selectors import product_get
from inventory.services import product_create
from payments.selectors import account_get
from payments.services import account_create

DEMO_PRODUCTS = [
    ("WIDGET-1", "Widget", Decimal("10.00"), 100),
    ("GADGET-1", "Gadget", Decimal("25.50"), 20),
    ("RARE-1", "Rare collectible", Decimal("99.00"), 1),
]
DEMO_ACCOUNTS = [("alice", Decimal("500.00")), ("bob", Decimal("15.00"))]


class Command(BaseCommand):
    help = "Create the demo catalogue and accounts used by the README's first order."

    def handle(self, *args, **options):
        for sku, name, price, stock in DEMO_PRODUCTS:
            if product_get(sku=sku) is None:
                product_create(sku=sku, name=name, price=price, stock=stock)
        for customer_id, balance in DEMO_ACCOUNTS:
            if account_get(customer_id=customer_id) is None:
                account_create(customer_id=customer_id, balance=balance)
        self.stdout.write(f"demo data ready: {len(DEMO_PRODUCTS)} products, {len(DEMO_ACCOUNTS)} accounts")
