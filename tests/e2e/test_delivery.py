"""Delivery under pressure: every message delivered twice, and many orders racing for little stock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue

from messaging import bus
from messaging.models import InboxMessage
from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import wait_for

pytestmark = [pytest.mark.e2e]


class Duplicator(threading.Thread):
    """Taps every message on the exchange and delivers a second copy, same message_id, to each consumer."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.copies = 0

    def run(self) -> None:
        tap = Queue(
            "test.duplicator", Exchange(settings.MESSAGING_EXCHANGE, type="topic"), routing_key="#", auto_delete=True
        )
        with Connection(settings.BROKER_URL) as broker:
            producer = Producer(broker.channel())
            with Consumer(broker.channel(), queues=[tap], on_message=lambda m: self._copy(producer, m)):
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        broker.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass

    def _copy(self, producer: Producer, message) -> None:
        for queue in bus.consumers_for(message.delivery_info["routing_key"]):
            producer.publish(
                message.body,
                exchange="",
                routing_key=queue,
                headers=message.headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                **{
                    k: v
                    for k, v in message.properties.items()
                    if k in {"message_id", "correlation_id", "type", "timestamp"}
                },
            )
            self.copies += 1
        message.ack()


@pytest.fixture
def duplicator(worker):
    tap = Duplicator()
    tap.start()
    assert tap.ready.wait(10)
    yield tap
    tap.stop.set()
    tap.join(5)


# Deliveries to consumers: 4 for a completed order, 2 for a declined one, 6 for a refunded one (no consumer here
# hears order.completed or order.failed).
DELIVERIES = 4 + 2 + 6


def test_every_message_delivered_twice_has_one_effect(api, worker, duplicator):
    # given a duplicator that sends every message to its consumers a second time
    sku = create_product(api, stock_level=3, price="10.00")
    rich, poor = create_account(api, balance_amount="100.00"), create_account(api, balance_amount="5.00")

    # when orders run through every path: completed, declined, and out of stock with a refund
    completed = place_order(api, rich, [{"sku": sku, "quantity": 2}])
    declined = place_order(api, poor, [{"sku": sku, "quantity": 1}])
    finals = [wait_final(api, completed["id"]), wait_final(api, declined["id"])]
    refunded = wait_final(api, place_order(api, rich, [{"sku": sku, "quantity": 2}])["id"])
    wait_for(lambda: duplicator.copies == DELIVERIES, message="the duplicates to be sent")
    wait_for(lambda: stock(api, sku)["on_hand"] == 1, message="the goods of the completed order to leave")

    # then every effect happened once
    assert [o["status"] for o in finals] == ["COMPLETED", "FAILED"]
    assert (refunded["status"], refunded["failure_reason"]) == ("FAILED", "out_of_stock")
    assert balance(api, rich) == Decimal("80.00")
    assert balance(api, poor) == Decimal("5.00")
    product = stock(api, sku)
    assert (product["on_hand"], product["reserved"], product["available"]) == (1, 0, 1)
    charges = api.get("/api/payments", params={"customer_id": rich}).json()["results"]
    assert sorted(p["status"] for p in charges) == ["CAPTURED", "REFUNDED"]
    # and the second copies really arrived and were recognised: each consumer applied each message once
    wait_for(lambda: worker.log().count("skipped by") == DELIVERIES, message="the worker to skip every copy")
    per_consumer = InboxMessage.objects.values_list("consumer", "message_id")
    assert len(per_consumer) == len(set(per_consumer))


def test_fifty_concurrent_orders_for_ten_units_complete_exactly_ten(api, worker):
    sku = create_product(api, stock_level=10, price="7.00")
    customers = [create_account(api, balance_amount="7.00") for _ in range(50)]
    lowest_available = [10]
    watching = threading.Event()

    def watch_stock() -> None:
        while not watching.is_set():
            lowest_available[0] = min(lowest_available[0], stock(api, sku)["available"])

    watcher = threading.Thread(target=watch_stock, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=25) as pool:
        orders = list(pool.map(lambda c: place_order(api, c, [{"sku": sku, "quantity": 1}]), customers))
        finals = list(pool.map(lambda o: wait_final(api, o["id"], timeout=60), orders))
    watching.set()
    watcher.join(5)

    statuses = [o["status"] for o in finals]
    assert statuses.count("COMPLETED") == 10
    assert statuses.count("FAILED") == 40
    assert {o["failure_reason"] for o in finals if o["status"] == "FAILED"} == {"out_of_stock"}
    assert lowest_available[0] >= 0
    wait_for(lambda: stock(api, sku)["on_hand"] == 0, message="the ten units to leave on_hand")
    assert stock(api, sku)["reserved"] == 0
    paid = {o["customer_id"] for o in finals if o["status"] == "COMPLETED"}
    for customer in customers:
        assert balance(api, customer) == (Decimal("0.00") if customer in paid else Decimal("7.00"))
