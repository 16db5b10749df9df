"""Placing an order writes the order, its lines, its saga, the saga's first step and two outbox rows in one
transaction (DESIGN §1), or none of them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from messaging.errors import InvalidPayloadError
from messaging.models import OutboxMessage
from orders.models import Order, OrderLine
from orders.services import IdempotencyKeyReusedError, UnknownSkuError, order_create
from saga.models import Saga, SagaTransition
from tests.factories import make_product, unique
from tests.integration.support import outbox, outbox_keys


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (Order, OrderLine, Saga, SagaTransition, OutboxMessage)}


@pytest.mark.django_db
def test_order_create_writes_the_order_lines_saga_timeline_and_outbox_rows():
    # given two products in the catalogue
    first = make_product(price="12.50")
    second = make_product(price="3.00")
    customer = unique("cust")

    # when an order is placed
    order, created = order_create(
        customer_id=customer, items=[{"sku": first.sku, "quantity": 2}, {"sku": second.sku, "quantity": 1}]
    )

    # then the order is pending, priced from the catalogue
    assert created
    order.refresh_from_db()
    assert (order.status, order.customer_id, order.total, order.currency) == (
        "PENDING",
        customer,
        Decimal("28.00"),
        "EUR",
    )
    assert sorted(order.lines.values_list("sku", "quantity", "unit_price")) == sorted(
        [(first.sku, 2, Decimal("12.50")), (second.sku, 1, Decimal("3.00"))]
    )
    # and its saga waits for the payment, with a deadline
    saga = Saga.objects.get(order_id=order.id)
    assert saga.state == "PAYMENT_PENDING"
    assert (saga.customer_id, saga.amount, saga.currency) == (customer, Decimal("28.00"), "EUR")
    assert saga.deadline_at is not None and saga.deadline_at > timezone.now()
    # and the two messages wait in the outbox, unpublished
    assert outbox_keys(str(order.id)) == ["order.created", "payment.process"]
    created_row, process_row = outbox(str(order.id))
    assert all(row.published_at is None for row in (created_row, process_row))
    assert created_row.payload == {
        "order_id": str(order.id),
        "customer_id": customer,
        "total": "28.00",
        "currency": "EUR",
        "items": [
            {"sku": first.sku, "quantity": 2, "unit_price": "12.50"},
            {"sku": second.sku, "quantity": 1, "unit_price": "3.00"},
        ],
    }
    assert process_row.payload == {
        "order_id": str(order.id),
        "customer_id": customer,
        "amount": "28.00",
        "currency": "EUR",
    }
    assert process_row.headers == {"version": 1}
    # and the timeline starts with order.created
    step = SagaTransition.objects.get(saga=saga)
    assert (step.from_state, step.to_state, step.message_type, step.message_id, step.emitted) == (
        "",
        "PAYMENT_PENDING",
        "order.created",
        str(created_row.message_id),
        ["payment.process"],
    )


@pytest.mark.django_db
def test_the_price_is_the_catalogues_at_the_moment_of_ordering():
    product = make_product(price="10.00")
    order, _ = order_create(customer_id=unique("cust"), items=[{"sku": product.sku, "quantity": 1}])

    type(product).objects.filter(sku=product.sku).update(price=Decimal("99.00"))

    assert Order.objects.get(id=order.id).total == Decimal("10.00")
    assert outbox(str(order.id), "payment.process")[0].payload["amount"] == "10.00"


@pytest.mark.django_db(transaction=True)
def test_an_unknown_sku_writes_nothing():
    known = make_product()
    before = row_counts()

    with pytest.raises(UnknownSkuError) as caught:
        order_create(
            customer_id=unique("cust"),
            items=[{"sku": known.sku, "quantity": 1}, {"sku": "NOPE-" + unique("x"), "quantity": 1}],
        )

    assert caught.value.code == "unknown_sku"
    assert row_counts() == before


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_order_rows_are_written_rolls_all_of_them_back():
    # given a line that the service takes but the order.created schema refuses (quantity 0), so the failure
    # comes after the order and its lines were inserted
    product = make_product()
    before = row_counts()

    with pytest.raises(InvalidPayloadError):
        order_create(customer_id=unique("cust"), items=[{"sku": product.sku, "quantity": 0}])

    assert row_counts() == before


@pytest.mark.django_db(transaction=True)
def test_order_create_refuses_to_run_inside_another_transaction_and_writes_nothing():
    product = make_product()
    before = row_counts()

    with pytest.raises(RuntimeError, match="durable"):
        with transaction.atomic():
            order_create(customer_id=unique("cust"), items=[{"sku": product.sku, "quantity": 1}])

    assert row_counts() == before


@pytest.mark.django_db
def test_the_same_idempotency_key_and_body_returns_the_first_order_and_writes_nothing_more():
    product = make_product()
    customer, key = unique("cust"), unique("key")
    first, created = order_create(
        customer_id=customer, items=[{"sku": product.sku, "quantity": 1}], idempotency_key=key
    )
    before = row_counts()

    again, created_again = order_create(
        customer_id=customer, items=[{"sku": product.sku, "quantity": 1}], idempotency_key=key
    )

    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert row_counts() == before


@pytest.mark.django_db
def test_the_same_idempotency_key_with_another_body_is_refused():
    product = make_product()
    customer, key = unique("cust"), unique("key")
    first, _ = order_create(customer_id=customer, items=[{"sku": product.sku, "quantity": 1}], idempotency_key=key)
    before = row_counts()

    with pytest.raises(IdempotencyKeyReusedError) as caught:
        order_create(customer_id=customer, items=[{"sku": product.sku, "quantity": 2}], idempotency_key=key)

    assert caught.value.details["order_id"] == str(first.id)
    assert row_counts() == before


@pytest.mark.django_db
def test_with_a_key_the_first_answer_is_written_with_the_order_or_nothing_is():
    product = make_product()
    customer = unique("cust")
    items = [{"sku": product.sku, "quantity": 1}]
    before = row_counts()

    def failing(order: Order) -> str:
        raise RuntimeError("the answer could not be rendered")

    with pytest.raises(RuntimeError):
        order_create(customer_id=customer, items=items, idempotency_key="k", answer=failing)
    assert row_counts() == before

    order, created = order_create(
        customer_id=customer,
        items=items,
        idempotency_key="k",
        answer=lambda placed: f'{{"id":"{placed.id}","status":"{placed.status}"}}',
    )
    again, created_again = order_create(customer_id=customer, items=items, idempotency_key="k", answer=failing)

    assert (created, created_again) == (True, False)
    stored = Order.objects.get(pk=order.pk)
    assert stored.first_answer_text == order.first_answer_text == f'{{"id":"{order.id}","status":"PENDING"}}'
    assert again.first_answer_text == stored.first_answer_text
    assert stored.updated_at == order.updated_at  # the answer shows the order as it was written
