"""A saga of four steps, two of them a participant's that lives in the test suite only (tests/participants/
shipping: packing, then shipping, after the order saga's payment and stock), run end to end on PostgreSQL by
the in-process transport. Nothing in the product names the warehouse: the app is installed here, its tables
migrated, and the saga in use is the four-step one (SAGA_DEFINITION), for the length of each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from inventory.models import Reservation
from messaging import bus, contracts
from messaging.catalogue import CATALOGUE
from saga import registry
from saga.models import SagaTransition
from saga.services import saga_sweep_timeouts
from saga.steps import ORDER_SAGA
from tests.factories import make_account, make_product
from tests.integration.support import (
    balance,
    deliver,
    deliver_all_except,
    drain,
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
from tests.participants.shipping.models import NoDelivery, Parcel, Shipment
from tests.participants.shipping.saga import FOUR_STEPS

APP = "tests.participants.shipping"


@contextmanager
def installed() -> Iterator[None]:
    """The warehouse installed, its tables migrated, the four-step saga in use, and its deadlines set; all of
    it undone afterwards."""
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, APP],
        SAGA_DEFINITION="tests.participants.shipping.saga.FOUR_STEPS",
        PACKING_DEADLINE_S=30.0,
        SHIPPING_DEADLINE_S=60.0,
    ):
        call_command("migrate", "shipping", verbosity=0)
        try:
            yield
        finally:
            call_command("migrate", "shipping", "zero", verbosity=0)


@pytest.fixture
def warehouse(transactional_db, inprocess):
    with installed():
        yield


def _order(*, customer_balance: str = "100.00", stock_on_hand: int = 5) -> tuple[str, str, str]:
    """Place an order of 2 x 12.50; returns its id, its customer and its sku."""
    sku = make_product(stock=stock_on_hand, price="12.50").sku
    customer = make_account(balance=customer_balance).customer_id
    return place(customer, (sku, 2)), customer, sku


def _cause_of(order_id: str, routing_key: str, index: int = 0) -> str:
    """The routing key of the message whose handling sent the `index`-th `routing_key` of the order."""
    causes = {str(row.message_id): row.routing_key for row in outbox(order_id)}
    return causes[outbox(order_id, routing_key)[index].causation_id]


@pytest.mark.usefixtures("warehouse")
class TestFourSteps:
    def test_the_order_completes_after_its_fourth_step(self):
        order_id, customer, sku = _order()

        drain()

        assert order_of(order_id).status == "COMPLETED"
        assert history(order_id) == [
            "PAYMENT_PENDING",
            "INVENTORY_PENDING",
            "PACKING_PENDING",
            "SHIPPING_PENDING",
            "COMPLETED",
        ]
        assert outbox_keys(order_id) == [
            "order.created",
            "payment.process",
            "payment.processed",
            "inventory.reserve",
            "inventory.reserved",
            "packing.pack",
            "packing.packed",
            "shipping.dispatch",
            "shipping.dispatched",
            "order.completed",
        ]
        assert outbox(order_id, "packing.pack")[0].payload["items"] == [{"sku": sku, "quantity": 2}]
        assert outbox(order_id, "shipping.dispatch")[0].payload["customer_id"] == customer
        assert Parcel.objects.get(order_id=order_id).status == "PACKED"
        assert Shipment.objects.get(order_id=order_id).status == "DISPATCHED"
        assert payments_of(order_id) == [("CAPTURED", Decimal("25.00"))]
        assert stock(sku) == (3, 0, 3)
        assert Reservation.objects.get(order_id=order_id).status == "COMMITTED"

    def test_a_failure_of_the_last_step_compensates_the_earlier_steps_in_reverse_order(self):
        # given a customer the carrier does not deliver to
        order_id, customer, sku = _order()
        NoDelivery.objects.create(customer_id=customer)

        # when the order runs through
        drain()

        # then shipping failed, and what the steps before it did is undone, the last first, each compensation
        # sent once the one after it is answered; the stock goes back as the compensation passes inventory
        order = order_of(order_id)
        assert (order.status, order.failure_reason) == ("FAILED", "undeliverable")
        assert order.failure_detail == "the carrier does not deliver to this customer"
        assert history(order_id) == [
            "PAYMENT_PENDING",
            "INVENTORY_PENDING",
            "PACKING_PENDING",
            "SHIPPING_PENDING",
            "UNPACKING",
            "COMPENSATING",
            "FAILED",
        ]
        assert outbox_keys(order_id)[7:] == [
            "shipping.dispatch",
            "shipping.failed",
            "packing.unpack",
            "packing.unpacked",
            "inventory.release",
            "payment.refund",
            "inventory.released",
            "payment.refunded",
            "order.failed",
        ]
        assert _cause_of(order_id, "packing.unpack") == "shipping.failed"
        assert _cause_of(order_id, "inventory.release") == "packing.unpacked"
        assert _cause_of(order_id, "payment.refund") == "packing.unpacked"
        assert _cause_of(order_id, "inventory.released") == "inventory.release"
        assert _cause_of(order_id, "order.failed") == "payment.refunded"
        assert Parcel.objects.get(order_id=order_id).status == "UNPACKED"
        assert not Shipment.objects.filter(order_id=order_id).exists()
        assert ledger_of(order_id) == [("CAPTURE", Decimal("25.00")), ("REFUND", Decimal("25.00"))]
        assert payments_of(order_id) == [("REFUNDED", Decimal("25.00"))]
        assert balance(customer) == Decimal("100.00")
        assert stock(sku) == (5, 0, 5)
        assert Reservation.objects.get(order_id=order_id).status == "RELEASED"

    def test_a_dispatch_answered_after_the_timeout_is_cancelled_again(self):
        # given an order whose parcel left, but whose answer waits in a slow queue past the deadline
        order_id, customer, sku = _order()
        deliver_all_except("shipping.dispatched")
        assert saga_of(order_id).state == "SHIPPING_PENDING"
        assert Shipment.objects.get(order_id=order_id).status == "DISPATCHED"
        make_overdue(order_id)

        # when the sweep times it out, and the compensation runs
        assert saga_sweep_timeouts() == 1
        deliver_all_except("shipping.dispatched")

        # then the shipment is called back, and everything before it undone
        order = order_of(order_id)
        assert (order.status, order.failure_reason) == ("FAILED", "timeout")
        assert history(order_id)[-4:] == ["CANCELLING_SHIPMENT", "UNPACKING", "COMPENSATING", "FAILED"]
        assert Shipment.objects.get(order_id=order_id).status == "CANCELLED"
        assert Parcel.objects.get(order_id=order_id).status == "UNPACKED"
        assert ledger_of(order_id) == [("CAPTURE", Decimal("25.00")), ("REFUND", Decimal("25.00"))]
        assert stock(sku) == (5, 0, 5)

        # when the late answer arrives at last
        (late,) = outbox(order_id, "shipping.dispatched")
        deliver(late)
        drain()

        # then the saga, failed already, sends the cancel again, which the warehouse answers with no new effect
        (applied,) = SagaTransition.objects.filter(saga_id=order_id, message_id=str(late.message_id))
        assert (applied.from_state, applied.to_state, applied.emitted) == ("FAILED", "FAILED", ["shipping.cancel"])
        assert [row.causation_id for row in outbox(order_id, "shipping.cancel")][1] == str(late.message_id)
        assert len(outbox(order_id, "shipping.cancelled")) == 2
        assert order_of(order_id).status == "FAILED"
        assert Shipment.objects.get(order_id=order_id).status == "CANCELLED"
        assert ledger_of(order_id) == [("CAPTURE", Decimal("25.00")), ("REFUND", Decimal("25.00"))]
        assert balance(customer) == Decimal("100.00")

    def test_the_warehouse_refuses_a_dispatch_that_arrives_after_its_cancel(self):
        # given an order timed out while its dispatch waited in a slow queue, and compensated meanwhile
        order_id, _, _ = _order()
        deliver_all_except("shipping.dispatch")
        make_overdue(order_id)
        assert saga_sweep_timeouts() == 1
        deliver_all_except("shipping.dispatch")
        assert order_of(order_id).status == "FAILED"
        steps_before = SagaTransition.objects.filter(saga_id=order_id).count()

        # when the dispatch arrives at last
        (late,) = outbox(order_id, "shipping.dispatch")
        deliver(late)
        drain()

        # then the parcel never leaves: the warehouse refuses, and the failed saga ignores the refusal
        assert Shipment.objects.get(order_id=order_id).status == "CANCELLED"
        (refused,) = outbox(order_id, "shipping.failed")
        assert refused.payload["code"] == "order_closed"
        assert refused.causation_id == str(late.message_id)
        assert SagaTransition.objects.filter(saga_id=order_id).count() == steps_before
        assert outbox_keys(order_id)[-1] == "shipping.failed"
        assert order_of(order_id).status == "FAILED"


@pytest.mark.django_db(transaction=True)
def test_the_warehouse_is_known_to_the_bus_the_catalogue_and_the_saga_only_while_installed():
    assert "shipping" not in bus.consumers() and "shipping.dispatch" not in CATALOGUE

    with installed():
        assert bus.consumers_for("shipping.dispatch") == ["shipping"]
        assert {"packing.packed", "shipping.dispatched", "shipping.cancelled"} <= set(bus.registry()["saga"])
        assert CATALOGUE["shipping.dispatch"].producer == "saga"
        assert "shipping.dispatch" in contracts.asyncapi()["components"]["messages"]
        assert registry.definition() is FOUR_STEPS

    assert "shipping" not in bus.consumers() and "shipping.dispatch" not in CATALOGUE
    assert set(bus.registry()["saga"]) == set(ORDER_SAGA.replies)
    assert "shipping.dispatch" not in contracts.asyncapi()["components"]["messages"]
    assert registry.definition() is ORDER_SAGA
