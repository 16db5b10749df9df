"""Several workers, relays and beat schedulers against one database and one broker."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from config.audit import audit
from messaging.models import OutboxMessage
from saga.models import SagaTransition
from tests.e2e.conftest import place_order, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_beat, celery_worker, wait_for

pytestmark = [pytest.mark.e2e]


def test_two_workers_with_their_relays_complete_every_order_once(api, started):
    first, second = started(celery_worker("worker-1")), started(celery_worker("worker-2"))
    sku = create_product(api, stock_level=1000, price="1.00")
    customers = [create_account(api, balance_amount="1000.00") for _ in range(10)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        orders = list(
            pool.map(lambda n: place_order(api, customers[n % 10], [{"sku": sku, "quantity": 1}]), range(100))
        )
        finals = list(pool.map(lambda o: wait_final(api, o["id"], timeout=60), orders))

    assert [o["status"] for o in finals] == ["COMPLETED"] * 100
    wait_for(lambda: not audit(settled=True), timeout=30, message="a clean audit")
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    # Both relays and both sets of consumers took part, and no message reached a consumer twice.
    handled = [first.log().count('"handled '), second.log().count('"handled ')]
    assert min(handled) > 0, handled
    assert "skipped by" not in first.log() + second.log()


def test_two_beat_schedulers_time_each_saga_out_once(api, started):
    timing = {"SAGA_PAYMENT_DEADLINE_S": "1", "SAGA_SWEEP_INTERVAL_S": "0.2"}
    started(celery_worker("no-payments", MESSAGING_CONSUMERS="saga,inventory", **timing), ("saga", "inventory"))
    started(celery_beat(**timing), queues=())
    started(celery_beat(**timing), queues=())
    sku = create_product(api, stock_level=100)
    customer = create_account(api, balance_amount="1000.00")

    orders = [place_order(api, customer, [{"sku": sku, "quantity": 1}]) for _ in range(20)]
    wait_for(
        lambda: SagaTransition.objects.filter(message_type="saga.timeout").count() >= 20,
        timeout=30,
        message="every saga to time out",
    )
    time.sleep(2)  # more sweeps from both schedulers

    timeouts = list(SagaTransition.objects.filter(message_type="saga.timeout").values_list("saga_id", flat=True))
    assert sorted(map(str, timeouts)) == sorted(o["id"] for o in orders)
    refunds = OutboxMessage.objects.filter(routing_key="payment.refund").values_list("order_id", flat=True)
    assert sorted(refunds) == sorted(o["id"] for o in orders)
