from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "tests.participants.shipping"
    label = "shipping"
    default_auto_field = "django.db.models.BigAutoField"
    # Its consumer (and queue): the bus delivers it what handlers() gives.
    consumer = "shipping"

    def handlers(self) -> dict[str, Any]:
        from tests.participants.shipping.handlers import HANDLERS

        return HANDLERS

    def message_types(self) -> list[Any]:
        """Its messages, added to the catalogue: validated, and published in the contracts."""
        from tests.participants.shipping.messages import MESSAGE_TYPES

        return MESSAGE_TYPES

    def saga_payloads(self) -> dict[str, Any]:
        """The payloads of the saga's commands it handles."""
        from tests.participants.shipping.payloads import PAYLOADS

        return PAYLOADS
