"""saga_audit finds what breaks an invariant, and stays quiet when nothing does."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from config.audit import audit
from inventory.models import Product
from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from orders.models import Order
from payments.models import Account
from saga.models import Saga
from tests.factories import make_account, make_product
from tests.integration.support import drain, make_overdue, place

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inprocess")]


def invariants(violations) -> set[int]:
    return {violation.invariant for violation in violations}


def test_a_quiet_system_after_every_kind_of_order_is_clean():
    sku = make_product(stock=1, price="10.00").sku
    rich, poor = make_account(balance="100.00").customer_id, make_account(balance="1.00").customer_id
    place(rich, (sku, 1)), place(poor, (sku, 1)), place(rich, (sku, 1))
    drain()

    assert audit(settled=True) == []
    out = io.StringIO()
    call_command("saga_audit", "--settled", stdout=out)
    assert "audit clean" in out.getvalue()


def test_an_order_in_flight_is_fine_until_it_is_past_its_deadline(settings):
    settings.SAGA_SWEEP_INTERVAL_S = 0.1
    order_id = place(make_account().customer_id, (make_product().sku, 1))

    assert invariants(audit()) == set()
    assert invariants(audit(settled=True)) == {1, 6}  # pending, and its messages not yet delivered

    make_overdue(order_id)
    [violation] = [v for v in audit() if v.invariant == 1]
    assert order_id in violation.subject and "past its deadline" in violation.problem


def test_an_order_without_a_saga_is_reported():
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    drain()
    Order.objects.filter(id=order_id).update(status=Order.Status.PENDING)
    Saga.objects.filter(order_id=order_id).delete()

    assert any(v.invariant == 1 and "has no saga" in v.problem for v in audit())


def test_money_and_stock_that_do_not_add_up_are_reported_and_the_command_fails():
    sku = make_product(stock=5).sku
    customer = make_account(balance="50.00").customer_id
    place(customer, (sku, 1))
    drain()
    Account.objects.filter(customer_id=customer).update(balance=Decimal("49.00"))
    Product.objects.filter(sku=sku).update(on_hand=7)

    found = audit(settled=True)

    assert invariants(found) == {4, 5}
    with pytest.raises(SystemExit) as exit_:
        call_command("saga_audit", "--settled", stdout=io.StringIO(), stderr=io.StringIO())
    assert exit_.value.code == 1


def test_a_completed_order_without_its_charge_is_reported():
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    drain()
    Order.objects.filter(id=order_id).update(total=Decimal("999.00"))

    assert 2 in invariants(audit(settled=True))


def test_a_published_message_that_no_consumer_applied_or_dead_lettered_is_reported_as_lost():
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    drain()
    lost = OutboxMessage.objects.get(order_id=order_id, routing_key="inventory.reserve")
    InboxMessage.objects.filter(consumer="inventory", message_id=str(lost.message_id)).delete()

    [violation] = audit(settled=True)

    assert violation.invariant == 6
    assert str(lost.message_id) in violation.subject and "never processed by inventory" in violation.problem


def test_a_message_kept_as_a_dead_letter_is_not_lost():
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    drain()
    kept = OutboxMessage.objects.get(order_id=order_id, routing_key="inventory.reserve")
    InboxMessage.objects.filter(consumer="inventory", message_id=str(kept.message_id)).delete()
    DeadLetter.objects.create(
        message_id=str(kept.message_id),
        routing_key=kept.routing_key,
        queue="inventory",
        body="{}",
        reason="handler_error",
        first_failed_at=timezone.now(),
        last_failed_at=timezone.now(),
    )

    assert audit(settled=True) == []


def test_an_unpublished_outbox_row_is_lost_once_older_than_the_relays_allow():
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    drain()
    OutboxMessage.objects.filter(order_id=order_id, routing_key="order.completed").update(published_at=None)

    assert audit() == []  # fresh: a relay may still take it
    later = timezone.now() + timedelta(minutes=5)
    assert [v.invariant for v in audit(now=later)] == [6]


def test_an_audit_since_a_time_checks_the_orders_and_messages_of_that_window_and_all_money_and_stock():
    sku = make_product(stock=10, price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    old, recent = place(customer, (sku, 1)), place(customer, (sku, 1))
    drain()
    Order.objects.filter(id=old).update(created_at=timezone.now() - timedelta(days=2))
    for order_id in (old, recent):  # both break invariant 2
        Order.objects.filter(id=order_id).update(total=Decimal("999.00"))
    lost = OutboxMessage.objects.get(order_id=old, routing_key="inventory.reserve")
    OutboxMessage.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(days=2))
    InboxMessage.objects.filter(consumer="inventory", message_id=str(lost.message_id)).delete()
    Product.objects.filter(sku=sku).update(on_hand=3)  # breaks invariant 5 whatever the window

    windowed = audit(settled=True, since=timezone.now() - timedelta(days=1))
    whole = audit(settled=True)

    assert {(v.invariant, v.subject) for v in windowed} == {(2, f"order {recent}"), (5, f"product {sku}")}
    assert {(2, f"order {old}"), (6, f"message {lost.message_id}")} <= {(v.invariant, v.subject) for v in whole}
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("saga_audit", "--settled", "--since", "24h", stdout=out, stderr=io.StringIO())
    assert f"order {recent}" in out.getvalue() and f"order {old}" not in out.getvalue()


@pytest.mark.parametrize("window", ["24", "h", "0h", "1w", "-2d"])
def test_a_since_that_is_not_a_number_and_a_unit_is_refused(window):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since takes a number and a unit"):
        call_command("saga_audit", f"--since={window}", stdout=io.StringIO())
