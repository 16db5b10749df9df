"""The payloads of the saga's commands to the warehouse, built from the saga (saga.registry)."""

from __future__ import annotations

from typing import Any


def packing_pack(saga: Any) -> dict[str, Any]:
    return {
        "order_id": str(saga.order_id),
        "items": [{"sku": line["sku"], "quantity": line["quantity"]} for line in saga.items],
    }


def shipping_dispatch(saga: Any) -> dict[str, Any]:
    return {"order_id": str(saga.order_id), "customer_id": saga.customer_id}


PAYLOADS = {"packing.pack": packing_pack, "shipping.dispatch": shipping_dispatch}
