"""The payload of the command that payments handles, built from the saga that sends it (saga.registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saga.models import Saga


def payment_process(saga: Saga) -> dict[str, Any]:
    return {
        "order_id": str(saga.order_id),
        "customer_id": saga.customer_id,
        "amount": f"{saga.amount:.2f}",
        "currency": saga.currency,
    }


PAYLOADS = {"payment.process": payment_process}
