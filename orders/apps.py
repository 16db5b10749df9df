from typing import Any

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def saga_listeners(self) -> list[Any]:
        """The order records how its saga ended, in the saga's own transaction (saga.registry)."""
        from orders.services import order_finish

        return [order_finish]
