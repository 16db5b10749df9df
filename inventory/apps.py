from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig

if TYPE_CHECKING:
    from messaging.bus import Handler


class InventoryConfig(AppConfig):
    name = "inventory"
    default_auto_field = "django.db.models.BigAutoField"
    # The name of its consumer, also its queue's: it handles the messages handlers() gives.
    consumer = "inventory"

    def handlers(self) -> Mapping[str, Handler]:
        from inventory.handlers import HANDLERS

        return HANDLERS

    def saga_payloads(self) -> dict[str, Any]:
        """The builders of the payloads of the saga's commands that inventory handles."""
        from inventory.payloads import PAYLOADS

        return PAYLOADS

    def saga_holds(self) -> dict[str, Any]:
        """Which orders still hold what inventory.release gives back: the sweep asks again an ended saga's."""
        from inventory.selectors import orders_holding_stock

        return {"inventory.release": orders_holding_stock}
