"""A steady stream of orders of every kind, placed while a fault is injected, and the checks made after it."""

from __future__ import annotations

import itertools
import json
import threading
import time
from decimal import Decimal

import httpx

from config.audit import audit
from messaging.models import DeadLetter, OutboxMessage
from orders.models import Order
from payments.models import LedgerEntry
from tests.e2e.conftest import wait_final
from tests.factories import unique
from tests.processes import LOG_DIR, Process, wait_for


class OrderStream(threading.Thread):
    """Places orders until stopped, from `clients` concurrent clients each pausing `interval` seconds between
    orders: most complete, some are declined, some run out of stock."""

    def __init__(self, api: httpx.Client, *, interval: float = 0.05, clients: int = 1):
        super().__init__(daemon=True)
        self.api = api
        self.interval = interval
        self.clients = clients
        self.halt = threading.Event()
        self.orders: list[dict] = []
        self.errors: list[str] = []
        self.plenty = self._product(stock=100_000, price="3.00")
        self.scarce = self._product(stock=3, price="2.00")
        self.rich = [self._account("1000000.00") for _ in range(5)]
        self.poor = self._account("1.00")

    def _product(self, *, stock: int, price: str) -> str:
        sku = unique("SKU")
        response = self.api.post("/api/products", json={"sku": sku, "name": "Stream", "price": price, "stock": stock})
        assert response.status_code == 201, response.text
        return sku

    def _account(self, balance: str) -> str:
        customer = unique("cust")
        response = self.api.post("/api/accounts", json={"customer_id": customer, "balance": balance})
        assert response.status_code == 201, response.text
        return customer

    def run(self) -> None:
        loops = [threading.Thread(target=self._place_orders, daemon=True) for _ in range(self.clients)]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()

    def _place_orders(self) -> None:
        kinds = itertools.cycle(["ok", "ok", "ok", "declined", "scarce"])
        for number in itertools.count():
            if self.halt.is_set():
                return
            kind = next(kinds)
            customer = self.poor if kind == "declined" else self.rich[number % len(self.rich)]
            sku = self.scarce if kind == "scarce" else self.plenty
            try:
                response = self.api.post(
                    "/api/orders", json={"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}
                )
                if response.status_code == 201:
                    self.orders.append(response.json())
                else:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as error:
                self.errors.append(repr(error))
            time.sleep(self.interval)

    def finish(self) -> list[dict]:
        self.halt.set()
        self.join(30)
        assert not self.errors, self.errors[:5]
        return self.orders


def in_flight() -> int:
    return Order.objects.filter(status=Order.Status.PENDING).count()


def assert_recovered(
    api: httpx.Client,
    orders: list[dict],
    workers: list[Process],
    *,
    poison: set[str] = frozenset(),
    name: str,
    fault_in_flight: int,
    timeout: float = 120,
) -> dict:
    """After a fault: every order final, audit clean, outbox published, dead letters = poison, workers alive."""
    finals = [wait_final(api, order["id"], timeout=timeout) for order in orders]
    wait_for(
        lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(),
        timeout=60,
        message="the outbox to be fully published",
    )
    wait_for(lambda: not audit(settled=True), timeout=60, message="a clean audit")
    # Dead letters travel through the broker's dead-letter queue before they are stored: wait for them.
    stored = lambda: set(DeadLetter.objects.values_list("message_id", flat=True))  # noqa: E731
    wait_for(lambda: stored() >= set(poison), timeout=30, message="the poison messages to be dead-lettered")
    assert stored() == set(poison)
    captures = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CAPTURE).values_list("payment__order_id", flat=True)
    assert len(captures) == len(set(captures)), "an order was charged twice"
    for worker in workers:
        assert worker.running(), f"{worker.name} died:\n{worker.log()[-3000:]}"
    statuses = [order["status"] for order in finals]
    result = {
        "fault": name,
        "orders": len(orders),
        "in_flight_at_fault": fault_in_flight,
        "completed": statuses.count("COMPLETED"),
        "failed": statuses.count("FAILED"),
        "cancelled": statuses.count("CANCELLED"),
        "dead_letters": len(poison),
        "audit_violations": 0,
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "fault-results.jsonl", "a") as report:
        report.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    return result


def money(value: str) -> Decimal:
    return Decimal(value)
