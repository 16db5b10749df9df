"""The order saga on PostgreSQL, delivered by the in-process transport, read as histories (DESIGN §1).

Each test places orders through the service, lets messages flow with `drain()` (or holds some back in a slow
queue to force an order of arrival), and asserts on the rows: order, saga, payments, ledger, stock, outbox.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.models import Reservation, ReservationLine, StockMovement
from messaging import bus
from messaging.models import OutboxMessage
from orders.models import Order
from payments.models import ClosedOrder, Payment
from saga.models import Saga, SagaTransition
from saga.services import (
    OWN_FAILURE_DETAIL,
    OrderNotCancellableError,
    SagaNotFoundError,
    saga_cancel,
    saga_sweep_timeouts,
)
from tests.factories import make_account, make_product, unique
from tests.integration.support import (
    assert_no_money_moved_in_net,
    balance,
    deliver,
    deliver_all_except,
    drain,
    envelope_of,
    history,
    ledger_of,
    make_overdue,
    order_of,
    outbox,
    outbox_keys,
    payments_of,
    place,
    saga_of,
    stock,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inprocess")]


def test_happy_path_completes_with_the_payment_captured_and_the_stock_committed():
    # given
    sku = make_product(stock=5, price="12.50").sku
    customer = make_account(balance="100.00").customer_id

    # when
    order_id = place(customer, (sku, 2))
    drain()

    # then
    order = order_of(order_id)
    assert (order.status, order.failure_reason, order.total) == ("COMPLETED", "", Decimal("25.00"))
    assert history(order_id) == ["PAYMENT_PENDING", "INVENTORY_PENDING", "COMPLETED"]
    assert saga_of(order_id).deadline_at is None
    assert payments_of(order_id) == [("CAPTURED", Decimal("25.00"))]
    assert ledger_of(order_id) == [("CAPTURE", Decimal("25.00"))]
    assert balance(customer) == Decimal("75.00")
    assert stock(sku) == (3, 0, 3)
    assert Reservation.objects.get(order_id=order_id).status == "COMMITTED"
    assert list(StockMovement.objects.filter(order_id=order_id).values_list("kind", "quantity")) == [("COMMIT", 2)]
    assert outbox_keys(order_id) == [
        "order.created",
        "payment.process",
        "payment.processed",
        "inventory.reserve",
        "inventory.reserved",
        "order.completed",
    ]


def test_every_message_an_order_causes_carries_its_correlation_and_the_id_of_its_cause():
    sku = make_product().sku
    order_id = place(make_account().customer_id, (sku, 1))
    drain()

    rows = {row.routing_key: row for row in outbox(order_id)}
    chain = ["payment.process", "payment.processed", "inventory.reserve", "inventory.reserved", "order.completed"]
    assert {rows[key].correlation_id for key in chain} == {rows["payment.process"].correlation_id}
    for cause, effect in zip(chain, chain[1:], strict=False):
        assert rows[effect].causation_id == str(rows[cause].message_id), effect
    assert all(row.order_id == order_id for row in rows.values())


@pytest.mark.parametrize(("account_balance", "reason"), [("20.00", "insufficient_funds"), (None, "unknown_account")])
def test_a_declined_payment_fails_the_order_and_moves_nothing(account_balance, reason):
    sku = make_product(stock=5, price="50.00").sku
    customer = make_account(balance=account_balance).customer_id if account_balance else unique("stranger")

    order_id = place(customer, (sku, 1))
    drain()

    order = order_of(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", reason)
    assert order.failure_detail == outbox(order_id, "payment.failed")[0].payload["reason"] != reason
    assert history(order_id) == ["PAYMENT_PENDING", "FAILED"]
    assert payments_of(order_id) == [("DECLINED", Decimal("50.00"))]
    assert ledger_of(order_id) == []
    if account_balance:
        assert balance(customer) == Decimal(account_balance)
    assert stock(sku) == (5, 0, 5)
    assert not Reservation.objects.filter(order_id=order_id, status="ACTIVE").exists()
    assert outbox(order_id, "payment.failed")[0].payload["code"] == reason
    assert "inventory.reserve" not in outbox_keys(order_id)


def test_out_of_stock_refunds_the_payment_and_keeps_the_stock():
    sku = make_product(stock=1, price="30.00").sku
    customer = make_account(balance="100.00").customer_id

    order_id = place(customer, (sku, 2))
    drain()

    order = order_of(order_id)
    assert (order.status, order.failure_reason) == ("FAILED", "out_of_stock")
    # the text of the step that failed, kept through the compensation that followed it
    assert order.failure_detail == outbox(order_id, "inventory.reservation_failed")[0].payload["reason"]
    assert history(order_id) == ["PAYMENT_PENDING", "INVENTORY_PENDING", "COMPENSATING", "FAILED"]
    assert payments_of(order_id) == [("REFUNDED", Decimal("60.00"))]
    assert ledger_of(order_id) == [("CAPTURE", Decimal("60.00")), ("REFUND", Decimal("60.00"))]
    assert balance(customer) == Decimal("100.00")
    assert_no_money_moved_in_net(customer)
    assert stock(sku) == (1, 0, 1)
    assert Reservation.objects.get(order_id=order_id).status == "REJECTED"
    assert outbox(order_id, "payment.refund")[0].payload == {"order_id": order_id, "reason": "out_of_stock"}


def test_an_order_that_cannot_be_fully_reserved_holds_none_of_its_lines():
    plenty = make_product(stock=10).sku
    scarce = make_product(stock=1).sku
    customer = make_account(balance="1000.00").customer_id

    order_id = place(customer, (plenty, 3), (scarce, 2))
    drain()

    assert order_of(order_id).failure_reason == "out_of_stock"
    assert (stock(plenty), stock(scarce)) == ((10, 0, 10), (1, 0, 1))
    assert not ReservationLine.objects.filter(reservation__order_id=order_id).exists()


def test_a_late_payment_processed_after_the_saga_failed_sends_a_refund():
    # given a charge whose payment.processed is stuck in a slow queue
    sku = make_product(price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (sku, 1))
    deliver_all_except("payment.processed")
    assert payments_of(order_id) == [("CAPTURED", Decimal("10.00"))]
    # and the saga that timed out meanwhile, refunded, and failed
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    deliver_all_except("payment.processed")
    assert saga_of(order_id).state == "FAILED"
    refunds_before = len(outbox(order_id, "payment.refund"))

    # when the late payment.processed arrives
    deliver(outbox(order_id, "payment.processed")[0])

    # then the saga stays failed and asks for a refund
    assert saga_of(order_id).state == "FAILED"
    assert len(outbox(order_id, "payment.refund")) == refunds_before + 1
    late = SagaTransition.objects.filter(saga_id=order_id).order_by("at", "id").last()
    assert (late.from_state, late.to_state, late.message_type, late.emitted) == (
        "FAILED",
        "FAILED",
        "payment.processed",
        ["payment.refund"],
    )
    # and once it has flowed, the money is back, refunded once
    drain()
    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "timeout")
    assert payments_of(order_id) == [("REFUNDED", Decimal("10.00"))]
    assert ledger_of(order_id) == [("CAPTURE", Decimal("10.00")), ("REFUND", Decimal("10.00"))]
    assert_no_money_moved_in_net(customer)


def test_a_late_inventory_reserved_after_the_saga_failed_sends_a_release():
    # given a reservation whose inventory.reserved is stuck while the saga times out and fails
    sku = make_product(stock=5).sku
    customer = make_account().customer_id
    order_id = place(customer, (sku, 2))
    deliver_all_except("inventory.reserved")
    assert stock(sku) == (3, 0, 3)  # taken by the reservation
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    deliver_all_except("inventory.reserved")
    assert saga_of(order_id).state == "FAILED"

    # when it arrives
    deliver(outbox(order_id, "inventory.reserved")[0])
    drain()

    # then the saga asked for a release (as it timed out, and again for the late reply), and nothing is held
    assert outbox_keys(order_id).count("inventory.release") == 2
    assert stock(sku) == (5, 0, 5)
    assert Reservation.objects.get(order_id=order_id).status == "RELEASED"
    assert order_of(order_id).failure_reason == "timeout"
    assert_no_money_moved_in_net(customer)


def test_a_duplicate_reply_is_a_no_op():
    # given a completed order
    sku = make_product(stock=5).sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (sku, 1))
    drain()
    rows_before = OutboxMessage.objects.count()
    steps_before = SagaTransition.objects.filter(saga_id=order_id).count()
    processed = outbox(order_id, "payment.processed")[0]
    reserved = outbox(order_id, "inventory.reserved")[0]

    # when its replies arrive again: redelivered as they were, and repeated under new message ids
    assert bus.dispatch("saga", envelope_of(processed)) == bus.DUPLICATE
    assert bus.dispatch("saga", envelope_of(reserved)) == bus.DUPLICATE
    assert bus.dispatch("saga", envelope_of(processed, message_id=str(uuid.uuid4()))) == bus.PROCESSED
    assert bus.dispatch("saga", envelope_of(reserved, message_id=str(uuid.uuid4()))) == bus.PROCESSED

    # then nothing changes and nothing is sent
    assert order_of(order_id).status == "COMPLETED"
    assert saga_of(order_id).state == "COMPLETED"
    assert OutboxMessage.objects.count() == rows_before
    assert SagaTransition.objects.filter(saga_id=order_id).count() == steps_before
    assert balance(customer) == Decimal("90.00")
    assert stock(sku) == (4, 0, 4)


def test_payments_refuses_payment_process_after_a_refund():
    # given an order that timed out before payments saw it, whose refund arrived first
    sku = make_product(price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (sku, 1))
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    deliver_all_except("payment.process")
    assert ClosedOrder.objects.filter(order_id=order_id).exists()
    assert outbox(order_id, "payment.refunded")[0].payload == {
        "order_id": order_id,
        "payment_id": None,
        "amount": "0.00",
    }

    # when the payment.process arrives at last
    drain()

    # then payments refuses it, and charges nothing
    refused = outbox(order_id, "payment.failed")
    assert [row.payload["code"] for row in refused] == ["order_closed"]
    assert not Payment.objects.filter(order_id=order_id).exists()
    assert balance(customer) == Decimal("100.00")
    assert ledger_of(order_id) == []
    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "timeout")


def test_inventory_refuses_a_reservation_after_order_failed():
    # given an order paid for, whose inventory.reserve waits in a slow queue while the saga times out
    sku = make_product(stock=5).sku
    customer = make_account().customer_id
    order_id = place(customer, (sku, 2))
    deliver_all_except("inventory.reserve")
    assert saga_of(order_id).state == "INVENTORY_PENDING"
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    deliver_all_except("inventory.reserve")
    assert "order.failed" in outbox_keys(order_id)

    # when the reservation is asked for after inventory has seen order.failed
    drain()

    # then it is refused, and no stock is held
    refused = outbox(order_id, "inventory.reservation_failed")
    assert [row.payload["code"] for row in refused] == ["order_closed"]
    assert stock(sku) == (5, 0, 5)
    assert Reservation.objects.get(order_id=order_id).status == "RELEASED"
    assert not ReservationLine.objects.filter(reservation__order_id=order_id).exists()
    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "timeout")
    assert_no_money_moved_in_net(customer)


def test_the_sweep_times_out_an_overdue_saga_and_the_money_comes_back():
    # given two orders waiting for their payment, one of them past its deadline
    sku = make_product(price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    overdue = place(customer, (sku, 1))
    on_time = place(customer, (sku, 1))
    make_overdue(overdue)

    # when the sweep runs (twice: a second pass finds nothing more to do)
    assert saga_sweep_timeouts() == 1
    assert saga_sweep_timeouts() == 0

    # then only the overdue one compensates
    assert (saga_of(overdue).state, saga_of(overdue).failure_reason) == ("COMPENSATING", "timeout")
    assert saga_of(on_time).state == "PAYMENT_PENDING"
    assert outbox(overdue, "payment.refund")[0].payload == {"order_id": overdue, "reason": "timeout"}
    # and once messages flow, it fails with reason timeout, its payment refunded
    drain()
    order = order_of(overdue)
    assert (order.status, order.failure_reason) == ("FAILED", "timeout")
    assert order.failure_detail == OWN_FAILURE_DETAIL["timeout"]
    # (the charge that landed while compensating is logged as a step of its own, and refunded again)
    assert history(overdue) == ["PAYMENT_PENDING", "COMPENSATING", "COMPENSATING", "FAILED"]
    assert payments_of(overdue) == [("REFUNDED", Decimal("10.00"))]
    assert ledger_of(overdue) == [("CAPTURE", Decimal("10.00")), ("REFUND", Decimal("10.00"))]
    assert order_of(on_time).status == "COMPLETED"
    assert balance(customer) == Decimal("90.00")


def test_a_timeout_while_waiting_for_stock_refunds_and_releases_what_was_reserved():
    sku = make_product(stock=5, price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (sku, 2))
    deliver_all_except("inventory.reserve")
    make_overdue(order_id)

    assert saga_sweep_timeouts() == 1
    drain()

    assert (order_of(order_id).status, order_of(order_id).failure_reason) == ("FAILED", "timeout")
    # the slow reservation lands while the refund is awaited: it took the stock, and is released again
    assert history(order_id) == ["PAYMENT_PENDING", "INVENTORY_PENDING", "COMPENSATING", "COMPENSATING", "FAILED"]
    assert payments_of(order_id) == [("REFUNDED", Decimal("20.00"))]
    assert balance(customer) == Decimal("100.00")
    assert stock(sku) == (5, 0, 5)
    assert Reservation.objects.get(order_id=order_id).status == "RELEASED"


def test_the_sweep_leaves_alone_a_saga_that_is_not_pending():
    sku = make_product().sku
    order_id = place(make_account().customer_id, (sku, 1))
    drain()
    Saga.objects.filter(order_id=order_id).update(state_entered_at=timezone.now() - timedelta(days=1))

    assert saga_sweep_timeouts() == 0
    assert order_of(order_id).status == "COMPLETED"


def test_cancelling_a_pending_order_ends_it_cancelled_with_the_money_back():
    sku = make_product(stock=5, price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (sku, 1))

    decision = saga_cancel(order_id=order_id)
    drain()

    assert decision.to_state == "COMPENSATING"
    order = order_of(order_id)
    assert (order.status, order.failure_reason) == ("CANCELLED", "cancelled")
    assert order.failure_detail == OWN_FAILURE_DETAIL["cancelled"]
    assert saga_of(order_id).state == "CANCELLED"
    assert history(order_id)[-1] == "CANCELLED"
    assert_no_money_moved_in_net(customer)
    assert stock(sku) == (5, 0, 5)
    assert "order.failed" in outbox_keys(order_id)


@pytest.mark.parametrize(("balance_amount", "final_state"), [("100.00", "COMPLETED"), ("1.00", "FAILED")])
def test_cancelling_a_final_order_is_refused_and_changes_nothing(balance_amount, final_state):
    sku = make_product(price="10.00").sku
    order_id = place(make_account(balance=balance_amount).customer_id, (sku, 1))
    drain()
    rows_before = OutboxMessage.objects.count()

    with pytest.raises(OrderNotCancellableError) as caught:
        saga_cancel(order_id=order_id)

    assert caught.value.code == "order_not_cancellable"
    assert caught.value.details == {"state": final_state}
    assert order_of(order_id).status == final_state
    assert OutboxMessage.objects.count() == rows_before


def test_cancelling_an_unknown_order_is_not_found():
    with pytest.raises(SagaNotFoundError):
        saga_cancel(order_id=str(uuid.uuid4()))


def test_many_orders_for_the_last_units_complete_exactly_as_many_as_there_is_stock():
    sku = make_product(stock=3, price="1.00").sku
    customers = [make_account(balance="10.00").customer_id for _ in range(5)]

    orders = [place(customer, (sku, 1)) for customer in customers]
    drain()

    statuses = sorted(Order.objects.filter(id__in=orders).values_list("status", "failure_reason"))
    assert statuses == [("COMPLETED", "")] * 3 + [("FAILED", "out_of_stock")] * 2
    assert stock(sku) == (0, 0, 0)
    assert sum(balance(c) for c in customers) == Decimal("47.00")
