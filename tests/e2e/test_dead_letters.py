"""Retries that run out end in the dead letters; a replay finishes the order, and never charges twice."""

from __future__ import annotations

import io
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from kombu import Connection, Consumer, Producer

from messaging import topology
from messaging.models import DeadLetter
from tests.e2e.conftest import balance, place_order, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.plugin import worker_database_url
from tests.processes import celery_worker, wait_for, wait_until_consuming

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def impatient_worker(transactional_db):
    """A worker whose database sessions give up on a lock after 100 ms: a transient error."""
    url = f"{worker_database_url()}?options=-c%20lock_timeout%3D100"
    process = celery_worker("impatient", DATABASE_URL=url, MESSAGING_MAX_ATTEMPTS="3").start()
    wait_until_consuming(process)
    yield process
    process.stop()


def replay(*args: str) -> str:
    out = io.StringIO()
    call_command("replay_dead_letters", *args, "--by", "test-operator", stdout=out)
    return out.getvalue()


def test_exhausted_retries_are_dead_lettered_and_a_replay_completes_the_order(api, impatient_worker):
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="50.00")

    # given the customer's account row locked by someone else, so every charge attempt times out
    with psycopg.connect(worker_database_url()) as blocker:
        blocker.execute("SELECT 1 FROM payments_account WHERE customer_id = %s FOR UPDATE", [customer])
        order = place_order(api, customer, [{"sku": sku, "quantity": 1}])
        letter = wait_for(
            lambda: DeadLetter.objects.filter(routing_key="payment.process").first(),
            timeout=30,
            message="payment.process to be dead-lettered",
        )
        blocker.rollback()

    # then it was retried through the delay queues, then stored with its reason and attempts
    assert (letter.reason, letter.queue, letter.attempts) == ("retries_exhausted", "payments", 3)
    assert "LockNotAvailable" in letter.detail or "lock timeout" in letter.detail
    assert impatient_worker.log().count("transient failure of payment.process") == 2
    assert api.get(f"/api/orders/{order['id']}").json()["status"] == "PENDING"

    # when an operator looks first, then replays it
    assert "would #" in replay("--dry-run", "--type", "payment.process")
    assert "1 replayed" in replay("--type", "payment.process")
    final = wait_final(api, order["id"])

    # then the order completes, charged once
    assert final["status"] == "COMPLETED"
    assert balance(api, customer) == Decimal("40.00")
    letter.refresh_from_db()
    assert (letter.replayed_by, letter.replay_count) == ("test-operator", 1)

    # and a second replay is refused unless forced, and even forced it is a duplicate with no effect
    assert "0 replayed, 1 refused" in replay("--id", str(letter.pk))
    assert "skipped as a duplicate" in replay("--id", str(letter.pk), "--dry-run", "--force")
    assert "1 replayed" in replay("--id", str(letter.pk), "--force")
    wait_for(
        lambda: impatient_worker.log().count("duplicate payment.process skipped") == 1,
        message="the forced replay to be skipped by the inbox",
    )
    assert balance(api, customer) == Decimal("40.00")


def test_a_message_that_keeps_coming_back_is_dead_lettered_by_the_broker(api, started):
    """A message that kills its consumer again and again returns to the queue each time; past the quorum
    queue's delivery limit the broker dead-letters it, and the worker stores it with that reason."""
    # given a worker that stores dead letters but does not consume payments
    started(celery_worker("no-payments", MESSAGING_CONSUMERS="saga,inventory"), ("saga", "inventory"))
    message_id = str(uuid.uuid4())
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        Producer(broker.channel()).publish(
            b'{"order_id": "x"}',
            exchange="",
            routing_key="payments",
            message_id=message_id,
            type="payment.process",
            content_type="application/json",
            delivery_mode=2,
        )
        # when a consumer of payments takes it and dies (returns it unacked) more often than the limit allows
        returned = []
        channel = broker.channel()
        channel.basic_qos(0, 1, False)

        def crash(message):
            returned.append(message.headers.get("x-delivery-count"))
            message.requeue()

        with Consumer(channel, queues=[topology.consumer_queue("payments")], on_message=crash, auto_declare=False):
            deadline = time.monotonic() + 30
            while not DeadLetter.objects.filter(message_id=message_id).exists():
                assert time.monotonic() < deadline, f"not dead-lettered after {len(returned)} deliveries"
                try:
                    broker.drain_events(timeout=0.2)
                except TimeoutError:
                    pass

    # then it was delivered limit + 1 times, and is stored with the broker's reason, ready to be replayed
    assert len(returned) == settings.MESSAGING_DELIVERY_LIMIT + 1
    letter = DeadLetter.objects.get(message_id=message_id)
    assert (letter.reason, letter.queue, letter.routing_key) == ("delivery_limit", "payments", "payment.process")
    assert letter.body == '{"order_id": "x"}'
