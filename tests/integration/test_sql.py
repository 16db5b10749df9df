"""The written-out statements of the message path store and read what the ORM would."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.kernel import sql
from messaging.models import OutboxMessage
from payments.models import Payment
from saga.models import Saga, SagaTransition
from tests.integration.support import in_another_transaction

pytestmark = pytest.mark.django_db(transaction=True)


def a_saga(**values) -> Saga:
    fields = {
        "order_id": uuid.uuid4(),
        "state": "PAYMENT_PENDING",
        "customer_id": "c-1",
        "amount": Decimal("12.50"),
        "currency": "EUR",
        "items": [{"sku": "A", "quantity": 2}],
        "state_entered_at": timezone.now(),
    }
    return Saga(**{**fields, **values})


def test_an_insert_sets_defaults_and_stamps_on_the_instance_and_stores_what_the_orm_reads_back():
    payment = Payment(
        order_id=uuid.uuid4(),
        customer_id="c-1",
        amount=Decimal("19.99"),
        currency="EUR",
        status=Payment.Status.CAPTURED,
    )

    sql.insert(payment)

    stored = Payment.objects.get(pk=payment.pk)
    assert payment.created_at is not None and payment.updated_at is not None
    assert (stored.order_id, stored.amount, stored.status, stored.decline_code) == (
        payment.order_id,
        Decimal("19.99"),
        "CAPTURED",
        "",
    )
    assert (stored.created_at, stored.updated_at) == (payment.created_at, payment.updated_at)
    assert not payment._state.adding


def test_an_insert_reads_back_the_id_the_database_generates_and_stores_json_as_json():
    with transaction.atomic():
        first = sql.insert(OutboxMessage(routing_key="order.completed", payload={"order_id": "x", "n": [1, 2]}))
        second = sql.insert(OutboxMessage(routing_key="order.completed", payload={"order_id": "y"}))

    assert second.pk > first.pk > 0
    stored = OutboxMessage.objects.get(pk=first.pk)
    assert stored.payload == {"order_id": "x", "n": [1, 2]} and stored.headers == {}
    assert stored.message_id == first.message_id
    assert OutboxMessage.objects.filter(payload__order_id="y").get().pk == second.pk  # a JSON value, not a string


def test_select_converts_each_column_as_the_orm_does():
    saga = sql.insert(a_saga())
    names = ["order_id", "state", "amount", "items", "state_entered_at", "created_at"]

    found = sql.select_one(Saga, names, "order_id = %s", [sql.adapt(Saga, "order_id", saga.order_id)])

    assert found == Saga.objects.filter(pk=saga.pk).values(*names).get()
    assert isinstance(found["amount"], Decimal) and isinstance(found["order_id"], uuid.UUID)
    assert found["state_entered_at"].tzinfo is not None
    assert sql.select_one(Saga, names, "order_id = %s", [sql.adapt(Saga, "order_id", uuid.uuid4())]) is None


def test_select_returns_every_matching_row_in_the_order_asked():
    for amount in (3, 1, 2):
        sql.insert(a_saga(customer_id="c-many", amount=Decimal(amount)))

    rows = sql.select(Saga, ["amount"], "customer_id = %s ORDER BY amount", ["c-many"])

    assert [row["amount"] for row in rows] == [Decimal(1), Decimal(2), Decimal(3)]


def test_an_update_saves_only_the_named_fields_and_the_auto_now_stamp():
    saga = sql.insert(a_saga())
    before = Saga.objects.get(pk=saga.pk)
    saga.state, saga.customer_id = "COMPLETED", "not-saved"

    assert sql.update(saga, ["state"]) == 1

    after = Saga.objects.get(pk=saga.pk)
    assert (after.state, after.customer_id) == ("COMPLETED", "c-1")
    assert after.updated_at > before.updated_at and after.updated_at == saga.updated_at
    gone = a_saga()
    assert sql.update(gone, ["state"]) == 0


def test_a_loaded_instance_saves_as_the_existing_row():
    saga = sql.insert(a_saga())
    found = sql.select_one(
        Saga,
        ["state", "customer_id", "amount", "currency", "items", "state_entered_at"],
        "order_id = %s",
        [sql.adapt(Saga, "order_id", saga.order_id)],
    )
    loaded = sql.loaded(Saga, order_id=saga.order_id, **found)
    loaded.state = "FAILED"

    loaded.save(update_fields=["state"])

    assert Saga.objects.count() == 1 and Saga.objects.get().state == "FAILED"


def test_a_locked_select_holds_the_row_until_the_transaction_ends():
    saga = sql.insert(a_saga())
    with in_another_transaction(lambda: sql.select_one(Saga, ["state"], "order_id = %s", [saga.order_id], lock=True)):
        with pytest.raises(OperationalError), transaction.atomic():
            lock_without_waiting(saga)

    with transaction.atomic():
        assert lock_without_waiting(saga) == (1,)


def lock_without_waiting(saga: Saga) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {sql.table(Saga)} WHERE order_id = %s FOR UPDATE NOWAIT", [saga.order_id])
        return cursor.fetchone()


def test_a_batch_writes_its_rows_in_one_statement_as_one_by_one_would_and_reads_the_ids_back_in_order():
    order_id = uuid.uuid4()
    with CaptureQueriesContext(connection) as sent, transaction.atomic():
        with sql.batched():
            saga = sql.insert(a_saga(order_id=order_id))
            first = sql.insert(OutboxMessage(routing_key="order.created", payload={"order_id": str(order_id)}))
            step = sql.insert(SagaTransition(saga=saga, to_state="PAYMENT_PENDING", message_type="order.created"))
            second = sql.insert(OutboxMessage(routing_key="payment.process", payload={"order_id": str(order_id)}))
            assert first.pk is None and not saga._state.adding  # sent when the block ends
        assert len(sent) == 2  # BEGIN, the rows' one statement

    assert second.pk > first.pk > 0 and step.pk > 0
    assert list(OutboxMessage.objects.order_by("id").values_list("pk", "routing_key")) == [
        (first.pk, "order.created"),
        (second.pk, "payment.process"),
    ]
    stored = Saga.objects.get(pk=order_id)
    assert (stored.amount, stored.items, stored.created_at) == (Decimal("12.50"), saga.items, saga.created_at)
    assert SagaTransition.objects.get(pk=step.pk).at == step.at
    assert OutboxMessage.objects.get(pk=first.pk).message_id == first.message_id


def test_a_batch_that_raises_writes_nothing_and_a_statement_inside_it_sends_the_rows_given_so_far():
    with pytest.raises(RuntimeError), transaction.atomic(), sql.batched():
        sql.insert(a_saga())
        raise RuntimeError("then the block fails")
    assert not Saga.objects.exists()

    with transaction.atomic(), sql.batched():
        saga = sql.insert(a_saga(customer_id="c-seen"))
        assert sql.select(Saga, ["customer_id"], "order_id = %s", [saga.order_id]) == [{"customer_id": "c-seen"}]
        with sql.batched():  # joins the block around it
            later = sql.insert(a_saga())
        assert Saga.objects.filter(pk=later.pk).exists()  # a query of the ORM sends the rows first, too
        sent = sql.insert(OutboxMessage(routing_key="order.created", payload={}), at_once=True)
        assert sent.pk is not None and OutboxMessage.objects.filter(pk=sent.pk).exists()
    assert Saga.objects.count() == 2


def test_an_update_with_the_batch_goes_out_in_its_one_statement_and_a_query_inside_sees_it_first():
    saga = sql.insert(a_saga(customer_id="c-before"))
    with CaptureQueriesContext(connection) as sent, transaction.atomic():
        with sql.batched():
            saga.customer_id = "c-after"
            assert sql.update(saga, ["customer_id"], with_batch=True) is None
            sql.insert(OutboxMessage(routing_key="order.created", payload={"order_id": str(saga.order_id)}))
        assert len(sent) == 2  # BEGIN, the update and the row in one statement
    assert Saga.objects.get(pk=saga.pk).customer_id == "c-after" and OutboxMessage.objects.count() == 1

    with transaction.atomic(), sql.batched():
        sql.later(f"UPDATE {sql.table(Saga)} SET customer_id = %s WHERE order_id = %s", ["c-seen", saga.order_id])
        assert Saga.objects.get(pk=saga.pk).customer_id == "c-seen"  # the ORM's query sent it first

    sql.later(f"UPDATE {sql.table(Saga)} SET customer_id = %s WHERE order_id = %s", ["c-now", saga.order_id])
    assert Saga.objects.get(pk=saga.pk).customer_id == "c-now"  # outside a batch: at once
