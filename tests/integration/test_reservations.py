"""Inventory's reservation of an order's lines, called as its handler calls it: all lines or none, and why."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from inventory.models import Reservation, ReservationLine
from inventory.services import stock_reserve
from tests.factories import make_product, unique
from tests.integration.support import outbox, stock

pytestmark = pytest.mark.django_db(transaction=True)


def reserve(*lines: tuple[str, int]) -> tuple[str, dict]:
    order_id = str(uuid.uuid4())
    with transaction.atomic():
        stock_reserve(order_id=order_id, items=[{"sku": sku, "quantity": quantity} for sku, quantity in lines])
    [answer] = outbox(order_id)
    return order_id, {"type": answer.routing_key, **answer.payload}


def test_a_reservation_of_one_line_holds_it_and_names_it_in_the_answer():
    sku = make_product(stock=5).sku

    order_id, answer = reserve((sku, 2))

    assert stock(sku) == (5, 2, 3)
    assert (answer["type"], answer["items"]) == ("inventory.reserved", [{"sku": sku, "quantity": 2}])
    assert answer["reservation_id"] == str(Reservation.objects.get(order_id=order_id).id)


def test_lines_are_answered_in_sku_order_with_repeated_skus_merged():
    first, second = sorted(make_product(stock=9).sku for _ in range(2))

    _, answer = reserve((second, 1), (first, 2), (second, 3))

    assert answer["items"] == [{"sku": first, "quantity": 2}, {"sku": second, "quantity": 4}]
    assert (stock(first), stock(second)) == ((9, 2, 7), (9, 4, 5))


@pytest.mark.parametrize("on_hand", [0, 1])
def test_one_line_short_of_stock_is_refused_out_of_stock_and_holds_nothing(on_hand):
    sku = make_product(stock=on_hand).sku

    order_id, answer = reserve((sku, 2))

    assert (answer["type"], answer["code"]) == ("inventory.reservation_failed", "out_of_stock")
    assert stock(sku) == (on_hand, 0, on_hand)
    assert Reservation.objects.get(order_id=order_id).status == "REJECTED"


def test_an_unknown_sku_is_refused_as_unknown_even_beside_a_line_short_of_stock():
    scarce = make_product(stock=1).sku
    held_first = make_product(stock=9, sku="A-" + unique("SKU")).sku  # sorts first: held before the refusal

    order_id, answer = reserve((held_first, 2), (scarce, 5), ("Z-" + unique("SKU"), 1))

    assert (answer["type"], answer["code"]) == ("inventory.reservation_failed", "unknown_sku")
    assert (stock(held_first), stock(scarce)) == ((9, 0, 9), (1, 0, 1))
    assert not ReservationLine.objects.filter(reservation__order_id=order_id).exists()


def test_a_line_refused_after_others_were_held_gives_those_back():
    plenty = make_product(stock=9, sku="A-" + unique("SKU")).sku
    scarce = make_product(stock=1, sku="B-" + unique("SKU")).sku

    _, answer = reserve((plenty, 3), (scarce, 2))

    assert answer["code"] == "out_of_stock"
    assert (stock(plenty), stock(scarce)) == ((9, 0, 9), (1, 0, 1))
