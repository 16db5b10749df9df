"""The inventory consumer: one handler per message, each calling one service."""

from __future__ import annotations

from inventory.services import reservation_commit, reservation_release, stock_reserve
from messaging.envelope import Envelope


def handle_inventory_reserve(message: Envelope) -> None:
    stock_reserve(order_id=message.payload["order_id"], items=message.payload["items"])


def handle_inventory_release(message: Envelope) -> None:
    reservation_release(order_id=message.payload["order_id"], reason=message.payload["reason"])


def handle_order_completed(message: Envelope) -> None:
    reservation_commit(order_id=message.payload["order_id"])


def handle_order_failed(message: Envelope) -> None:
    reservation_release(order_id=message.payload["order_id"], reason=message.payload["reason"])


HANDLERS = {
    "inventory.reserve": handle_inventory_reserve,
    "inventory.release": handle_inventory_release,
    "order.completed": handle_order_completed,
    "order.failed": handle_order_failed,
}
