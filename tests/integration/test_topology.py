"""The broker's topology on a real RabbitMQ (this run's vhost): a key a consumer no longer handles is unbound
from its queue, so a queue declared by an older version stops receiving it; a compensation goes to its
consumer's compensation queue alone, and back there from its delay queue."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from kombu import Connection, Producer, binding

from messaging import topology

pytestmark = pytest.mark.django_db


def depth(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).message_count


def publish(channel, routing_key: str) -> None:
    Producer(channel, exchange=topology.main_exchange()).publish(
        {"order_id": "00000000-0000-0000-0000-000000000000"}, routing_key=routing_key, delivery_mode=2
    )


def test_the_final_events_an_older_inventory_queue_was_bound_to_are_unbound():
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        channel = broker.default_channel
        # given the inventory queue as versions before 2026-12 declared it: bound to the saga's final events
        topology.declare_all(channel)
        channel.queue_purge("inventory")
        older = topology.consumer_queue("inventory")
        older.bindings = {
            *older.bindings,
            *(binding(topology.main_exchange(), routing_key=key) for key in ("order.completed", "order.failed")),
        }
        older(channel).declare()
        publish(channel, "order.completed")
        assert depth(channel, "inventory") == 1
        channel.queue_purge("inventory")

        # when this version declares the topology
        topology.declare_all(channel)

        # then the final events no longer reach it, and what it handles still does
        assert "order.completed" in topology.retired_keys("inventory")
        publish(channel, "order.completed")
        publish(channel, "order.failed")
        assert depth(channel, "inventory") == 0
        publish(channel, "inventory.reserve")
        assert depth(channel, "inventory") == 1
        channel.queue_purge("inventory")


def test_a_refund_goes_to_the_compensation_queue_and_no_longer_to_the_older_payments_binding():
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        channel = broker.default_channel
        # given the payments queue as versions before 2026-12-04 declared it: bound to payment.refund too
        topology.declare_all(channel)
        older = topology.consumer_queue("payments")
        older.bindings = {*older.bindings, binding(topology.main_exchange(), routing_key="payment.refund")}
        older(channel).declare()
        for queue in ("payments", "payments.compensations"):
            channel.queue_purge(queue)
        publish(channel, "payment.refund")
        assert (depth(channel, "payments"), depth(channel, "payments.compensations")) == (1, 1)
        for queue in ("payments", "payments.compensations"):
            channel.queue_purge(queue)

        # when this version declares the topology
        topology.declare_all(channel)

        # then a refund reaches the compensation queue alone, and a new payment the payments queue alone
        assert "payment.refund" in topology.retired_keys("payments")
        publish(channel, "payment.refund")
        assert (depth(channel, "payments"), depth(channel, "payments.compensations")) == (0, 1)
        publish(channel, "payment.process")
        assert (depth(channel, "payments"), depth(channel, "payments.compensations")) == (1, 1)
        for queue in ("payments", "payments.compensations"):
            channel.queue_purge(queue)


def test_a_retried_compensation_comes_back_to_the_compensation_queue_alone():
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        channel = broker.default_channel
        topology.declare_all(channel)
        for queue in ("payments", "payments.compensations"):
            channel.queue_purge(queue)
        # given a refund sent to its delay queue, as the worker sends one whose handling failed for a passing reason
        delay = topology.retry_queue_name(topology.queue_of("payments", "payment.refund"), 1)
        assert delay.startswith("payments.compensations.retry.")
        Producer(channel).publish(
            {"order_id": "00000000-0000-0000-0000-000000000000"}, exchange="", routing_key=delay, delivery_mode=2
        )
        assert depth(channel, delay) == 1

        # when its delay is over, then it waits in the compensation queue, not behind the new payments
        deadline = time.monotonic() + 10
        while depth(channel, "payments.compensations") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (depth(channel, "payments"), depth(channel, "payments.compensations"), depth(channel, delay)) == (
            0,
            1,
            0,
        )
        # and a new payment's delay queue still hands back to the payments queue
        assert topology.retry_queue_name(topology.queue_of("payments", "payment.process"), 1).startswith(
            "payments.retry."
        )
        channel.queue_purge("payments.compensations")
