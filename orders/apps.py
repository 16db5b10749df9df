from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.apps import AppConfig

if TYPE_CHECKING:
    from messaging.bus import Handler


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"
    # The name of its consumer, also its queue's: the webhook deliveries, on a queue of their own so that a
    # slow endpoint never holds up an order.
    consumer = "webhooks"

    def saga_listeners(self) -> list[Any]:
        """The order records how its saga ended, in the saga's own transaction (saga.registry)."""
        from orders.services import order_finish

        return [order_finish]

    def handlers(self) -> Mapping[str, Handler]:
        from orders.handlers import HANDLERS

        return HANDLERS

    def periodic_tasks(self) -> list[Any]:
        """Run by beat and by the embedded mode's dispatcher (messaging/periodic.py)."""
        from messaging.periodic import PRUNE_INTERVAL_S, PeriodicTask

        return [PeriodicTask("webhook-attempt-retention", "orders.tasks.prune_webhook_attempts", PRUNE_INTERVAL_S)]

    def message_types(self) -> list[Any]:
        """Its `webhook.deliver`, added to the catalogue: validated, and published in the contracts."""
        from orders.webhooks import MESSAGE_TYPES

        return MESSAGE_TYPES
