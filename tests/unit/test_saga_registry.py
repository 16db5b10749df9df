"""The saga in use and what the installed apps give it (saga.registry), and the message types an app adds to the
catalogue. No database: the Saga rows here are never saved.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from messaging import catalogue
from messaging.catalogue import CATALOGUE, FIELD_CHECKS, MessageType
from saga import registry
from saga.definition import Step
from saga.models import Saga
from saga.steps import INVENTORY, ORDER_SAGA, PAYMENT


def _saga(**fields) -> Saga:
    defaults = dict(
        order_id=uuid.UUID("6f1c8b0e-8a2f-4c1e-9b7a-0d3e5f2a1c4b"),
        state="PAYMENT_PENDING",
        customer_id="cust-1",
        amount=Decimal("12.5"),
        currency="EUR",
        failure_reason="",
        items=[{"sku": "A", "quantity": 2, "price": "6.25"}],
    )
    return Saga(**{**defaults, **fields})


ORDER = "6f1c8b0e-8a2f-4c1e-9b7a-0d3e5f2a1c4b"


class TestTheDefinitionInUse:
    def test_is_the_order_saga_by_default(self):
        assert registry.definition() is ORDER_SAGA

    def test_follows_the_setting_and_comes_back_with_it(self):
        slower = dataclasses.replace(ORDER_SAGA, steps=(dataclasses.replace(PAYMENT, deadline=99.0), INVENTORY))

        with override_settings(SAGA_DEFINITION=slower):
            assert registry.definition() is slower
        assert registry.definition() is ORDER_SAGA

    def test_a_setting_that_names_no_definition_is_refused_by_name(self, settings):
        settings.SAGA_DEFINITION = "saga.steps.PAYMENT"

        with pytest.raises(ImproperlyConfigured, match="SAGA_DEFINITION must name a SagaDefinition, not a Step"):
            registry.definition()

    def test_a_definition_that_gives_no_table_is_refused_with_why(self, settings):
        settings.SAGA_DEFINITION = dataclasses.replace(ORDER_SAGA, steps=(PAYMENT, PAYMENT))

        with pytest.raises(
            ImproperlyConfigured, match="^SAGA_DEFINITION: state named more than once: COMPENSATING, PAYMENT_PENDING$"
        ):
            registry.definition()

    def test_a_deadline_that_names_no_setting_is_refused_by_name(self, settings):
        settings.SAGA_DEFINITION = dataclasses.replace(
            ORDER_SAGA, steps=(PAYMENT, dataclasses.replace(INVENTORY, deadline="SAGA_NO_SUCH_DEADLINE_S"))
        )

        with pytest.raises(
            ImproperlyConfigured,
            match="SAGA_NO_SUCH_DEADLINE_S, the deadline of the saga's state INVENTORY_PENDING, is not a setting",
        ):
            registry.definition()

    def test_a_step_whose_command_no_installed_app_builds_is_refused_by_name(self, settings):
        fraud = Step(
            name="fraud",
            command="fraud.check",
            success="fraud.cleared",
            failures=("fraud.rejected",),
            pending_state="FRAUD_PENDING",
            deadline=5.0,
        )
        settings.SAGA_DEFINITION = dataclasses.replace(ORDER_SAGA, steps=(fraud, *ORDER_SAGA.steps))

        with pytest.raises(
            ImproperlyConfigured,
            match=r"no installed app builds the payload of fraud.check \(step "
            r"fraud\)",
        ):
            registry.definition()

    def test_a_held_step_no_installed_app_answers_for_is_refused_by_name(self, settings):
        freed = dataclasses.replace(INVENTORY.compensation, late_command="stock.free")
        settings.SAGA_DEFINITION = dataclasses.replace(
            ORDER_SAGA, steps=(PAYMENT, dataclasses.replace(INVENTORY, compensation=freed))
        )

        with pytest.raises(
            ImproperlyConfigured, match="no installed app says which orders still hold what stock.free undoes"
        ):
            registry.definition()


class TestThePayloads:
    def test_of_the_steps_commands_are_built_by_their_participants(self):
        saga = _saga()

        assert registry.payload(saga, "payment.process") == {
            "order_id": ORDER,
            "customer_id": "cust-1",
            "amount": "12.50",
            "currency": "EUR",
        }
        assert registry.payload(saga, "inventory.reserve") == {
            "order_id": ORDER,
            "items": [{"sku": "A", "quantity": 2}],
        }

    @pytest.mark.parametrize("routing_key", ["payment.refund", "inventory.release", "order.failed"])
    def test_of_the_sagas_own_messages_carry_its_reason_or_a_late_replys(self, routing_key):
        assert registry.payload(_saga(failure_reason="out_of_stock"), routing_key) == {
            "order_id": ORDER,
            "reason": "out_of_stock",
        }
        assert registry.payload(_saga(), routing_key) == {"order_id": ORDER, "reason": "late_reply"}

    def test_of_the_completion_event_is_the_order(self):
        assert registry.payload(_saga(), "order.completed") == {"order_id": ORDER}

    def test_are_known_for_every_message_the_saga_sends_and_valid_in_the_catalogue(self):
        saga = _saga(failure_reason="timeout")

        for routing_key in ORDER_SAGA.emitted:
            assert catalogue.validate_payload(routing_key, registry.payload(saga, routing_key))

    def test_of_a_message_the_saga_never_sends_is_a_key_error(self):
        with pytest.raises(KeyError):
            registry.payload(_saga(), "payment.processed")


class TestMessageTypesAnAppAdds:
    PARCEL = MessageType("parcel.lost", "event", {"order_id": FIELD_CHECKS["uuid"]}, producer="test")

    @pytest.fixture(autouse=True)
    def _catalogue_as_it_was(self):
        yield
        catalogue.discover()

    def test_are_validated_as_the_products_and_may_be_registered_twice(self):
        catalogue.register(self.PARCEL)
        catalogue.register(self.PARCEL)

        assert catalogue.validate_payload("parcel.lost", {"order_id": ORDER}) == {"order_id": ORDER}

    def test_may_not_take_a_routing_key_defined_otherwise(self):
        other = dataclasses.replace(CATALOGUE["order.completed"], summary="something else")

        with pytest.raises(ValueError, match="order.completed is in the message catalogue already"):
            catalogue.register(other)

    def test_are_those_of_the_installed_apps_once_found_again(self):
        catalogue.register(self.PARCEL)

        catalogue.discover()

        assert "parcel.lost" not in CATALOGUE
        assert "order.completed" in CATALOGUE
