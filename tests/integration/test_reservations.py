"""Inventory's reservation of an order's lines, called as its handler calls it: all lines or none, and why."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from inventory.models import Product, Reservation, ReservationLine, StockMovement
from inventory.services import reservation_release, stock_reserve
from tests.factories import make_product, unique
from tests.integration.support import outbox, stock

pytestmark = pytest.mark.django_db(transaction=True)


def reserve(*lines: tuple[str, int]) -> tuple[str, dict]:
    order_id = str(uuid.uuid4())
    with transaction.atomic():
        stock_reserve(order_id=order_id, items=[{"sku": sku, "quantity": quantity} for sku, quantity in lines])
    [answer] = outbox(order_id)
    return order_id, {"type": answer.routing_key, **answer.payload}


def test_a_reservation_of_one_line_takes_it_and_names_it_in_the_answer():
    sku = make_product(stock=5).sku

    order_id, answer = reserve((sku, 2))

    assert stock(sku) == (3, 0, 3)  # the goods leave on_hand at once; a release would bring them back
    assert Reservation.objects.get(order_id=order_id).status == "COMMITTED"
    assert list(StockMovement.objects.filter(order_id=order_id).values_list("kind", "quantity")) == [("COMMIT", 2)]
    assert (answer["type"], answer["items"]) == ("inventory.reserved", [{"sku": sku, "quantity": 2}])
    assert answer["reservation_id"] == str(Reservation.objects.get(order_id=order_id).id)


def test_lines_are_answered_in_sku_order_with_repeated_skus_merged():
    first, second = sorted(make_product(stock=9).sku for _ in range(2))

    _, answer = reserve((second, 1), (first, 2), (second, 3))

    assert answer["items"] == [{"sku": first, "quantity": 2}, {"sku": second, "quantity": 4}]
    assert (stock(first), stock(second)) == ((7, 0, 7), (5, 0, 5))


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


def release(order_id: str) -> list[str]:
    with transaction.atomic():
        reservation_release(order_id=order_id, reason="timeout")
    return [row.routing_key for row in outbox(order_id)]


def test_a_release_gives_the_taken_goods_back_once_and_refuses_a_later_reservation():
    sku = make_product(stock=5).sku
    order_id, _ = reserve((sku, 2))

    assert release(order_id) == ["inventory.reserved", "inventory.released"]
    assert release(order_id) == ["inventory.reserved", "inventory.released"]  # a repeat changes nothing

    assert stock(sku) == (5, 0, 5)
    assert Reservation.objects.get(order_id=order_id).status == "RELEASED"
    movements = StockMovement.objects.filter(order_id=order_id).order_by("id").values_list("kind", "quantity")
    assert list(movements) == [("COMMIT", 2), ("RETURN", 2)]
    with transaction.atomic():
        stock_reserve(order_id=order_id, items=[{"sku": sku, "quantity": 2}])
    assert outbox(order_id)[-1].payload["code"] == "order_closed"
    assert stock(sku) == (5, 0, 5)


def test_a_release_that_overtakes_its_reservation_refuses_it():
    sku = make_product(stock=5).sku
    order_id = str(uuid.uuid4())

    assert release(order_id) == []  # nothing held: no inventory.released, but the order is closed here
    with transaction.atomic():
        stock_reserve(order_id=order_id, items=[{"sku": sku, "quantity": 2}])

    assert [(m.routing_key, m.payload.get("code")) for m in outbox(order_id)] == [
        ("inventory.reservation_failed", "order_closed")
    ]
    assert stock(sku) == (5, 0, 5)


def test_a_reservation_held_by_an_older_version_is_given_back_from_reserved():
    # given stock held the way versions before 2026-12 held it: in `reserved`, not yet taken
    sku = make_product(stock=5).sku
    order_id = str(uuid.uuid4())
    held = Reservation.objects.create(order_id=order_id, status=Reservation.Status.ACTIVE)
    ReservationLine.objects.create(reservation=held, product_id=sku, quantity=2)
    Product.objects.filter(sku=sku).update(reserved=2)

    release(order_id)

    assert stock(sku) == (5, 0, 5)
    assert not StockMovement.objects.filter(order_id=order_id).exists()


def test_the_migration_settles_what_older_versions_held_as_their_final_events_would_have(latest_schema_after):
    from django.db.migrations.executor import MigrationExecutor

    before, after = (
        [("inventory", "0001_initial"), ("saga", "0007_release_sent_at")],
        [("inventory", "0002_take_stock_at_reservation")],
    )
    MigrationExecutor(connection).migrate(before)
    then = MigrationExecutor(connection).loader.project_state(before).apps
    product = then.get_model("inventory", "Product").objects.create(
        sku=unique("SKU"), name="x", price="1.00", on_hand=9, reserved=5
    )
    held = {}
    for state, quantity in (("COMPLETED", 1), ("FAILED", 2), ("INVENTORY_PENDING", 2)):
        order_id = uuid.uuid4()
        then.get_model("saga", "Saga").objects.create(
            order_id=order_id,
            state=state,
            state_entered_at=timezone.now(),
            customer_id="c",
            amount="1.00",
            currency="EUR",
            items=[],
        )
        reservation = then.get_model("inventory", "Reservation").objects.create(order_id=order_id, status="ACTIVE")
        then.get_model("inventory", "ReservationLine").objects.create(
            reservation=reservation, product=product, quantity=quantity
        )
        held[state] = str(order_id)

    MigrationExecutor(connection).migrate(after)
    latest_schema_after()

    # the completed order's goods and the pending one's are taken; the failed one's are given back
    assert stock(product.sku) == (6, 0, 6)
    status = {state: Reservation.objects.get(order_id=order_id).status for state, order_id in held.items()}
    assert status == {"COMPLETED": "COMMITTED", "FAILED": "RELEASED", "INVENTORY_PENDING": "COMMITTED"}
    taken = StockMovement.objects.filter(product_id=product.sku, kind="COMMIT").values_list("order_id", "quantity")
    assert sorted((str(o), q) for o, q in taken) == sorted([(held["COMPLETED"], 1), (held["INVENTORY_PENDING"], 2)])
