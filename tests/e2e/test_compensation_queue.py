"""A refund never waits behind new work: with a real worker, a `payment.refund` published after thousands of
`payment.process` is handled while most of them are still queued, as the consumer's thread takes what it
received of its compensation queue first, and nothing of either is lost or doubled."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from messaging import outbox
from payments.models import Payment
from payments.services import payment_process
from tests.e2e.test_saga_flows import create_account
from tests.processes import celery_worker, wait_for

pytestmark = pytest.mark.e2e

BACKLOG = 3000


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

    # then the refund is done while the payments queue still holds most of the new payments
    wait_for(
        lambda: Payment.objects.filter(order_id=refunded, status=Payment.Status.REFUNDED).exists(),
        timeout=60,
        message="the refund",
    )
    charged_by_then = new_payments.count()
    assert charged_by_then < BACKLOG * 0.9, f"{charged_by_then} of {BACKLOG} new payments were charged first"
    # and every new payment is charged once, none lost
    wait_for(lambda: new_payments.count() == BACKLOG, timeout=120, message="every new payment")
    assert new_payments.filter(status=Payment.Status.CAPTURED).count() == BACKLOG
    assert Payment.objects.get(order_id=refunded).status == Payment.Status.REFUNDED
