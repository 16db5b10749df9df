"""A refund never waits behind new work: with a real worker, a `payment.refund` published after thousands of
`payment.process` is handled while most of them are still queued, as the consumer's thread takes what it
received of its compensation queue first; a refund retried after a passing failure comes back to that queue,
not behind the new work; and nothing of either is lost or doubled."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from django.db import transaction

from messaging import outbox, topology
from payments.models import Payment
from payments.services import payment_process
from tests.e2e.test_saga_flows import create_account
from tests.plugin import worker_database_url
from tests.processes import celery_worker, queue_messages, wait_for

pytestmark = pytest.mark.e2e

BACKLOG = 3000


def assert_refunded_before_most_of(new_payments, refunded: str) -> None:
    wait_for(
        lambda: Payment.objects.filter(order_id=refunded, status=Payment.Status.REFUNDED).exists(),
        timeout=60,
        message="the refund",
    )
    charged_by_then = new_payments.count()
    assert charged_by_then < BACKLOG * 0.9, f"{charged_by_then} of {BACKLOG} new payments were charged first"
    wait_for(lambda: new_payments.count() == BACKLOG, timeout=120, message="every new payment")
    assert new_payments.filter(status=Payment.Status.CAPTURED).count() == BACKLOG
    assert Payment.objects.get(order_id=refunded).status == Payment.Status.REFUNDED


def test_a_refund_is_handled_while_the_new_payments_before_it_are_still_queued(api, started):
    customer = create_account(api, balance_amount="10000.00")
    refunded = str(uuid.uuid4())
    with transaction.atomic():
        payment_process(order_id=refunded, customer_id=customer, amount=Decimal("5.00"), currency="EUR")
    # given thousands of new payments in the outbox, then a refund behind them
    with transaction.atomic():
        for _ in range(BACKLOG):
            payload = {"order_id": str(uuid.uuid4()), "customer_id": customer, "amount": "1.00", "currency": "EUR"}
            outbox.publish("payment.process", payload)
        outbox.publish("payment.refund", {"order_id": refunded, "reason": "out_of_stock"})
    new_payments = Payment.objects.filter(customer_id=customer).exclude(order_id=refunded)

    # when a worker that hosts payments relays and consumes them
    started(celery_worker("payments", MESSAGING_CONSUMERS="payments"), ("payments", "payments.compensations"))

    # then the refund is done while the payments queue still holds most of the new payments, and every new
    # payment is charged once, none lost
    assert_refunded_before_most_of(new_payments, refunded)


def delayed(queue_names: list[str]) -> int:
    """How many messages wait in the first delay queue of each of `queue_names` (0 for one not declared yet)."""
    return sum(queue_messages(topology.retry_queue_name(name, 1)) for name in queue_names)


RETRY_BASE_S = "2"  # the first retry waits 2 s in its delay queue: long enough for the test to see it there


def test_a_refund_retried_after_a_passing_failure_still_goes_before_the_new_payments(api, started, settings):
    settings.MESSAGING_RETRY_BASE_S = float(RETRY_BASE_S)  # the delay queues' names, as the worker declares them
    customer = create_account(api, balance_amount="10000.00")
    refunded = str(uuid.uuid4())
    with transaction.atomic():
        payment_process(order_id=refunded, customer_id=customer, amount=Decimal("5.00"), currency="EUR")
    new_payments = Payment.objects.filter(customer_id=customer).exclude(order_id=refunded)

    with psycopg.connect(worker_database_url()) as blocker:
        # given the refunded payment's row locked by someone else, and a refund, then thousands of new payments
        blocker.execute("SELECT 1 FROM payments_payment WHERE order_id = %s FOR UPDATE", [refunded])
        with transaction.atomic():
            outbox.publish("payment.refund", {"order_id": refunded, "reason": "out_of_stock"})
            for _ in range(BACKLOG):
                payload = {"order_id": str(uuid.uuid4()), "customer_id": customer, "amount": "1.00", "currency": "EUR"}
                outbox.publish("payment.process", payload)

        # when a worker whose sessions give up on a lock after 100 ms takes the refund first, and retries it
        impatient = f"{worker_database_url()}?options=-c%20lock_timeout%3D100"
        started(
            celery_worker(
                "payments", MESSAGING_CONSUMERS="payments", DATABASE_URL=impatient, MESSAGING_RETRY_BASE_S=RETRY_BASE_S
            ),
            ("payments", "payments.compensations"),
        )
        wait_for(lambda: delayed(["payments", "payments.compensations"]) == 1, timeout=30, message="the refund's retry")
        blocker.rollback()

    # then the retried refund is done while the payments queue still holds most of the new payments, and every
    # new payment is charged once, none lost
    assert_refunded_before_most_of(new_payments, refunded)
