"""The payload of the command that inventory handles, built from the saga that sends it (saga.registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saga.models import Saga


def inventory_reserve(saga: Saga) -> dict[str, Any]:
    return {
        "order_id": str(saga.order_id),
        "items": [{"sku": line["sku"], "quantity": line["quantity"]} for line in saga.items],
    }


PAYLOADS = {"inventory.reserve": inventory_reserve}
