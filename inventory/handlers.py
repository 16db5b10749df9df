"""The inventory consumer: one handler per message, each calling one service. A reservation takes the goods
at once, so inventory needs neither final event of the saga: the saga sends `inventory.release` itself."""

from __future__ import annotations

from inventory.services import reservation_release, stock_reserve
from messaging.bus import compensation
from messaging.envelope import Envelope


def handle_inventory_reserve(message: Envelope) -> None:
    stock_reserve(order_id=message.payload["order_id"], items=message.payload["items"])


@compensation
def handle_inventory_release(message: Envelope) -> None:
    reservation_release(order_id=message.payload["order_id"], reason=message.payload["reason"])


HANDLERS = {
    "inventory.reserve": handle_inventory_reserve,
    "inventory.release": handle_inventory_release,
}
