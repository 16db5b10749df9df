"""Concurrent reservations of the last units, each in its own transaction and connection (DESIGN §4.5)."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from inventory.models import Product, Reservation
from inventory.services import stock_reserve
from messaging.models import OutboxMessage
from tests.factories import make_product
from tests.integration.support import stock

THREADS = 20
STOCK = 5


def _reserve_one_unit(sku: str, order_id: str, start: threading.Barrier, outcomes: dict[str, object]) -> None:
    try:
        start.wait(timeout=30)
        with transaction.atomic():
            outcomes[order_id] = stock_reserve(order_id=order_id, items=[{"sku": sku, "quantity": 1}]).status
    except Exception as error:  # noqa: BLE001 - reported by the test
        outcomes[order_id] = error
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_reservations_of_five_units_take_exactly_five():
    # given a product with 5 units, and 20 orders each wanting one
    sku = make_product(stock=STOCK).sku
    order_ids = [str(uuid.uuid4()) for _ in range(THREADS)]
    start = threading.Barrier(THREADS)
    outcomes: dict[str, object] = {}
    threads = [
        threading.Thread(target=_reserve_one_unit, args=(sku, order_id, start, outcomes)) for order_id in order_ids
    ]

    # when they all reserve at once, while we watch the stock
    for thread in threads:
        thread.start()
    seen_available = []
    while any(thread.is_alive() for thread in threads):
        seen_available.append(Product.objects.get(sku=sku).available)
    for thread in threads:
        thread.join(timeout=60)

    # then every one got an answer, five took their unit and fifteen were refused
    errors = {k: v for k, v in outcomes.items() if isinstance(v, Exception)}
    assert errors == {}
    assert sorted(outcomes.values()) == ["COMMITTED"] * STOCK + ["REJECTED"] * (THREADS - STOCK)
    assert Reservation.objects.filter(order_id__in=order_ids, status="COMMITTED").count() == STOCK
    assert set(
        Reservation.objects.filter(order_id__in=order_ids, status="REJECTED").values_list("reason", flat=True)
    ) == {"out_of_stock"}
    assert stock(sku) == (0, 0, 0)
    answers = sorted(OutboxMessage.objects.filter(order_id__in=order_ids).values_list("routing_key", flat=True))
    assert answers == ["inventory.reservation_failed"] * (THREADS - STOCK) + ["inventory.reserved"] * STOCK
    assert min(seen_available, default=0) >= 0
