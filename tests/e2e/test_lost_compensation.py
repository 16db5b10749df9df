"""A refund lost for good (dead-lettered after its retries) no longer leaves its saga COMPENSATING for ever:
with real workers and beat, the sweep sends it again with backoff, flags the saga for an operator, and the
order ends FAILED with the money back once payments can answer."""

from __future__ import annotations

import io
from decimal import Decimal

import psycopg
import pytest
from django.core.management import call_command

from config.audit import audit
from messaging.models import DeadLetter
from payments.models import Payment
from saga.models import Saga, SagaTransition
from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.plugin import worker_database_url
from tests.processes import celery_beat, celery_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

MAX_ATTEMPTS = 3
TIMING = {
    "SAGA_PAYMENT_DEADLINE_S": "30",
    "SAGA_INVENTORY_DEADLINE_S": "2",
    "SAGA_SWEEP_INTERVAL_S": "0.5",
    "SAGA_COMPENSATION_DEADLINE_S": "1",
    "SAGA_COMPENSATION_BACKOFF_MAX_S": "3",
    "SAGA_COMPENSATION_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
}


@pytest.fixture
def same_timing(settings):
    """The web (the live server) and the audit read the deadlines the worker and beat run with."""
    for name, value in TIMING.items():
        setattr(settings, name, type(getattr(settings, name))(value))


def test_a_refund_lost_after_its_retries_is_sent_again_until_the_money_is_back(api, started, same_timing):
    # given payments and the saga in a worker whose database sessions give up on a lock after 100 ms, beat,
    # and no inventory consumer yet: the stock will not answer in time
    impatient = f"{worker_database_url()}?options=-c%20lock_timeout%3D100"
    started(
        celery_worker(
            "core", MESSAGING_CONSUMERS="payments,saga", DATABASE_URL=impatient, MESSAGING_MAX_ATTEMPTS="2", **TIMING
        ),
        ("payments", "saga"),
    )
    started(celery_beat(**TIMING), queues=())
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")
    order_id = place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"]
    wait_for(
        lambda: Payment.objects.filter(order_id=order_id, status="CAPTURED").exists(), timeout=30, message="the charge"
    )

    with psycopg.connect(worker_database_url()) as blocker:
        # when the payment's row is locked by someone else, so that every refund times out and is dead-lettered
        blocker.execute("SELECT 1 FROM payments_payment WHERE order_id = %s FOR UPDATE", [order_id])
        wait_for(
            lambda: Saga.objects.filter(order_id=order_id, compensation_attempts__gte=MAX_ATTEMPTS).exists(),
            timeout=60,
            message="the refund to be sent again until the saga is flagged",
        )
        wait_for(
            lambda: DeadLetter.objects.filter(routing_key="payment.refund").count() >= 2,
            timeout=30,
            message="the refunds to be dead-lettered",
        )

        # then the saga is still COMPENSATING, flagged, and /health and saga_audit say so
        assert api.get(f"/api/orders/{order_id}").json()["status"] == "PENDING"
        health = api.get("/health").json()
        assert "stuck_sagas" in health["failing"], health
        assert "flagged after 3 compensation attempts" in health["checks"]["stuck_sagas"]
        out = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("saga_audit", stdout=out, stderr=io.StringIO())
        assert f"order {order_id}: PENDING, its saga in COMPENSATING has sent payment.refund" in out.getvalue()
        blocker.rollback()

    # when the lock is gone and inventory comes back
    started(celery_worker("inventory", MESSAGING_CONSUMERS="inventory", **TIMING), ("inventory",))

    # then the next refund goes through: the order fails with the money back, refunded once, nothing held
    final = wait_final(api, order_id, timeout=60)
    assert (final["status"], final["failure_reason"]) == ("FAILED", "timeout")
    assert balance(api, customer) == Decimal("100.00")
    assert list(Payment.objects.filter(order_id=order_id).values_list("status", flat=True)) == ["REFUNDED"]
    # (the reservation arrives after the timeout: taken, then given back by the release the saga sent)
    wait_for(lambda: stock(api, sku)["on_hand"] == 5, timeout=30, message="the stock to be released")
    assert (stock(api, sku)["reserved"], stock(api, sku)["available"]) == (0, 5)
    sent_again = SagaTransition.objects.filter(saga_id=order_id, from_state="COMPENSATING", message_type="saga.timeout")
    assert sent_again.count() >= MAX_ATTEMPTS - 1
    assert all(step.emitted == ["payment.refund"] for step in sent_again)
    # and the audit is clean: every refund was handled or is a dead letter, and the money adds up
    wait_for(lambda: not audit(settled=True), timeout=30, message="a clean audit")
    out = io.StringIO()
    call_command("saga_audit", "--settled", stdout=out)
    assert "audit clean" in out.getvalue()
