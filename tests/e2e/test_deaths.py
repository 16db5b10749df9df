"""A worker that dies at the two worst instants of a message's trip, for each message of the saga:

- between a handler's commit and the ack: the broker delivers the message again, and the inbox makes that
  delivery a no-op;
- between the broker's confirm of a publish and the relay's mark: the message is published again, and the same
  inbox skips the second copy.

With the local hand-off (MESSAGING_LOCAL_HANDOFF), two more:

- between the commit that wrote a leased row and its hand-off: the relay publishes it once the lease has ended;
- inside the hand-off, after its handlers ran and before its commit: nothing of it is kept, and the same;
- the same two instants of the relay's hand-off of the API's payment.process, which no lease covers: the next
  relay's sweep finds it unpublished and hands it over.

Each time the order completes once: one capture, the stock taken once, a clean audit. On the compensation path
(an order the stock cannot serve), the same two instants of each of its messages, which travel through the
compensation queues (`<consumer>.compensations`): the order fails once, refunded once, no stock taken.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from config.audit import audit
from messaging.models import InboxMessage, OutboxMessage
from payments.models import LedgerEntry
from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.e2e.dying_worker import DIED
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_worker, dying_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

CONSUMER = {
    "payment.process": "payments",
    "payment.processed": "saga",
    "inventory.reserve": "inventory",
    "inventory.reserved": "saga",
}
# The messages of an order that the stock cannot serve, after its charge: the stock's refusal, then the refund.
COMPENSATION_CONSUMER = {
    "inventory.reservation_failed": "saga",
    "payment.refund": "payments",
    "payment.refunded": "saga",
}


def place_and_lose_a_worker(api, started, instant: str, message_type: str, quantity: int = 2) -> tuple[dict, str, str]:
    """An order of `quantity` of a product with 5 in stock, placed while the only worker is one that dies at
    `instant` of `message_type`."""
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")
    dying = started(dying_worker("dying", instant, message_type))
    order = place_order(api, customer, [{"sku": sku, "quantity": quantity}])
    wait_for(lambda: not dying.running(), timeout=30, message=f"the worker to die at the {instant} of {message_type}")
    assert dying.popen.returncode == DIED, dying.log()[-3000:]
    return order, customer, sku


def assert_settled(message_id: str) -> None:
    """The message applied once, nothing left in the outbox, and a clean audit."""
    assert InboxMessage.objects.filter(message_id=message_id).count() == 1
    wait_for(
        lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(),
        timeout=30,
        message="the outbox to be fully published",
    )
    wait_for(lambda: not audit(settled=True), timeout=30, message="a clean audit")


def assert_completed_once(api, order: dict, customer: str, sku: str, message_id: str) -> None:
    final = wait_final(api, order["id"])
    assert final["status"] == "COMPLETED", final
    assert [step["to_state"] for step in final["saga"]["history"]] == [
        "PAYMENT_PENDING",
        "INVENTORY_PENDING",
        "COMPLETED",
    ]
    assert LedgerEntry.objects.filter(payment__order_id=order["id"], kind=LedgerEntry.Kind.CAPTURE).count() == 1
    assert balance(api, customer) == Decimal("80.00")
    wait_for(lambda: stock(api, sku)["on_hand"] == 3, message="the goods to leave on_hand")
    assert (stock(api, sku)["on_hand"], stock(api, sku)["reserved"]) == (3, 0)
    assert_settled(message_id)


@pytest.mark.parametrize("message_type", list(CONSUMER))
def test_a_worker_dead_between_the_commit_and_the_ack_leaves_a_redelivery_that_changes_nothing(
    api, started, message_type
):
    order, customer, sku = place_and_lose_a_worker(api, started, "ack", message_type)
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key=message_type)
    # The handler committed: its inbox row is there, while the broker still holds the message.
    assert InboxMessage.objects.filter(consumer=CONSUMER[message_type], message_id=message.message_id).exists()

    survivor = started(celery_worker("survivor"))

    assert_completed_once(api, order, customer, sku, str(message.message_id))
    wait_for(
        lambda: f"duplicate {message_type} skipped by {CONSUMER[message_type]}" in survivor.log(),
        message=f"the survivor to skip the redelivered {message_type}",
    )


@pytest.mark.parametrize("message_type", ["payment.process", "inventory.reserve"])
def test_a_worker_dead_between_the_confirm_and_the_mark_publishes_again_and_the_copy_changes_nothing(
    api, started, message_type
):
    order, customer, sku = place_and_lose_a_worker(api, started, "mark", message_type)
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key=message_type)
    # The broker took the message, the outbox does not know it.
    assert message.published_at is None

    survivor = started(celery_worker("survivor"))

    assert_completed_once(api, order, customer, sku, str(message.message_id))
    wait_for(
        lambda: f"duplicate {message_type} skipped by {CONSUMER[message_type]}" in survivor.log(),
        message=f"the survivor to skip the second copy of {message_type}",
    )


def assert_failed_and_refunded_once(api, order: dict, customer: str, sku: str, message_id: str) -> None:
    final = wait_final(api, order["id"])
    assert (final["status"], final["failure_reason"]) == ("FAILED", "out_of_stock"), final
    assert [step["to_state"] for step in final["saga"]["history"]] == [
        "PAYMENT_PENDING",
        "INVENTORY_PENDING",
        "COMPENSATING",
        "FAILED",
    ]
    entries = LedgerEntry.objects.filter(payment__order_id=order["id"])
    assert sorted(entries.values_list("kind", flat=True)) == [LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.REFUND]
    assert balance(api, customer) == Decimal("100.00")
    assert (stock(api, sku)["on_hand"], stock(api, sku)["reserved"]) == (5, 0)
    assert_settled(message_id)


@pytest.mark.parametrize("message_type", list(COMPENSATION_CONSUMER))
def test_a_worker_dead_between_the_commit_and_the_ack_of_a_compensation_leaves_a_redelivery_that_changes_nothing(
    api, started, message_type
):
    order, customer, sku = place_and_lose_a_worker(api, started, "ack", message_type, quantity=6)
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key=message_type)
    consumer = COMPENSATION_CONSUMER[message_type]
    assert InboxMessage.objects.filter(consumer=consumer, message_id=message.message_id).exists()

    survivor = started(celery_worker("survivor"))

    assert_failed_and_refunded_once(api, order, customer, sku, str(message.message_id))
    wait_for(
        lambda: f"duplicate {message_type} skipped by {consumer}" in survivor.log(),
        message=f"the survivor to skip the redelivered {message_type}",
    )


def test_a_worker_dead_between_the_confirm_and_the_mark_of_a_refund_publishes_it_again_and_refunds_once(api, started):
    order, customer, sku = place_and_lose_a_worker(api, started, "mark", "payment.refund", quantity=6)
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key="payment.refund")
    assert message.published_at is None

    survivor = started(celery_worker("survivor"))

    assert_failed_and_refunded_once(api, order, customer, sku, str(message.message_id))
    wait_for(
        lambda: "duplicate payment.refund skipped by payments" in survivor.log(),
        message="the survivor to skip the second copy of payment.refund",
    )


HANDOFF = {"MESSAGING_LOCAL_HANDOFF": "true", "MESSAGING_HANDOFF_LEASE_S": "1"}


@pytest.mark.parametrize("instant", ["handoff", "handed"])
@pytest.mark.parametrize("message_type", ["payment.processed", "inventory.reserve"])
def test_a_worker_dead_before_its_hand_off_commits_leaves_the_row_to_the_relay_once_the_lease_ends(
    api, started, instant, message_type
):
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")
    dying = started(dying_worker("dying", instant, message_type, **HANDOFF))
    order = place_order(api, customer, [{"sku": sku, "quantity": 2}])
    wait_for(lambda: not dying.running(), timeout=30, message=f"the worker to die at the {instant} of {message_type}")
    assert dying.popen.returncode == DIED, dying.log()[-3000:]
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key=message_type)
    # Written and committed, leased to the dead worker, and applied by none of its consumers.
    assert message.published_at is None and message.handoff_until is not None
    assert not InboxMessage.objects.filter(message_id=message.message_id).exists()

    started(celery_worker("survivor", **HANDOFF))

    assert_completed_once(api, order, customer, sku, str(message.message_id))
    message.refresh_from_db()
    assert message.published_at is not None and not message.handed_off  # it went through the broker


@pytest.mark.parametrize("instant", ["handoff", "handed"])
def test_a_worker_dead_in_its_relays_hand_off_of_the_apis_payment_process_leaves_it_to_the_next_relay(
    api, started, instant
):
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")
    dying = started(dying_worker("dying", instant, "payment.process", **HANDOFF))
    order = place_order(api, customer, [{"sku": sku, "quantity": 2}])
    wait_for(lambda: not dying.running(), timeout=30, message=f"the worker to die at the {instant} of payment.process")
    assert dying.popen.returncode == DIED, dying.log()[-3000:]
    message = OutboxMessage.objects.get(order_id=order["id"], routing_key="payment.process")
    # Committed by the API, claimed by the dead worker's relay, leased to none and applied by no consumer.
    assert message.published_at is None and message.handoff_until is None
    assert not InboxMessage.objects.filter(message_id=message.message_id).exists()

    started(celery_worker("survivor", **HANDOFF))

    assert_completed_once(api, order, customer, sku, str(message.message_id))
    message.refresh_from_db()
    assert message.published_at is not None and message.handed_off  # by the survivor's relay, at its first sweep
