from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig

if TYPE_CHECKING:
    from messaging.bus import Handler


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"
    # The name of its consumer, also its queue's: it handles the messages handlers() gives.
    consumer = "payments"

    def handlers(self) -> Mapping[str, Handler]:
        from payments.handlers import HANDLERS

        return HANDLERS

    def saga_payloads(self) -> dict[str, Any]:
        """The builders of the payloads of the saga's commands that payments handles."""
        from payments.payloads import PAYLOADS

        return PAYLOADS
